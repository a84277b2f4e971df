"""A shard writes only its own trials: another shard's trial waits at its producer, no second writer."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import signal
from pathlib import Path

import pytest

from pipeline.ops.status_client import ask_status
from pipeline.producer.sender import SenderConfig
from pipeline.producer.stream import ProducerStream
from pipeline.testing import (
    free_address,
    free_ports,
    running_collector,
    start_shard_set,
    wait_for,
    wait_until,
)
from pipeline.wire.shards import OwnedTrials, shard_of
from pipeline.wire.spool import read_spool

THEIRS = next(f"t{n}" for n in range(100) if shard_of(f"t{n}", 2) == 1)
"""A trial shard 1 of 2 owns."""
MINE = next(f"t{n}" for n in range(100) if shard_of(f"t{n}", 2) == 0)
"""A trial shard 0 of 2 owns."""
NO_MAP = "found no shard map when it started"


def _head(trial: str) -> tuple[str, str, str]:
    return ("exp", trial, f"{trial}_dir")


def _rows(out: Path, trial: str) -> list[int]:
    path = out / "exp" / f"{trial}_dir" / "result.json"
    return [json.loads(line)["i"] for line in path.read_text().splitlines()] if path.exists() else []


def test_owned_trials_hash_each_trial_once_and_agree_with_shard_of() -> None:
    """OwnedTrials answers shard_of(trial) == index, keeping each answer; an index past the count fails."""
    owned = OwnedTrials(1, 2)
    assert (owned[THEIRS], owned[MINE]) == (True, False)
    assert dict(owned) == {THEIRS: True, MINE: False}
    with pytest.raises(ValueError, match="shard index 2 is not among 2 shards"):
        OwnedTrials(2, 2)


async def test_a_one_shard_producer_waits_at_another_shards_trial(
        tmp_path: Path, address: str, caplog: pytest.LogCaptureFixture) -> None:
    """Shard 0 of 2 writes nothing of shard 1's trial, acks nothing past it, warns once; the stream waits."""
    caplog.set_level(logging.WARNING)
    shard_1 = free_address()
    out = tmp_path / "out"
    config = SenderConfig(spool_dir=str(tmp_path / "spool"), resend_after_s=0.1)
    async with running_collector(out, address, sinks=("json", "csv"), shard_index=0,
                                 shard_addresses=(address, shard_1)) as collector:
        stream = ProducerStream("A", [address], config)  # assumes one shard: every trial to shard 0
        stream.emit("setup", ("", "", ""), {})
        stream.emit("trial_start", _head(MINE), {"config": {"x": 0}})
        stream.emit("result", _head(MINE), {"i": 0, "training_iteration": 1})
        stream.emit("trial_start", _head(THEIRS), {"config": {"x": 1}})  # seq 3: shard 1's
        stream.emit("result", _head(THEIRS), {"i": 0, "training_iteration": 1})
        stream.emit("result", _head(MINE), {"i": 1, "training_iteration": 2})
        sender = stream.senders[0]
        try:
            await wait_until(lambda: NO_MAP in caplog.text, 10, "the producer to hear it is misrouted")
            await wait_until(lambda: sender.stats().acked_seq == 2, 10, "seqs 0-2 acknowledged")
            await wait_until(lambda: sender.stats().resent >= 6, 10, "the stream resent past seq 3 twice")
            status = collector.snapshot()
            a = status.producers["A"]
            assert (status.misrouted, a.last_seq, a.acked) == (1, 2, 2)
        finally:
            assert not await asyncio.to_thread(stream.close)
    assert sender.stats().acked_seq == 2
    assert not (out / "exp" / f"{THEIRS}_dir").exists()
    assert _rows(out, MINE) == [0]
    told = [r.getMessage() for r in caplog.records if r.name == "pipeline.collector.receiver"]
    assert len(told) == 1 and f"producer A sent trial {THEIRS}" in told[0], told
    assert f"shard 1 of 2 at {shard_1} owns it" in told[0]
    warned = [r.getMessage() for r in caplog.records if "says: trial" in r.getMessage()]
    assert len(warned) == 1 and f"trial {THEIRS} belongs to shard 1 of 2 at {shard_1}" in warned[0]
    assert "start the sharded collector before the sweep" in caplog.text
    stream_id, saved = read_spool(tmp_path / "spool" / "A.spool")
    assert (stream_id, [seq for seq, _ in saved]) == ("A", [3, 4, 5])  # nothing lost


def _lock_pid(out: Path, shard: int) -> int:
    try:
        text = (out / ".tunebus" / f"shard-{shard}" / "collector.lock").read_text().split()
    except FileNotFoundError:
        return 0
    return int(text[0]) if text else 0


@pytest.mark.slow  # a supervisor and its collector child processes
def test_a_misrouted_driver_then_a_routed_one_keep_shard_1s_rows_across_kill_9_of_shard_0(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A (no map) sends shard 1's trial to shard 0, B (map) to shard 1; kill -9 of shard 0 loses none."""
    caplog.set_level(logging.WARNING)
    bus, status = free_ports(2), free_ports(2)
    out = tmp_path / "out"
    supervisor = start_shard_set(out, 2, bus, status)
    addresses = [f"tcp://127.0.0.1:{bus}", f"tcp://127.0.0.1:{bus + 1}"]
    config = SenderConfig(spool_dir=str(tmp_path / "spool"), resend_after_s=0.5)
    head = _head(THEIRS)
    b = None
    try:
        wait_for(lambda: _lock_pid(out, 0) and _lock_pid(out, 1), 60, "both shards up")
        a = ProducerStream("A", addresses[:1], config)  # the first driver found no map
        a.emit("setup", ("", "", ""), {})
        a.emit("trial_start", head, {"config": {"x": 1}})
        for i in range(10):
            a.emit("result", head, {"i": i, "training_iteration": i + 1})
        sender_a = a.senders[0]
        wait_for(lambda: NO_MAP in caplog.text or sender_a.stats().acked_seq == 11, 30,
                 "driver A to hear that shard 0 does not own the trial (or, before the rule, to be written)")
        wait_for(lambda: sender_a.stats().acked_seq >= 0, 30, "driver A's setup acknowledged")
        a.close()  # driver A ends: its trial's events go to its spool, none written
        b = ProducerStream("B", addresses, config)  # a restored driver: found the map
        b.emit("setup", ("", "", ""), {})
        b.emit("trial_start", head, {"config": {"x": 1}})
        for i in range(10, 20):
            b.emit("result", head, {"i": i, "training_iteration": i + 1})
        assert b.flush(30)
        before = _rows(out, THEIRS)
        killed = _lock_pid(out, 0)
        os.kill(killed, signal.SIGKILL)

        def restarted() -> bool:
            try:
                back = _lock_pid(out, 0) not in (0, killed)
                return back and bool(ask_status(f"tcp://127.0.0.1:{status}", 1.0))
            except Exception:  # noqa: BLE001 - not answering yet
                return False

        wait_for(restarted, 60, "shard 0 restarted")
    finally:
        if b is not None:
            b.close()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
    assert (before, _rows(out, THEIRS)) == (list(range(10, 20)), list(range(10, 20)))
    with (out / "exp" / f"{THEIRS}_dir" / "progress.csv").open() as f:
        assert [int(r["i"]) for r in csv.DictReader(f)] == list(range(10, 20))
    assert [seq for seq, _ in read_spool(tmp_path / "spool" / "A.spool")[1]] == list(range(1, 12))
