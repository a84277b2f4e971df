"""TrainBusCallback's hooks driven by hand (no Ray running): the events a Train run becomes, and pickling."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pipeline.producer import worker_log
from pipeline.producer.bus_target import BusTarget
from pipeline.producer.sender import SenderConfig
from pipeline.producer.train_callback import TrainBusCallback
from pipeline.testing import running_collector


def _run_context(storage: Path) -> Any:
    return SimpleNamespace(run_config=SimpleNamespace(name="run", storage_path=str(storage)),
                           scaling_config=SimpleNamespace(num_workers=2),
                           train_loop_config={"lr": 0.5})


def _drive(callback: TrainBusCallback, storage: Path) -> None:
    """What the controller calls for a 2-worker run with two reports, a failure, then success."""
    callback.after_controller_start(_run_context(storage))
    callback.after_report(SimpleNamespace(checkpoint=None), [{"loss": 2.0}, {"loss": 3.0}])
    callback.after_worker_group_poll_status(SimpleNamespace(errors={1: RuntimeError("boom")}))
    checkpoint = SimpleNamespace(path=str(storage / "run" / "checkpoint_000001"))
    callback.after_report(SimpleNamespace(checkpoint=checkpoint), [{"loss": 1.0}, {"loss": 1.5}])
    callback.after_controller_finish(SimpleNamespace(error=None))


async def test_a_run_becomes_one_trial_with_rank_0_rows_every_rank_and_its_failures(tmp_path: Path,
                                                                                    address: str) -> None:
    """Rows of rank 0 with Tune's fields, per-rank log lines, params, and error.txt; fit waits for acks."""
    out = tmp_path / "out"
    callback = TrainBusCallback(address, sender=SenderConfig(spool_dir=str(tmp_path / "spool")))
    async with running_collector(out, address):
        await asyncio.to_thread(_drive, callback, out)
    trial_dir = out / "run" / "train"
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    assert [(r["training_iteration"], r["loss"]) for r in rows] == [(1, 2.0), (2, 1.0)]
    assert [r["checkpoint_dir_name"] for r in rows] == [None, "checkpoint_000001"]
    assert {"timestamp", "date", "time_this_iter_s", "time_total_s", "hostname", "trial_id"} <= set(rows[0])
    assert json.loads((trial_dir / "params.json").read_text()) == {"lr": 0.5}
    logs = [json.loads(line) for line in (trial_dir / "worker_log.json").read_text().splitlines()]
    assert [(x["step"], x["rank"], x["values"]["ray/train"]["loss"]) for x in logs] == [
        (1, 0, 2.0), (1, 1, 3.0), (2, 0, 1.0), (2, 1, 1.5)]
    assert (trial_dir / "error.txt").read_text() == "rank 1: RuntimeError('boom')\n"
    assert not list((tmp_path / "spool").glob("*.spool"))  # everything confirmed before the end


def test_the_callback_pickles_without_its_sender_and_hands_its_target_to_workers(tmp_path: Path) -> None:
    """Train copies it to the controller and workers: no thread travels; a worker copy sets pipeline.log."""
    callback = TrainBusCallback("tcp://127.0.0.1:9", sender=SenderConfig(spool_dir=str(tmp_path)))
    callback.after_controller_start(_run_context(tmp_path))
    try:
        copy = pickle.loads(pickle.dumps(callback))
        assert copy.senders == () and copy.producer == callback.producer and copy.target == callback.target
        copy.after_init_train_context()
        assert worker_log._configured == callback.target
    finally:
        worker_log.configure(None)
        callback.close(0.0)


def test_a_forked_child_makes_its_own_producer(tmp_path: Path) -> None:
    """After a fork the child's first call makes a new WorkerLog; the parent's is left to the parent."""
    worker_log.configure(BusTarget("tcp://127.0.0.1:9", None, SenderConfig(spool_dir=str(tmp_path))))
    try:
        parent = worker_log._current()
        assert parent is not None
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: answer through the pipe, never return into pytest
            child = worker_log._current()
            ok = child is not None and child is not parent and child._pid == os.getpid()
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
        os.close(write)
        assert os.read(read, 1) == b"1"
        os.waitpid(pid, 0)
        assert worker_log._current() is parent
    finally:
        worker_log.configure(None)


def test_the_first_event_asks_for_the_shard_map_and_workers_get_it(tmp_path: Path) -> None:
    """The controller asks once at its first event; the run's trial goes to its shard, the map to workers."""
    from pipeline.wire.shards import shard_of
    from tests.shard_routers import ShardRouter

    with ShardRouter() as first, ShardRouter() as second:
        first.shards = (first.address, second.address)
        callback = TrainBusCallback(first.address, sender=SenderConfig(spool_dir=str(tmp_path)))
        _drive(callback, tmp_path)
        assert callback.target.shards == first.shards and len(first.hellos) == 1
        copy = pickle.loads(pickle.dumps(callback))
        try:
            copy.after_init_train_context()
            assert worker_log._configured is not None and worker_log._configured.shards == first.shards
        finally:
            worker_log.configure(None)
    mine, other = (first, second) if shard_of("run", 2) == 0 else (second, first)
    assert {e.trial for e in mine.events} == {"", "run"} and {e.trial for e in other.events} == {""}
