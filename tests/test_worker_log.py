"""pipeline.log's producer: its own stream per process, steps per trial and rank, delivery and settings."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from pipeline.producer import worker_log
from pipeline.producer.bus_target import ENV_ADDRESS, BusTarget, lookup_target
from pipeline.producer.sender import FullPolicy, SenderConfig
from pipeline.producer.worker_context import WorkerHead
from pipeline.producer.worker_log import WorkerLog
from pipeline.testing import curve_pair, running_collector
from pipeline.wire.shards import shard_of
from pipeline.wire.sockets import CurveKeys
from tests.shard_routers import ShardRouter

HEAD = WorkerHead("exp", "t1", "dir_t1", rank=1, world_size=2)


def _target(tmp_path: Path, address: str = "tcp://127.0.0.1:9") -> BusTarget:
    return BusTarget(address, None, SenderConfig(spool_dir=str(tmp_path / "spool")), (address,))


def test_a_target_travels_as_json_with_its_keys_and_sender_settings() -> None:
    """Address, Curve keys and every sender setting survive the trip through Ray's key-value store."""
    target = BusTarget("tcp://h:1", CurveKeys(b"p" * 40, b"s" * 40, b"v" * 40),
                       SenderConfig(max_buffer_events=7, when_full=FullPolicy.BLOCK), ("tcp://h:1", "tcp://h:2"))
    assert BusTarget.from_json(target.to_json()) == target


def test_a_target_published_or_pickled_before_shard_maps_sends_to_its_address() -> None:
    """An older driver's JSON (no shards) or pickle (three fields) reads as one shard, never a lookup."""
    old_json = json.dumps({"address": "tcp://h:1", "curve": None, "sender": {}}).encode()
    assert BusTarget.from_json(old_json).shards == ("tcp://h:1",)
    old_pickle = BusTarget.__new__(BusTarget)
    old_pickle.__setstate__(["tcp://h:1", None, SenderConfig()])  # what pickle does with an older state
    assert old_pickle == BusTarget("tcp://h:1", None, SenderConfig(), ("tcp://h:1",))
    new = BusTarget("tcp://h:1", None, SenderConfig(), ("tcp://h:1", "tcp://h:2"))
    assert pickle.loads(pickle.dumps(new)) == new


