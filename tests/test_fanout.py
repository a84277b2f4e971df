"""Sink queues: bounded, batched, in order, and a failing sink retried without touching the others."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pipeline.collector.fanout import Fanout
from pipeline.collector.ledger import Ledger
from pipeline.collector.sink_queue import EventQueue
from pipeline.collector.sink_worker import BatchPolicy, SinkWorker
from pipeline.collector.smoothing import Smooth
from pipeline.testing import FailingSink, RecordingSink, wait_until
from pipeline.testing import result_events as _results
from sinks.base import TrialFiles, TrialRef


async def test_put_waits_while_the_queue_is_full() -> None:
    """A full queue makes put wait (backpressure) until a batch is taken."""
    queue = EventQueue(max_events=10)
    await queue.put(_results(10))
    blocked = asyncio.create_task(queue.put(_results(5, first=10)))
    await asyncio.sleep(0)  # one turn of the loop: the put runs until it waits for room
    assert not blocked.done() and len(queue) == 10
    assert [e.seq for e in await queue.get_batch(4, 0)] == [0, 1, 2, 3]
    await asyncio.sleep(0)  # the put wakes, finds no room, and waits again
    assert not blocked.done()  # 6 + 5 still does not fit in 10
    assert [e.seq for e in await queue.get_batch(1, 0)] == [4]
    await asyncio.wait_for(blocked, 5)
    assert len(queue) == 10


async def test_get_batch_lingers_for_a_full_batch_then_takes_what_is_there() -> None:
    """get_batch returns at max_events at once, or what arrived within linger_s."""
    queue = EventQueue(max_events=100)
    await queue.put(_results(3))
    assert len(await asyncio.wait_for(queue.get_batch(10, 0.05), 5)) == 3
    await queue.put(_results(30, first=3))
    assert [e.seq for e in await queue.get_batch(10, 60)] == list(range(3, 13))


async def test_closed_queue_drains_then_returns_empty() -> None:
    """After close the remaining events still come out, then an empty batch ends the worker."""
    queue = EventQueue(max_events=10)
    await queue.put(_results(2))
    await queue.close()
    assert len(await queue.get_batch(10, 1)) == 2
    assert await queue.get_batch(10, 1) == []


def test_bounds_are_checked_with_the_bad_value() -> None:
    """Zero-sized queues and batches are refused at construction."""
    with pytest.raises(ValueError, match="max_events must be at least 1, got 0"):
        EventQueue(0)
    with pytest.raises(ValueError, match="batch and queue sizes must be at least 1.*max_events=0"):
        BatchPolicy(max_events=0, linger_s=0.0, max_queue_events=1)


async def test_a_failing_sink_is_retried_and_holds_back_only_its_own_mark(tmp_path: Path) -> None:
    """The failing sink retries until it succeeds; the healthy one is done meanwhile; marks follow."""
    healthy, failing = RecordingSink(), FailingSink(failures=2)
    policy = BatchPolicy(100, 0, 1000)
    workers = [SinkWorker(sink, TrialFiles(tmp_path), policy) for sink in (healthy, failing)]
    fanout = Fanout(workers)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    await fanout.put(_results(50))
    await wait_until(lambda: healthy.values() == list(range(50)), 10, "the healthy sink")
    assert workers[1].marks.get("p", -1) < 49
    await wait_until(lambda: failing.values() == list(range(50)), 10, "the failing sink to catch up")
    assert fanout.mark("p") == 49 and workers[1].stats.errors == 2
    await fanout.drain()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert healthy.calls[-1] == ("closed", None)


class PoisonSink(RecordingSink):
    """Raises ValueError on the results whose ``i`` is in ``poison``; RuntimeError while ``down``."""

    def __init__(self, poison: set[int], down: int = 0) -> None:
        super().__init__("poison")
        self.poison, self.down = poison, down

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        if self.down:
            self.down -= 1
            raise RuntimeError("repo locked")  # not an OSError, yet not the data's fault
        if any(r["i"] in self.poison for r in results):
            raise ValueError("cannot write this value")
        super().write_results(trial, results)


async def _run_worker(sink: RecordingSink, tmp_path: Path, count: int,
                      later: int = 0) -> tuple[SinkWorker, list[tuple[str, int]]]:
    """Write ``count`` results (and ``later`` more once a write failed); the worker and its poison."""
    poisoned: list[tuple[str, int]] = []
    worker = SinkWorker(sink, TrialFiles(tmp_path), BatchPolicy(100, 0, 1000),
                        on_poison=lambda name, event, exc: poisoned.append((name, event.seq)))
    task = asyncio.create_task(worker.run())
    await worker.queue.put(_results(count))
    if later:
        await wait_until(lambda: worker.stats.errors >= 1, 10, "the first batch to fail")
        await worker.queue.put(_results(later, first=count))
    await worker.queue.close()
    await asyncio.wait_for(task, 30)
    return worker, poisoned


async def test_an_event_a_sink_cannot_write_is_skipped_and_reported(tmp_path: Path) -> None:
    """A result that raises a data error while its neighbours write is poison: reported, skipped."""
    sink = PoisonSink({7, 30})
    worker, poisoned = await _run_worker(sink, tmp_path, 50)
    assert sink.values() == [i for i in range(50) if i not in (7, 30)]
    assert poisoned == [("poison", 7), ("poison", 30)]
    assert worker.stats.poisoned == 2 and worker.stats.events == 50 and worker.marks["p"] == 49


async def test_a_sink_down_for_every_event_loses_nothing(tmp_path: Path) -> None:
    """RuntimeError on every write for a while (a locked repo) is not poison: all is written after."""
    sink = PoisonSink(set(), down=4)
    worker, _ = await _run_worker(sink, tmp_path, 50)
    assert sink.values() == list(range(50)) and worker.stats.poisoned == 0 and worker.stats.errors == 4


@pytest.mark.slow  # three retries with backoff before the suspect is judged: about 3 s
async def test_a_poison_event_last_in_its_batch_is_judged_by_the_events_after_it(tmp_path: Path) -> None:
    """With nothing after it the suspect waits; events that arrive later show it is the data."""
    sink = PoisonSink({49})
    worker, poisoned = await _run_worker(sink, tmp_path, 50, later=10)
    assert sink.values() == [i for i in range(60) if i != 49]
    assert poisoned == [("poison", 49)] and worker.marks["p"] == 59


class SmoothedSink(FailingSink):
    """Fails its first batches like FailingSink, then records each result's smoothed ``i``."""

    def __init__(self, failures: int) -> None:
        super().__init__(failures)
        self.smoothed: list[float] = []

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        super().write_results(trial, results)
        self.smoothed.extend(r["i_smoothed_0.5"] for r in results)


