"""Prometheus metrics: the collector's snapshot, read on the loop at every scrape."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.collector.snapshot import CollectorSnapshot, ProducerSnapshot, SinkSnapshot

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from pipeline.collector.receiver import Collector

__all__ = ["MetricsExporter", "SnapshotMetrics"]

log = logging.getLogger(__name__)

T = TypeVar("T")

SCRAPE_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0

# (name without _total, help, what it reads): totals, per producer, per sink; counters and gauges.
PRODUCER_COUNTERS: list[tuple[str, str, Callable[[ProducerSnapshot], float]]] = [
    ("tunebus_events_received", "Events accepted, in sequence, per producer.", lambda p: p.events),
    ("tunebus_dropped_events", "Events a producer gave up (its full policy).", lambda p: p.dropped)]
PRODUCER_GAUGES: list[tuple[str, str, Callable[[ProducerSnapshot], float]]] = [
    ("tunebus_producer_last_seq", "Last sequence number received.", lambda p: p.last_seq),
    ("tunebus_producer_lag_events", "Events received but not yet acknowledged.", lambda p: p.lag)]
SINK_COUNTERS: list[tuple[str, str, Callable[[SinkSnapshot], float | None]]] = [
    ("tunebus_sink_events_written", "Events written by the sink.", lambda s: s.events),
    ("tunebus_sink_batches", "Batches written by the sink.", lambda s: s.batches),
    ("tunebus_sink_errors", "Failed sink writes (each retried).", lambda s: s.errors),
    ("tunebus_sink_busy_seconds", "Seconds the sink spent writing.", lambda s: s.busy_s),
    ("tunebus_sink_bytes_written", "Bytes the sink wrote, where it counts them.", lambda s: s.bytes)]
SINK_GAUGES: list[tuple[str, str, Callable[[SinkSnapshot], float | None]]] = [
    ("tunebus_sink_queue_depth", "Events waiting in the sink's queue.", lambda s: s.queued),
    ("tunebus_sink_lag_events", "Events received but not yet written by the sink.", lambda s: s.lag)]
TOTAL_COUNTERS: list[tuple[str, str, Callable[[CollectorSnapshot], float]]] = [
    ("tunebus_frames_received", "Frames read from the bus.", lambda c: c.frames),
    ("tunebus_quarantined_frames", "Malformed frames kept in quarantine.", lambda c: c.quarantined),
    ("tunebus_duplicate_events", "Repeated events dropped (already taken).", lambda c: c.duplicates),
    ("tunebus_sequence_gaps", "Gaps answered with a nack.", lambda c: c.gaps),
    ("tunebus_refused_clients", "Handshakes refused (CurveZMQ keys, ZAP); the log says whom.",
     lambda c: c.refused)]
PRODUCER_INFO = ("tunebus_producer_info", "1 per producer shown in status: its experiments, driver host "
                 "and pid, and whether its run ended (an ended run's series go an hour after its end).")


class SnapshotMetrics:
    """A prometheus-client collector: every scrape turns one fresh snapshot into metric families."""

    def __init__(self, snapshot: Callable[[], CollectorSnapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.snapshot()
        yield GaugeMetricFamily("tunebus_uptime_seconds", "Seconds since the collector started.",
                                value=snap.uptime_s)
        for name, doc, total in TOTAL_COUNTERS:
            yield CounterMetricFamily(name, doc, value=total(snap))
        for family, specs in ((CounterMetricFamily, PRODUCER_COUNTERS), (GaugeMetricFamily, PRODUCER_GAUGES)):
            yield from _labelled(family, "producer", specs, snap.producers)
        yield _producer_info(GaugeMetricFamily, snap.producers)
        for family, sink_specs in ((CounterMetricFamily, SINK_COUNTERS), (GaugeMetricFamily, SINK_GAUGES)):
            yield from _labelled(family, "sink", sink_specs, snap.sinks)


def _labelled(family: Any, label: str, specs: Sequence[tuple[str, str, Callable[[T], float | None]]],
              rows: Mapping[str, T]) -> Iterator[Metric]:
    """One metric family per spec, one sample per row (a producer, a sink) labelled with its name."""
    for name, doc, read in specs:
        metric = family(name, doc, labels=[label])
        for row_name, row in rows.items():
            value = read(row)
            if value is not None:
                metric.add_metric([row_name], value)
        yield metric


def _producer_info(family: Any, producers: Mapping[str, ProducerSnapshot]) -> Metric:
    """Who each producer is, as labels of a constant 1 (Prometheus' info-metric idiom)."""
    metric = family(*PRODUCER_INFO, labels=["producer", "experiments", "host", "pid", "run"])
    for name, p in producers.items():
        metric.add_metric([name, ",".join(p.experiments), p.host, str(p.pid or ""),
                           "ended" if p.ended else "running"], 1)
    result: Metric = metric
    return result


class MetricsExporter:
    """A collector service: an HTTP server for Prometheus on ``host:port`` until cancelled.

    ``port`` and ``host`` are the collector's settings (``--metrics-port``, ``--metrics-host``),
    declared and checked in ``CollectorConfig``.
    """

    def __init__(self, port: int, host: str) -> None:
        self.host, self.port = host, port
        self.ready = asyncio.Event()

    async def __call__(self, collector: Collector) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        loop = asyncio.get_running_loop()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotMetrics(lambda: _snapshot_on(loop, collector)))
        try:
            server, thread = start_http_server(self.port, self.host, registry)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc} "
                          f"(leave out --metrics-port to run without)") from exc
        self.port = server.server_port
        self.ready.set()
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)
        try:
            await asyncio.Event().wait()
        finally:
            # shutdown() waits for a scrape in progress, which waits for this loop: off the loop.
            stopping = loop.run_in_executor(None, server.shutdown)
            await asyncio.wait_for(stopping, STOP_TIMEOUT_S)
            server.server_close()
            thread.join(STOP_TIMEOUT_S)


def _snapshot_on(loop: asyncio.AbstractEventLoop, collector: Collector) -> CollectorSnapshot:
    """``collector.snapshot()`` taken on the collector's loop, from the scrape thread."""
    async def take() -> CollectorSnapshot:
        return collector.snapshot()

    future: concurrent.futures.Future[CollectorSnapshot] = asyncio.run_coroutine_threadsafe(take(), loop)
    return future.result(SCRAPE_TIMEOUT_S)
