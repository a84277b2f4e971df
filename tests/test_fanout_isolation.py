"""A slow Aim sink lags on its own queue; the JSON and CSV sinks and the acknowledgements go on."""

from __future__ import annotations

import asyncio
import csv
import threading
from pathlib import Path

import pytest

from pipeline.collector.backlog import SinkBacklog
from pipeline.collector.fanout import Fanout
from pipeline.collector.sink_worker import BatchPolicy, SinkWorker
from pipeline.testing import GatedSink
from pipeline.wire.events import Event
from sinks.aim import AimSink
from sinks.base import TrialFiles
from sinks.csv import CsvSink
from sinks.json import JsonSink
from tests.readers import read_aim

RESULTS = 600
TIMEOUT_S = 60.0


def _events() -> list[Event]:
    start = Event("trial_start", "p", 0, 0.0, "exp", "t1", "dir_t1", {"config": {"lr": 0.1}})
    results = [Event("result", "p", i, 0.0, "exp", "t1", "dir_t1",
                     {"loss": 1.0 / i, "acc": i / RESULTS, "training_iteration": i})
               for i in range(1, RESULTS + 1)]
    return [start, *results]


@pytest.mark.slow  # reads the Aim repo back in a child process
@pytest.mark.parametrize("queue_events", [10_000, 20], ids=["in-memory", "past-the-queue-to-disk"])
async def test_a_blocked_aim_sink_does_not_hold_back_json_csv_or_acks(
        tmp_path: Path, queue_events: int) -> None:
    """While Aim cannot write, JSON and CSV write every result and acks go on; then Aim catches up."""
    gate = threading.Event()
    policy = BatchPolicy(max_events=100, linger_s=0.0, max_queue_events=queue_events)
    fast_done, slow_done = asyncio.Event(), asyncio.Event()
    gated = GatedSink(AimSink(tmp_path), gate, TIMEOUT_S)
    backlog = SinkBacklog(tmp_path / ".tunebus" / "backlog-aim.spool", 1 << 30)
    workers = [SinkWorker(JsonSink(tmp_path), TrialFiles(tmp_path), policy),
               SinkWorker(CsvSink(tmp_path), TrialFiles(tmp_path), policy),
               SinkWorker(gated, TrialFiles(tmp_path), policy, durable=False, backlog=backlog)]
    fanout = Fanout(workers)

    def progress() -> None:
        if all(w.marks.get("p") == RESULTS for w in workers[:2]):
            fast_done.set()
        if workers[2].marks.get("p") == RESULTS:
            slow_done.set()

    for worker in workers:
        worker.on_progress = progress
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await fanout.put(_events())
        await asyncio.wait_for(fast_done.wait(), TIMEOUT_S)  # the JSON and CSV sinks

        assert fanout.mark("p") == RESULTS and "p" not in workers[2].marks
        assert len(workers[2].queue) >= RESULTS + 1 - policy.max_events  # Aim's backlog, in its queue
        assert (len(backlog) > 0) == (queue_events < RESULTS)  # past the queue, on disk
        assert len(workers[2].queue) - len(backlog) <= queue_events
        lines = (tmp_path / "exp" / "dir_t1" / "result.json").read_text().splitlines()
        with (tmp_path / "exp" / "dir_t1" / "progress.csv").open(newline="") as f:
            assert len(lines) == len(list(csv.DictReader(f))) == RESULTS
    finally:
        gate.set()
    await asyncio.wait_for(slow_done.wait(), TIMEOUT_S)  # the Aim sink catches up
    await fanout.drain()
    await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT_S)
    [run] = read_aim(tmp_path / "exp")
    assert run["metrics"]["ray/tune/loss|{}"]["steps"] == list(range(1, RESULTS + 1))
