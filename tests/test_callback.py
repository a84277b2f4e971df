"""BusCallback: every hook Tune calls becomes one event, in order, on a real socket, with Tune's names."""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from bench.trials import real_trials, trial_dir_name
from pipeline import BusCallback, SenderConfig, TrainBusCallback
from pipeline.testing import curve_pair, running_collector
from pipeline.wire.codec import decode_frame
from pipeline.wire.events import Event, Kind
from pipeline.wire.shards import shards_reply
from pipeline.wire.sockets import CurveKeys
from tests.shard_routers import ShardRouter


class AckingCollector(threading.Thread):
    """A bare ROUTER that records every event it gets and acknowledges it at once."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.address = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"
        self.events: list[Event] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            if self.sock.poll(50):
                identity, raw = self.sock.recv_multipart()
                frame = decode_frame(raw)
                assert not frame.faults, frame.faults
                if not frame.events:  # a hello: one collector, no shards
                    self.sock.send_multipart([identity, shards_reply(())])
                    continue
                self.events.extend(frame.events)
                self.sock.send_multipart([identity, msgpack.packb(["ack", frame.events[-1].seq])])
        self.sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def collector() -> Iterator[AckingCollector]:
    c = AckingCollector()
    c.start()
    yield c
    c.done.set()
    c.join(timeout=10)


class _Checkpoint:
    path = "/storage/exp/trial/checkpoint_000001"


def test_every_hook_is_one_event_in_order(ray_session: None, tmp_path: Path,
                                          collector: AckingCollector) -> None:
    """Setup, the eight trial hooks and experiment end arrive once each, seq 0.., named as Tune names them."""
    trials = real_trials(tmp_path, "exp_hooks", 2)
    trial = trials[0]
    cb = BusCallback(collector.address, end_timeout_s=30)
    cb.setup(stop={"training_iteration": 3}, num_samples=2, total_num_samples=2)
    cb.on_trial_start(iteration=0, trials=trials, trial=trial)
    cb.on_trial_restore(iteration=1, trials=trials, trial=trial)
    cb.on_trial_save(iteration=2, trials=trials, trial=trial)
    cb.on_checkpoint(iteration=3, trials=trials, trial=trial, checkpoint=_Checkpoint())
    cb.on_trial_result(iteration=4, trials=trials, trial=trial,
                       result={"loss": np.float32(0.5), "training_iteration": 1, "nested": {"a": 1}})
    cb.on_trial_recover(iteration=5, trials=trials, trial=trial)
    cb.on_trial_error(iteration=6, trials=trials, trial=trial)
    cb.on_trial_complete(iteration=7, trials=trials, trial=trials[1])
    cb.on_experiment_end(trials=trials)  # waits for the acks, then closes the sender

    kinds = [e.kind for e in collector.events]
    assert kinds == [Kind.SETUP, Kind.TRIAL_START, Kind.TRIAL_RESTORE, Kind.TRIAL_SAVE, Kind.CHECKPOINT,
                     Kind.RESULT, Kind.TRIAL_RECOVER, Kind.TRIAL_ERROR, Kind.TRIAL_COMPLETE,
                     Kind.EXPERIMENT_END]
    assert [e.seq for e in collector.events] == list(range(10))
    assert {e.producer for e in collector.events} == {cb.stream}
    start, result, end = collector.events[1], collector.events[5], collector.events[-1]
    assert (start.experiment, start.trial, start.trial_dir) == ("exp_hooks", trial.trial_id,
                                                                trial_dir_name(trial))
    assert start.payload["config"] == trial.config and isinstance(start.payload["params_pkl"], bytes)
    assert collector.events[4].payload["path"] == _Checkpoint.path
    assert result.payload["loss"] == np.float32(0.5) and result.payload["nested"] == {"a": 1}
    assert end.payload["trials"] == {t.trial_id: str(t.status) for t in trials}


TUNE_LOGGERS = {"CSVLoggerCallback", "JsonLoggerCallback", "TBXLoggerCallback"}
LOGGERS_OF_AN_UNPICKLED_RUN = """
import pickle, sys
import ray.tune.tune
callbacks = [pickle.loads(open(sys.argv[1], "rb").read())]
print(sorted(type(c).__name__ for c in ray.tune.tune._create_default_callbacks(callbacks)))
"""


def _tune_loggers(callbacks: list[Any]) -> set[str]:
    """The logger callbacks ``tune.run`` adds by itself to a run with ``callbacks``."""
    import ray.tune.tune  # looked up at call time, as tune.run does

    return {type(c).__name__ for c in ray.tune.tune._create_default_callbacks(list(callbacks))} & TUNE_LOGGERS


def test_a_run_with_it_gets_none_of_tunes_own_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tune adds no JSON/CSV/TBX logger of its own to a run whose callbacks hold a BusCallback."""
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    assert _tune_loggers([BusCallback("tcp://127.0.0.1:1")]) == set()


def test_a_callback_list_used_twice_gets_no_tune_loggers_the_second_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tune appends its loggers to the list it is given: the user's list is left as it was."""
    import ray.tune.tune

    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    callbacks = [BusCallback("tcp://127.0.0.1:1")]
    for _ in range(2):
        made = ray.tune.tune._create_default_callbacks(callbacks)
        assert {type(c).__name__ for c in made} & TUNE_LOGGERS == set()
    assert len(callbacks) == 1


