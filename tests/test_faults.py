"""Sink faults on a real filesystem: retried with backoff, the others go on, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import csv
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.collector.snapshot import SinkSnapshot
from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import EXPERIMENT, TRIAL_DIR, running_collector, submit_results, wait_until, written

COUNT = 200


def _csv_rows(out: Path) -> list[int]:
    with (out / EXPERIMENT / TRIAL_DIR / "progress.csv").open(newline="") as f:
        return [int(row["i"]) for row in csv.DictReader(f)]


async def test_a_blocked_file_stalls_only_its_sink_until_cleared(tmp_path: Path, address: str) -> None:
    """result.json blocked by a directory: JSON retries, CSV writes on, JSON catches up once cleared."""
    out = tmp_path / "out"
    blocker = out / EXPERIMENT / TRIAL_DIR / "result.json"
    blocker.mkdir(parents=True)
    sender = Sender(address, "p1", SenderConfig(spool_dir=str(tmp_path / "spool")))
    async with running_collector(out, address) as collector:
        submit_results(sender, COUNT)
        json_sink = next(w for w in collector.fanout.workers if w.name == "json")
        await wait_until(lambda: json_sink.stats.errors >= 2 and len(_csv_rows(out)) == COUNT, 30,
                         "JSON to fail twice and CSV to write every row")
        assert not await asyncio.to_thread(sender.flush, 0.2)  # unacknowledged while JSON fails
        blocker.rmdir()
        assert await asyncio.to_thread(sender.flush, 60)
        sender.close()
    assert written(out) == list(range(1, COUNT + 1))
    assert _csv_rows(out) == list(range(1, COUNT + 1))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs; skipped where this machine does not let the tests mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_is_survived_and_caught_up(small_disk: Path, tmp_path: Path,
                                                     address: str) -> None:
    """ENOSPC mid-write: rows are rolled back and retried; after space frees, each row is there once."""
    out = small_disk / "out"
    filler = small_disk / "filler"
    sender = Sender(address, "p1", SenderConfig(spool_dir=str(tmp_path / "spool")))
    async with running_collector(out, address) as collector:
        free = shutil.disk_usage(small_disk).free
        filler.write_bytes(b"\0" * (free - 24 * 1024))
        submit_results(sender, COUNT * 3)
        await wait_until(lambda: sum(w.stats.errors for w in collector.fanout.workers) >= 2, 30,
                         "two failed writes")
        assert not await asyncio.to_thread(sender.flush, 0.2)
        filler.unlink()
        assert await asyncio.to_thread(sender.flush, 90)
        sender.close()
    assert written(out) == list(range(1, COUNT * 3 + 1))
    assert _csv_rows(out) == list(range(1, COUNT * 3 + 1))


@pytest.mark.slow  # Aim's backoff, and reading the repo back in a child process
async def test_an_aim_repo_in_the_way_is_retried_and_caught_up(tmp_path: Path, address: str) -> None:
    """A file where Aim's repo goes: Aim retries with backoff, JSON and acks go on, Aim catches up after."""
    from tests.readers import read_aim

    out = tmp_path / "out"
    blocker = out / EXPERIMENT / ".aim"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a repo")
    sender = Sender(address, "p1", SenderConfig(spool_dir=str(tmp_path / "spool")))
    async with running_collector(out, address, sinks=("json", "aim")) as collector:
        submit_results(sender, COUNT)
        def aim() -> SinkSnapshot:  # Aim writes in its own process: its counts come with the snapshot
            return collector.snapshot().sinks["aim"]

        assert await asyncio.to_thread(sender.flush, 60)  # Aim is not durable: acks do not wait
        await wait_until(lambda: aim().errors >= 2, 30, "Aim to fail twice")
        assert written(out) == list(range(1, COUNT + 1)) and aim().events == 0
        blocker.unlink()
        await wait_until(lambda: aim().events == COUNT + 1, 90, "Aim to catch up")
        sender.close()
    [run] = read_aim(out / EXPERIMENT)
    assert run["metrics"]["ray/tune/i|{}"]["steps"] == list(range(1, COUNT + 1))
