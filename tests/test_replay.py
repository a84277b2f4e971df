"""``tunebus replay``: what is not confirmed stays in the file it came from, and the advice names it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from pipeline.entry.cli import main
from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import running_collector, submit_results, written
from pipeline.wire.spool import read_spool

COUNT = 50


def test_closing_with_no_collector_names_the_spool_and_the_real_address(
        tmp_path: Path, address: str, caplog: pytest.LogCaptureFixture) -> None:
    """The end-of-run hint is a command to copy: the saved file and the collector's own address."""
    caplog.set_level(logging.WARNING, logger="pipeline.producer.sender")
    spool = _left_spool(tmp_path, address)
    [hint] = [r.getMessage() for r in caplog.records if "Deliver them with" in r.getMessage()]
    assert hint.endswith(f"tunebus replay {spool} --to {address}")


def _left_spool(tmp_path: Path, address: str) -> Path:
    sender = Sender(address, "p1", SenderConfig(spool_dir=str(tmp_path / "spool")))
    submit_results(sender, COUNT)
    assert not sender.close(0.1)
    return tmp_path / "spool" / "p1.spool"


async def test_unconfirmed_events_stay_in_the_replayed_file(
        tmp_path: Path, address: str, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """With no collector answering, the spool still holds every event, and the advice names it."""
    spool = _left_spool(tmp_path, address)
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="pipeline.producer.sender")
    code = await asyncio.to_thread(main, ["replay", str(spool), "--to", address, "--timeout-s", "0.3"])
    assert code == 1
    [hint] = [r.getMessage() for r in caplog.records if "Deliver them with" in r.getMessage()]
    assert f"saved to {spool}." in hint  # the replayed file itself, not a scratch copy
    out = capsys.readouterr().out
    assert f"the rest stay in {spool}" in out and f"--to {address}" in out
    producer, items = read_spool(spool)
    assert producer == "p1" and [seq for seq, _ in items] == list(range(COUNT + 1))
    async with running_collector(tmp_path / "out", address):
        assert await asyncio.to_thread(main, ["replay", str(spool), "--to", address]) == 0
    assert not spool.exists()
    assert written(tmp_path / "out") == list(range(1, COUNT + 1))


async def test_a_shards_spool_replays_to_its_own_shard_only(tmp_path: Path) -> None:
    """Shard 1's spool sent to shard 0 is refused naming shard 1's address; sent there, it is written."""
    from pipeline.producer.replay import replay
    from pipeline.testing import free_address, result_event, start_event
    from pipeline.wire.spool import write_spool

    shards = (free_address(), free_address())
    spool = tmp_path / "d.1234.s1.spool"
    write_spool(spool, "d.1234.s1", [(0, start_event("d.1234.s1", 0)), (1, result_event("d.1234.s1", 1))])
    outs = (tmp_path / "out0", tmp_path / "out1")
    async with running_collector(outs[0], shards[0], shard_index=0, shard_addresses=shards), \
            running_collector(outs[1], shards[1], shard_index=1, shard_addresses=shards) as second:
        refused = f"shard 1's events .*replay it --to {shards[1]}, not to shard 0"
        with pytest.raises(ValueError, match=refused):
            await asyncio.to_thread(replay, spool, shards[0], 30.0)
        assert await asyncio.to_thread(replay, spool, shards[1], 30.0) == (True, 2)
    assert second.snapshot().events == 2 and not spool.exists()
