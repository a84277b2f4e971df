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
from pipeline.wire.events import Event
from sinks.base import TrialFiles, TrialRef


def _results(n: int, producer: str = "p", start: int = 0) -> list[Event]:
    return [Event("result", producer, start + i, 0.0, "e", "t", "d", {"i": start + i}) for i in range(n)]


class RecordingSink:
    """Records every call it gets."""

    name = "recording"
    durable = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.rows: list[int] = []

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        self.calls.append(("open", trial.key))

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        self.calls.append(("write", len(results)))
        self.rows.extend(r["i"] for r in results)

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        self.calls.append(("close", trial.key))

    def flush(self) -> None:
        self.calls.append(("flush", None))

    def close(self) -> None:
        self.calls.append(("closed", None))


class FailingSink(RecordingSink):
    """Fails its first ``failures`` batches, then records like RecordingSink."""

    name = "failing"

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("disk says no")
        super().write_results(trial, results)


async def test_put_waits_while_the_queue_is_full() -> None:
    """A full queue makes put wait (backpressure) until a batch is taken."""
    queue = EventQueue(max_events=10)
    await queue.put(_results(10))
    blocked = asyncio.create_task(queue.put(_results(5, start=10)))
    await asyncio.sleep(0)
    assert not blocked.done() and len(queue) == 10
    assert [e.seq for e in await queue.get_batch(4, 0)] == [0, 1, 2, 3]
    await asyncio.sleep(0)
    assert not blocked.done()  # 6 + 5 still does not fit in 10
    assert [e.seq for e in await queue.get_batch(1, 0)] == [4]
    await asyncio.wait_for(blocked, 5)
    assert len(queue) == 10


async def test_get_batch_lingers_for_a_full_batch_then_takes_what_is_there() -> None:
    """get_batch returns at max_events at once, or what arrived within linger_s."""
    queue = EventQueue(max_events=100)
    await queue.put(_results(3))
    assert len(await asyncio.wait_for(queue.get_batch(10, 0.05), 5)) == 3
    await queue.put(_results(30, start=3))
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
    with pytest.raises(ValueError, match="0"):
        EventQueue(0)
    with pytest.raises(ValueError):
        BatchPolicy(max_events=0)


async def test_a_failing_sink_is_retried_and_holds_back_only_its_own_mark(tmp_path: Path) -> None:
    """The failing sink retries until it succeeds; the healthy one is done meanwhile; marks follow."""
    healthy, failing = RecordingSink(), FailingSink(failures=2)
    policy = BatchPolicy(100, 0, 1000)
    workers = [SinkWorker(sink, TrialFiles(tmp_path), policy) for sink in (healthy, failing)]
    fanout = Fanout(workers)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    await fanout.put(_results(50))

    async def until(predicate: Any) -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(until(lambda: healthy.rows == list(range(50))), 10)
    assert workers[1].marks.get("p", -1) < 49
    await asyncio.wait_for(until(lambda: failing.rows == list(range(50))), 10)
    assert fanout.mark("p") == 49 and workers[1].stats.errors == 2
    await fanout.drain()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert healthy.calls[-1] == ("closed", None)


class PoisonSink(RecordingSink):
    """Raises ValueError on the results whose ``i`` is in ``poison``; RuntimeError while ``down``."""

    name = "poison"

    def __init__(self, poison: set[int], down: int = 0) -> None:
        super().__init__()
        self.poison, self.down = poison, down

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        if self.down:
            self.down -= 1
            raise RuntimeError("repo locked")  # not an OSError, yet not the data's fault
        if any(r["i"] in self.poison for r in results):
            raise ValueError("cannot write this value")
        super().write_results(trial, results)


async def _run_worker(sink: RecordingSink, tmp_path: Path, count: int, later: int = 0) -> SinkWorker:
    worker = SinkWorker(sink, TrialFiles(tmp_path), BatchPolicy(100, 0, 1000))
    worker.poisoned_seen = []  # type: ignore[attr-defined]
    worker.on_poison = lambda name, event, exc: worker.poisoned_seen.append((name, event.seq))  # type: ignore
    task = asyncio.create_task(worker.run())
    await worker.queue.put(_results(count))
    if later:
        while worker.stats.errors < 1:  # the first batch is taken and failing
            await asyncio.sleep(0.01)
        await worker.queue.put(_results(later, start=count))
    await worker.queue.close()
    await asyncio.wait_for(task, 30)
    return worker


async def test_an_event_a_sink_cannot_write_is_skipped_and_reported(tmp_path: Path) -> None:
    """A result that raises a data error while its neighbours write is poison: reported, skipped."""
    sink = PoisonSink({7, 30})
    worker = await _run_worker(sink, tmp_path, 50)
    assert sink.rows == [i for i in range(50) if i not in (7, 30)]
    assert worker.poisoned_seen == [("poison", 7), ("poison", 30)]  # type: ignore[attr-defined]
    assert worker.stats.poisoned == 2 and worker.stats.events == 50 and worker.marks["p"] == 49


async def test_a_sink_down_for_every_event_loses_nothing(tmp_path: Path) -> None:
    """RuntimeError on every write for a while (a locked repo) is not poison: all is written after."""
    sink = PoisonSink(set(), down=4)
    worker = await _run_worker(sink, tmp_path, 50)
    assert sink.rows == list(range(50)) and worker.stats.poisoned == 0 and worker.stats.errors == 4


async def test_a_poison_event_last_in_its_batch_is_judged_by_the_events_after_it(tmp_path: Path) -> None:
    """With nothing after it the suspect waits; events that arrive later show it is the data."""
    sink = PoisonSink({49})
    worker = await _run_worker(sink, tmp_path, 50, later=10)
    assert sink.rows == [i for i in range(60) if i != 49]
    assert worker.poisoned_seen == [("poison", 49)] and worker.marks["p"] == 59  # type: ignore[attr-defined]


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
    for failures, events in ((2, _results(10)), (0, _results(10, start=10))):
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
