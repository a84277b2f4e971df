"""The sink worker: one task and one thread per sink, writing batches from its queue, in order."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.collector.backlog import SinkBacklog
from pipeline.collector.filters import Filter, apply_filters, filter_states, restore_filters
from pipeline.collector.ledger import Ledger, last_seqs
from pipeline.collector.sink_queue import EventQueue
from pipeline.collector.snapshot import SinkSnapshot
from pipeline.wire.events import Event
from sinks.base import Sink, TrialFiles, close_all, deliver

__all__ = ["BatchPolicy", "SinkStats", "SinkWorker"]

log = logging.getLogger(__name__)

MAX_RETRY_DELAY_S = 30.0
POISON_AFTER = 3
"""Failures of one batch with a data error before it is tried event by event to find poison."""
DATA_ERRORS = (TypeError, ValueError, LookupError, AttributeError, ArithmeticError, RecursionError)
"""What a sink raises when an event's values are at fault; anything else (OSError, a locked Aim
repo's RuntimeError) is the environment, and the batch waits for it, however long."""


@dataclass(slots=True)
class SinkStats:
    """What one sink has done so far."""

    batches: int = 0
    events: int = 0
    errors: int = 0
    poisoned: int = 0
    """Events this sink could not write because of their data, skipped (see ``on_poison``)."""
    last_error: str = ""
    busy_s: float = 0.0


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When a sink writes: after ``max_events`` events or ``linger_s`` after the first.

    Its values are the collector's settings, declared once in ``CollectorConfig``.
    """

    max_events: int
    linger_s: float
    max_queue_events: int

    def __post_init__(self) -> None:
        if self.max_events < 1 or self.max_queue_events < 1:
            raise ValueError(f"batch and queue sizes must be at least 1, got {self!r}")
        if self.linger_s < 0:
            raise ValueError(f"linger_s must be >= 0, got {self.linger_s!r}")


@dataclass
class SinkWorker:
    """Moves events from one sink's queue into the sink, off the event loop, in order."""

    sink: Sink
    trials: TrialFiles
    policy: BatchPolicy
    filters: Sequence[Filter] = ()
    durable: bool = True
    on_progress: Callable[[], None] = lambda: None
    on_poison: Callable[[str, Event, Exception], None] = lambda sink, event, exc: log.error(
        "sink %s skipped event %s/%d it cannot write: %r", sink, event.producer, event.seq, exc)
    stats: SinkStats = field(default_factory=SinkStats)
    marks: dict[str, int] = field(default_factory=dict)
    ledger: Ledger | None = None
    backlog: SinkBacklog | None = None
    """Where events past the queue's bound wait on disk; only for sinks that are not durable."""
    filter_state_path: Path | None = None
    """Where a sink with no ledger keeps its filters' state from a clean stop to the next start
    (read and removed at start: after a crash its filters start afresh)."""

    def __post_init__(self) -> None:
        if self.backlog is not None and self.durable:
            raise ValueError(f"sink {self.sink.name!r} is durable: its queue must push back, not spill")
        self.queue = EventQueue(self.policy.max_queue_events, self.backlog)
        if self.ledger is not None:
            self.marks.update(self.ledger.marks)
            self._restore(self.ledger.filters)
        elif self.filter_state_path is not None and self.filter_state_path.exists():
            self._restore(orjson.loads(self.filter_state_path.read_bytes()))
            self.filter_state_path.unlink()
        self._filter_state = filter_states(self.filters)
        """The filters' state after the last batch written: what a failed write goes back to."""
        self._thread = concurrent.futures.ThreadPoolExecutor(1, f"tunebus-{self.sink.name}")

    @property
    def name(self) -> str:
        return self.sink.name

    def snapshot(self, received: int) -> SinkSnapshot:
        """This sink's counters now; ``received``: events the collector took, for the lag."""
        backlog = self.backlog
        return SinkSnapshot(
            events=self.stats.events, batches=self.stats.batches, errors=self.stats.errors,
            poisoned=self.stats.poisoned, queued=len(self.queue), lag=received - self.stats.events,
            busy_s=self.stats.busy_s, durable=self.durable, last_error=self.stats.last_error,
            bytes=self.sink.bytes_written,
            backlog=len(backlog) if backlog is not None else 0,
            backlog_unreadable=backlog.unreadable if backlog is not None else 0,
            filters=tuple(str(f) for f in self.filters))

    def _restore(self, states: Any) -> None:
        if states is not None and not restore_filters(self.filters, states):
            log.warning("sink %s: its filters changed since their state was saved; they start afresh",
                        self.name)

    async def run(self) -> None:
        """Write batches until the queue is closed and empty, then close the sink."""
        loop = asyncio.get_running_loop()
        try:
            while batch := await self.queue.get_batch(self.policy.max_events, self.policy.linger_s):
                written = await self._write(loop, batch)
                self.marks.update(last_seqs(written))
                self.on_progress()
        finally:
            await loop.run_in_executor(self._thread, close_all, self.sink, self.trials)
            self._thread.shutdown(wait=True)
            if self.backlog is not None:
                self.backlog.close()
            if self.filter_state_path is not None and self._filter_state is not None:
                tmp = self.filter_state_path.with_name(self.filter_state_path.name + ".tmp")
                tmp.write_bytes(orjson.dumps(self._filter_state))
                os.replace(tmp, self.filter_state_path)

    async def _write(self, loop: asyncio.AbstractEventLoop, batch: list[Event]) -> list[Event]:
        """Write ``batch``, retrying with backoff until it is written (poison events aside).

        Returns every event it took, in order: ``batch``, and any taken from the queue to
        judge a suspect that had no events after it.
        """
        taken, delay, data_failures = batch, 0.1, 0
        while batch:
            started = time.monotonic()
            try:
                await self._deliver(loop, batch)
            except Exception as exc:  # noqa: BLE001 - a failing sink is retried, never fatal
                self._failed(exc, delay)
                data_failures = data_failures + 1 if isinstance(exc, DATA_ERRORS) else 0
                if data_failures >= POISON_AFTER:
                    batch, data_failures = await self._one_by_one(loop, batch), 0
                    if not batch:
                        return taken
                    if len(self.queue):  # later events tell a poison event from a bad disk
                        more = await self.queue.get_batch(self.policy.max_events, 0)
                        batch, taken = batch + more, taken + more
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY_S)
                continue
            self.stats.busy_s += time.monotonic() - started
            self.stats.batches += 1
            self.stats.events += len(batch)
            return taken
        return taken

    async def _deliver(self, loop: asyncio.AbstractEventLoop, batch: list[Event]) -> None:
        """Filter what this sink has not written yet and write it; the filters' state after the
        batch commits with the ledger, and goes back to what it was if the write fails."""
        fresh = self.ledger.fresh(batch) if self.ledger is not None else batch
        try:
            events = apply_filters(self.filters, fresh)
            state = filter_states(self.filters)
            await loop.run_in_executor(self._thread, self._apply, batch, events, state)
        except Exception:  # cancelled, the thread may still commit the batch: keep its state
            restore_filters(self.filters, self._filter_state)
            raise
        self._filter_state = state

    async def _one_by_one(self, loop: asyncio.AbstractEventLoop, batch: list[Event]) -> list[Event]:
        """Write ``batch`` an event at a time; returns what is left to retry.

        An event that raises a data error while a later event is written fine is poison:
        its values, not the disk or the repo, are at fault. It is handed to ``on_poison``
        and skipped. Failures with nothing written after them are left for the retry.
        """
        suspects: list[tuple[Event, Exception]] = []
        for i, event in enumerate(batch):
            try:
                await self._deliver(loop, [event])
            except DATA_ERRORS as exc:  # judged below, against the events after it
                suspects.append((event, exc))
                if len(suspects) == i + 1 == POISON_AFTER:  # nothing gets through: not the data
                    return [e for e, _ in suspects] + batch[i + 1:]
                continue
            except Exception:  # noqa: BLE001 - the environment: the retry waits for it
                return [e for e, _ in suspects] + batch[i:]
            for bad, error in suspects:
                self.stats.poisoned += 1
                self.on_poison(self.name, bad, error)
            self.stats.events += 1 + len(suspects)
            suspects.clear()
        return [e for e, _ in suspects]

    def _failed(self, exc: Exception, delay: float) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.error("sink %s failed (%s); retrying in %.1fs", self.name, exc, delay)

    def _apply(self, batch: list[Event], events: list[Event], filters: Any = None) -> None:
        """Write one batch in the sink's thread; on failure, roll the files back to the ledger."""
        if self.ledger is not None:
            self.ledger.before(batch)
        try:
            deliver(self.sink, events, self.trials)
            if self.ledger is not None:
                self.ledger.after(batch, filters)
        except Exception:
            self._roll_back()
            raise

    def _roll_back(self) -> None:
        try:
            close_all(self.sink, self.trials)
        except Exception as exc:  # noqa: BLE001 - the files may be what is failing
            log.debug("sink %s: closing after a failure failed too: %s", self.name, exc)
            self.trials.open.clear()
        if self.ledger is not None:
            self.ledger.recover()
