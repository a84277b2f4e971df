"""Prometheus metrics: the collector's snapshot, read on the loop at every scrape."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from pipeline.collector.receiver import Collector

__all__ = ["MetricsExporter", "SnapshotMetrics"]

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0

# (name without _total, help, snapshot key): per-producer and per-sink counters and gauges.
PRODUCER_COUNTERS = [("tunebus_events_received", "Events accepted, in sequence, per producer.", "events"),
                     ("tunebus_dropped_events", "Events a producer gave up (its full policy).", "dropped")]
PRODUCER_GAUGES = [("tunebus_producer_last_seq", "Last sequence number received.", "last_seq"),
                   ("tunebus_producer_lag_events", "Events received but not yet acknowledged.", "lag")]
SINK_COUNTERS = [("tunebus_sink_events_written", "Events written by the sink.", "events"),
                 ("tunebus_sink_batches", "Batches written by the sink.", "batches"),
                 ("tunebus_sink_errors", "Failed sink writes (each retried).", "errors"),
                 ("tunebus_sink_busy_seconds", "Seconds the sink spent writing.", "busy_s"),
                 ("tunebus_sink_bytes_written", "Bytes the sink wrote, where it counts them.", "bytes")]
SINK_GAUGES = [("tunebus_sink_queue_depth", "Events waiting in the sink's queue.", "queued"),
               ("tunebus_sink_lag_events", "Events received but not yet written by the sink.", "lag")]
TOTAL_COUNTERS = [("tunebus_frames_received", "Frames read from the bus.", "frames"),
                  ("tunebus_quarantined_frames", "Malformed frames kept in quarantine.", "quarantined"),
                  ("tunebus_duplicate_events", "Repeated events dropped (already taken).", "duplicates"),
                  ("tunebus_sequence_gaps", "Gaps answered with a nack.", "gaps"),
                  ("tunebus_refused_clients", "Handshakes refused (CurveZMQ keys, ZAP).", "refused")]


class SnapshotMetrics:
    """A prometheus-client collector: every scrape turns one fresh snapshot into metric families."""

    def __init__(self, snapshot: Callable[[], Mapping[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.snapshot()
        yield GaugeMetricFamily("tunebus_uptime_seconds", "Seconds since the collector started.",
                                value=snap["uptime_s"])
        for name, doc, key in TOTAL_COUNTERS:
            yield CounterMetricFamily(name, doc, value=snap[key])
        groups = [(PRODUCER_COUNTERS, CounterMetricFamily, "producer", snap.get("producers", {})),
                  (PRODUCER_GAUGES, GaugeMetricFamily, "producer", snap.get("producers", {})),
                  (SINK_COUNTERS, CounterMetricFamily, "sink", snap["sinks"]),
                  (SINK_GAUGES, GaugeMetricFamily, "sink", snap["sinks"])]
        for specs, family, label, rows in groups:
            for name, doc, key in specs:
                metric = family(name, doc, labels=[label])
                for row_name, row in rows.items():
                    if row.get(key) is not None:
                        metric.add_metric([row_name], row[key])
                yield metric


class MetricsExporter:
    """A collector service: an HTTP server for Prometheus on ``host:port`` until cancelled."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, got {port!r}")
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


def _snapshot_on(loop: asyncio.AbstractEventLoop, collector: Collector) -> dict[str, Any]:
    """``collector.snapshot()`` taken on the collector's loop, from the scrape thread."""
    async def take() -> dict[str, Any]:
        return collector.snapshot()

    future: concurrent.futures.Future[dict[str, Any]] = asyncio.run_coroutine_threadsafe(take(), loop)
    return future.result(SCRAPE_TIMEOUT_S)
