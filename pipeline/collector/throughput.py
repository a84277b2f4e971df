"""Throughput from the collector's counters: recent rates, and the periodic one-line log."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pipeline.collector.snapshot import CollectorSnapshot

if TYPE_CHECKING:
    from pipeline.collector.receiver import Collector

__all__ = ["RateWindow", "ThroughputLog", "counters", "summary_line"]

log = logging.getLogger(__name__)


def counters(snapshot: CollectorSnapshot) -> dict[str, float]:
    """The monotonic counters of a snapshot that rates are taken of: received, and per sink."""
    flat = {"events": float(snapshot.events)}
    for name, sink in snapshot.sinks.items():
        flat[f"sinks.{name}"] = float(sink.events)
    return flat


class RateWindow:
    """Per-second rates of counters over (about) the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 10.0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        self.window_s = window_s
        self._samples: collections.deque[tuple[float, dict[str, float]]] = collections.deque()

    def add(self, now: float, values: Mapping[str, float]) -> None:
        """Record ``values`` at monotonic time ``now``; forget samples older than the window."""
        self._samples.append((now, dict(values)))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def rates(self) -> dict[str, float]:
        """Each counter's increase per second between the oldest and newest sample (0 with one)."""
        if len(self._samples) < 2:
            return {}
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        span = max(t1 - t0, 1e-9)
        return {k: max(v - first.get(k, 0.0), 0.0) / span for k, v in last.items()}


def summary_line(snapshot: CollectorSnapshot, rates: Mapping[str, float]) -> str:
    """One line: received and written per second, the worst lags, queue depth, faults."""
    sinks = snapshot.sinks
    written = " ".join(f"{n} {rates.get(f'sinks.{n}', 0.0):.0f}/s" for n in sinks)
    sink_lag = max(((s.lag, n) for n, s in sinks.items()), default=(0, "-"))
    producer_lag = max((p.lag for p in snapshot.producers.values()), default=0)
    shard = snapshot.shard
    place = f"shard {shard.index} of {shard.count} " if shard.count > 1 else ""
    return (f"{place}throughput: {rates.get('events', 0.0):.0f} events/s in; written {written}; "
            f"lag: sink {sink_lag[0]} events ({sink_lag[1]}), producer {producer_lag} unacked; "
            f"queued {snapshot.queue_depth}; quarantined {snapshot.quarantined}, "
            f"dropped {snapshot.dropped}")


class ThroughputLog:
    """A collector service that logs ``summary_line`` every ``interval_s`` seconds until cancelled."""

    def __init__(self, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.interval_s = interval_s
        self.ticks = 0
        """Intervals looked at, logged or not (an idle one is not)."""

    async def __call__(self, collector: Collector) -> None:
        window = RateWindow(self.interval_s)
        last = counters(collector.snapshot())
        window.add(time.monotonic(), last)
        while True:
            await asyncio.sleep(self.interval_s)
            snapshot = collector.snapshot()
            now = counters(snapshot)
            window.add(time.monotonic(), now)
            if now != last or snapshot.queue_depth:  # an idle collector says nothing
                log.info("%s", summary_line(snapshot, window.rates()))
            last = now
            self.ticks += 1