async def test_filter_state_goes_back_on_a_failed_write_and_commits_with_the_ledger(tmp_path: Path) -> None:
    """A retried batch smooths from the state before it; a new worker on the same ledger goes on from it."""
    want = [e.payload["i_smoothed_0.5"] for e in Smooth("i", 0.5)(_results(20))]
    got: list[float] = []
    for failures, events in ((2, _results(10)), (0, _results(10, first=10))):
        sink = SmoothedSink(failures)
        ledger = Ledger(tmp_path / "ledger.json", tmp_path, ())
        worker = SinkWorker(sink, TrialFiles(tmp_path), BatchPolicy(100, 0, 1000),
                            filters=[Smooth("i", 0.5)], ledger=ledger)
        task = asyncio.create_task(worker.run())
        await worker.queue.put(events)
        await worker.queue.close()
        await asyncio.wait_for(task, 10)
        got += sink.smoothed
    assert got == want


async def test_a_sink_without_a_ledger_keeps_its_filter_state_from_a_clean_stop_to_the_next_start(
        tmp_path: Path) -> None:
    """A non-durable worker saves its filters' state as it stops; the next takes it and removes the file."""
    want = [e.payload["i_smoothed_0.5"] for e in Smooth("i", 0.5)(_results(20))]
    path = tmp_path / "filters-smoothed.json"
    got: list[float] = []
    for events in (_results(10), _results(10, first=10)):
        sink = SmoothedSink(0)
        worker = SinkWorker(sink, TrialFiles(tmp_path), BatchPolicy(100, 0, 1000), filters=[Smooth("i", 0.5)],
                            durable=False, filter_state_path=path)
        assert not path.exists()
        task = asyncio.create_task(worker.run())
        await worker.queue.put(events)
        await worker.queue.close()
        await asyncio.wait_for(task, 10)
        assert path.exists()
        got += sink.smoothed
    assert got == want