def test_a_tunebus_address_target_asks_for_the_map_and_routes_each_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TUNEBUS_ADDRESS names the first shard only: the worker asks it, then sends each trial to its shard."""
    with ShardRouter() as first, ShardRouter() as second:
        first.shards = (first.address, second.address)
        monkeypatch.setenv(ENV_ADDRESS, first.address)
        target = lookup_target()
        assert target is not None and target.shards == ()
        producer = WorkerLog(dataclasses.replace(target, sender=SenderConfig(spool_dir=str(tmp_path))))
        trials = [f"t{i}" for i in range(8)]
        for trial in trials:
            producer.log({"a": 1.0}, head=WorkerHead("exp", trial, f"dir_{trial}", rank=0, world_size=1))
        assert producer.flush(20)
        producer.close()
    assert len(first.hellos) == 1 and not second.hellos
    for k, router in enumerate((first, second)):
        assert [e.trial for e in router.events] == [t for t in trials if shard_of(t, 2) == k]
        assert {e.producer for e in router.events} <= {f"{producer.stream}.s{k}"}


def test_tunebus_address_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """TUNEBUS_ADDRESS names the target without asking Ray."""
    monkeypatch.setenv(ENV_ADDRESS, "tcp://10.0.0.1:5555")
    target = lookup_target()
    assert target is not None and target.address == "tcp://10.0.0.1:5555" and target.curve is None


def test_outside_a_trial_a_call_is_dropped_and_counted(tmp_path: Path) -> None:
    """No Tune or Train context: nothing is sent, the drop is counted, no sender is started."""
    producer = WorkerLog(_target(tmp_path))
    producer.log({"x": 1.0})
    assert producer.dropped == 1 and producer.senders == ()


def test_a_pickled_copy_is_a_new_producer_without_a_thread(tmp_path: Path) -> None:
    """A copy keeps the target only: its own stream id, no sender, seq from 0."""
    producer = WorkerLog(_target(tmp_path))
    producer.log({"x": 1.0}, head=HEAD)
    try:
        copy = pickle.loads(pickle.dumps(producer))
        assert copy.target == producer.target and copy.stream != producer.stream
        assert copy.senders == () and copy.dropped == 0
    finally:
        producer.close()


async def test_calls_reach_the_collector_once_with_steps_counted_per_rank(tmp_path: Path,
                                                                          address: str) -> None:
    """Steps continue past the highest so far, per rank; flush returns once worker_log.json has every call."""
    async with running_collector(tmp_path / "out", address):
        producer = WorkerLog(_target(tmp_path, address))
        producer.log({"a": 1.0}, step=10, head=HEAD)
        producer.log({"a": 2.0}, head=HEAD)
        producer.log({"img": 0.0}, step=0, head=HEAD)
        producer.log({"a": 2.5}, head=HEAD)
        producer.log({"a": 3.0}, head=WorkerHead("exp", "t1", "dir_t1", rank=0, world_size=2))
        assert await asyncio.to_thread(producer.flush, 30)
        producer.close()
    path = tmp_path / "out" / "exp" / "dir_t1" / "worker_log.json"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    got = [(x["step"], x["rank"], x["values"].get("a")) for x in lines]
    assert got == [(10, 1, 1.0), (11, 1, 2.0), (0, 1, None), (12, 1, 2.5), (0, 0, 3.0)]


def test_configure_then_log_outside_a_trial_drops_without_blocking(tmp_path: Path) -> None:
    """The module front: a configured process makes its producer at the first call; closing forgets it."""
    worker_log.configure(_target(tmp_path))
    try:
        worker_log.log({"x": 1.0})
        assert worker_log._worker is not None and worker_log._worker.dropped == 1
        assert worker_log.flush(1.0)
    finally:
        worker_log.configure(None)
    assert worker_log._worker is None


async def test_curve_keys_travel_with_the_target_and_the_collector_admits_the_worker(
        tmp_path: Path, address: str) -> None:
    """A target read back from its JSON (as a worker reads it from Ray) talks CurveZMQ to the collector."""
    pair = curve_pair(tmp_path)
    published = BusTarget(address, pair.driver, SenderConfig(spool_dir=str(tmp_path / "spool"))).to_json()
    async with running_collector(tmp_path / "out", address, **pair.collector_options()):
        producer = WorkerLog(BusTarget.from_json(published))
        producer.log({"a": 1.0}, head=HEAD)
        assert await asyncio.to_thread(producer.flush, 30)
        producer.close()
    assert (tmp_path / "out" / "exp" / "dir_t1" / "worker_log.json").read_text().count("\n") == 1


def test_a_failed_sender_drops_calls_instead_of_raising_in_the_loop(tmp_path: Path) -> None:
    """When the sender thread has failed (keys without the server's), log() counts a drop and returns."""
    import zmq

    from pipeline.testing import wait_for

    public, secret = zmq.curve_keypair()
    producer = WorkerLog(BusTarget("tcp://127.0.0.1:1", CurveKeys(public, secret, None),
                                   SenderConfig(spool_dir=str(tmp_path / "spool"))))
    producer.log({"a": 1.0}, head=HEAD)
    wait_for(lambda: not producer.senders[0].running, 20, "the sender to fail")
    before = producer.dropped
    producer.log({"a": 2.0}, head=HEAD)  # would raise RuntimeError without the guard
    assert producer.dropped == before + 1


def test_a_workers_sender_sends_no_more_often_than_the_worker_interval(tmp_path: Path) -> None:
    """The driver's 5 ms send interval becomes the worker's 100 ms; a longer one is kept."""
    producer = WorkerLog(_target(tmp_path))
    slow = WorkerLog(BusTarget("tcp://127.0.0.1:9", None, SenderConfig(spool_dir=str(tmp_path / "s"),
                                                                       send_interval_s=0.5)))
    try:
        producer.log({"x": 1.0}, head=HEAD)
        slow.log({"x": 1.0}, head=HEAD)
        [sender], [slow_sender] = producer.senders, slow.senders
        assert sender.config.send_interval_s == worker_log.WORKER_SEND_INTERVAL_S
        assert slow_sender.config.send_interval_s == 0.5
    finally:
        producer.close()
        slow.close()