def test_only_constructing_it_leaves_other_runs_tunes_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A BusCallback built but not used changes nothing for other runs: no environment variable."""
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    BusCallback("tcp://127.0.0.1:1")
    assert "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in os.environ
    assert _tune_loggers([]) == TUNE_LOGGERS


@pytest.mark.slow  # imports Ray in a child process
def test_unpickled_in_a_fresh_process_it_still_keeps_tunes_loggers_out(tmp_path: Path) -> None:
    """As Tuner.restore does: a BusCallback unpickled in a new driver still keeps Tune's loggers out."""
    import pickle
    import subprocess
    import sys

    from tests.conftest import REPO

    pickled = tmp_path / "callback.pkl"
    pickled.write_bytes(pickle.dumps(BusCallback("tcp://127.0.0.1:1")))
    env = {k: v for k, v in os.environ.items() if k != "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"}
    done = subprocess.run([sys.executable, "-c", LOGGERS_OF_AN_UNPICKLED_RUN, str(pickled)], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    names = done.stdout.strip().splitlines()[-1]
    assert "BusCallback" in names and "LoggerCallback" not in names


def test_keeping_tunes_loggers_by_flag_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """disable_builtin_loggers=False leaves Tune's own loggers in that run, as before."""
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    assert _tune_loggers([BusCallback("tcp://127.0.0.1:1", disable_builtin_loggers=False)]) == TUNE_LOGGERS


@pytest.mark.parametrize(("bad", "message"), [
    ({"address": "localhost:5555"}, "address must start with one of .*, got 'localhost:5555'"),
    ({"end_timeout_s": -1}, "end_timeout_s must be >= 0, got -1"),
    ({"shard_lookup_timeout_s": -1}, "shard_lookup_timeout_s must be >= 0 and finite, got -1"),
    ({"shard_lookup_timeout_s": float("inf")}, "shard_lookup_timeout_s must be >= 0 and finite, got inf"),
    ({"curve_secret_key": "only-one.key_secret"}, "CurveZMQ needs both curve_secret_key and curve_server_"),
    ({"curve": CurveKeys(b"p" * 40, b"s" * 40)}, "curve must be CurveKeys with the collector's public key"),
    ({"curve": CurveKeys(b"p" * 40, b"s" * 40, b"v" * 40), "curve_secret_key": "a.key_secret",
      "curve_server_key": "b.key"}, "as curve= or as key files, not both"),
])
def test_bad_arguments_are_refused_with_the_value(bad: dict[str, Any], message: str) -> None:
    """A bad address, timeout or half a CurveZMQ pair is a ValueError naming what is wrong."""
    args = {"address": "tcp://127.0.0.1:5555", **bad}
    with pytest.raises(ValueError, match=message):
        BusCallback(args.pop("address"), **args)
    if "curve" in bad:
        with pytest.raises(ValueError, match=message):
            TrainBusCallback(args.pop("address", "tcp://127.0.0.1:5555"), **args)


async def test_curve_keys_given_as_keys_reach_a_curve_collector_and_survive_pickling(
        tmp_path: Path, address: str) -> None:
    """curve=CurveKeys (no key files on the driver) passes the collector's ZAP; a pickled copy keeps them."""
    pair = curve_pair(tmp_path)
    curve = pair.driver
    callback = pickle.loads(pickle.dumps(BusCallback(address, curve=curve, end_timeout_s=10)))
    assert callback.curve == curve and curve.secret.decode() not in repr(curve)
    assert TrainBusCallback(address, curve=curve).target.curve == curve
    async with running_collector(tmp_path / "out", address, sinks=("json",),
                                 **pair.collector_options()) as collector:
        await asyncio.to_thread(callback.setup)
        try:
            assert await asyncio.to_thread(callback.flush, 20.0)
        finally:
            callback.close()
        assert collector.snapshot().events == 1 and collector.snapshot().refused == 0


def test_setup_asks_for_the_shard_map_once_per_process_and_an_unpickled_copy_asks_again(
        tmp_path: Path) -> None:
    """setup sends its event to every shard the first address names; a copy (Tuner.restore) asks anew."""
    with ShardRouter() as first, ShardRouter() as second:
        first.shards = (first.address, second.address)
        callback = BusCallback(first.address, sender=SenderConfig(spool_dir=str(tmp_path)))
        assert callback.shards == ()
        callback.setup()
        copy = pickle.loads(pickle.dumps(callback))
        assert callback.shards == (first.address, second.address) and copy.shards == ()
        copy.setup()
        assert copy.shards == callback.shards and copy.stream != callback.stream
        for cb in (callback, copy):
            assert cb.flush(20.0)
            cb.close()
        assert len(first.hellos) == 2 and not second.hellos
    for k, router in enumerate((first, second)):
        streams = sorted(f"{cb.stream}.s{k}" for cb in (callback, copy))
        assert sorted(e.producer for e in router.events) == streams
        assert {e.kind for e in router.events} == {Kind.SETUP}


def test_a_callback_pickled_before_shard_maps_unpickles_with_the_default_lookup() -> None:
    """A tuner.pkl of an older tunebus has no shard_lookup_timeout_s: the copy gets 2 s."""
    state = BusCallback("tcp://127.0.0.1:1").__getstate__()
    del state["shard_lookup_timeout_s"]
    copy = BusCallback.__new__(BusCallback)
    copy.__setstate__(state)
    assert copy.shard_lookup_timeout_s == 2.0 and copy.shards == () and copy.dropped == 0
