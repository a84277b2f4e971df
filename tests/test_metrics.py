"""--metrics-port: the collector's counters scraped over HTTP on loopback, in Prometheus' format."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest

from pipeline.collector.metrics import MetricsExporter
from pipeline.testing import dealer, result_event, running_collector, start_event, wait_until
from pipeline.wire.codec import frame_events

pytest.importorskip("prometheus_client")


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_a_scrape_shows_received_written_queued_and_quarantined(tmp_path: Path, address: str) -> None:
    """After three events and one bad frame, the scrape carries exactly those counts, with labels."""
    async with running_collector(tmp_path, address, sinks=("json", "csv"), status_bind="",
                                 metrics_port=0) as collector:
        exporter = next(s for s in collector.services if isinstance(s, MetricsExporter))
        await asyncio.wait_for(exporter.ready.wait(), 10)
        with dealer(address, "p1") as sock:
            sock.send(frame_events("p1", 0, [start_event("p1", 0), result_event("p1", 1),
                                             result_event("p1", 2)]))
            sock.send(b"\xc1")
            await wait_until(lambda: collector.snapshot().sinks["csv"].events == 3
                             and collector.snapshot().quarantined == 1, 20, "the writes")
        samples = await asyncio.to_thread(_scrape, exporter.port)
    assert samples[("tunebus_events_received_total", (("producer", "p1"),))] == 3
    assert samples[("tunebus_producer_last_seq", (("producer", "p1"),))] == 2
    for sink in ("json", "csv"):
        assert samples[("tunebus_sink_events_written_total", (("sink", sink),))] == 3
        assert samples[("tunebus_sink_queue_depth", (("sink", sink),))] == 0
        assert samples[("tunebus_sink_busy_seconds_total", (("sink", sink),))] > 0
    assert samples[("tunebus_quarantined_frames_total", ())] == 1
    assert samples[("tunebus_frames_received_total", ())] == 2
    assert samples[("tunebus_uptime_seconds", ())] > 0


async def test_repeats_gaps_batches_and_bytes_are_exported_as_counted(tmp_path: Path, address: str) -> None:
    """A resent event, a gap, and the sinks' batches and bytes reach the scrape with their counts."""
    async with running_collector(tmp_path, address, sinks=("json",), status_bind="",
                                 metrics_port=0) as collector:
        exporter = next(s for s in collector.services if isinstance(s, MetricsExporter))
        await asyncio.wait_for(exporter.ready.wait(), 10)
        with dealer(address, "p1") as sock:
            sock.send(frame_events("p1", 0, [start_event("p1", 0), result_event("p1", 1)]))
            await wait_until(lambda: collector.snapshot().sinks["json"].events == 2, 20, "the writes")
            sock.send(frame_events("p1", 0, [result_event("p1", 1), result_event("p1", 5)]))
            await wait_until(lambda: collector.snapshot().gaps == 1, 20, "the gap")
        snap = collector.snapshot()
        samples = await asyncio.to_thread(_scrape, exporter.port)
    assert samples[("tunebus_duplicate_events_total", ())] == snap.duplicates == 1
    assert samples[("tunebus_sequence_gaps_total", ())] == 1
    json_sink = (("sink", "json"),)
    assert samples[("tunebus_sink_batches_total", json_sink)] == snap.sinks["json"].batches >= 1
    assert samples[("tunebus_sink_bytes_written_total", json_sink)] == snap.sinks["json"].bytes > 0
    assert samples[("tunebus_sink_errors_total", json_sink)] == 0


async def test_the_metrics_server_stops_with_the_collector(tmp_path: Path, address: str) -> None:
    """Once the collector has stopped, its metrics port no longer answers."""
    async with running_collector(tmp_path, address, sinks=("json",), status_bind="",
                                 metrics_port=0) as collector:
        exporter = next(s for s in collector.services if isinstance(s, MetricsExporter))
        await asyncio.wait_for(exporter.ready.wait(), 10)
        assert ("tunebus_uptime_seconds", ()) in await asyncio.to_thread(_scrape, exporter.port)
    with pytest.raises(OSError, match="Connection refused"):
        await asyncio.to_thread(_scrape, exporter.port)


async def test_a_taken_metrics_port_stops_the_collector(tmp_path: Path, address: str) -> None:
    """A metrics port another process holds stops the collector with the port named."""
    import socket

    from pipeline.collector.assembly import CollectorConfig, build_collector

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        collector = build_collector(CollectorConfig(out=tmp_path, bind=address, sinks=("json",),
                                                    status_bind="", metrics_port=port))
        with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            await asyncio.wait_for(collector.run(asyncio.Event()), 30)


async def test_producers_are_named_and_an_ended_runs_series_go(tmp_path: Path, address: str) -> None:
    """A producer's info series names its experiment, host and pid; an hour after its end its series go."""
    import time

    from pipeline.collector.runs import SHOWN_AFTER_END_S
    from pipeline.wire.codec import encode_event

    setup = encode_event("setup", "drv.1", 0, time.time(), "", "", "", {"host": "gpu7", "pid": 4242})
    end = encode_event("experiment_end", "drv.1", 3, time.time(), "exp", "", "", {"trials": {"t1": "ok"}})
    async with running_collector(tmp_path, address, sinks=("json",), metrics_port=0) as collector:
        exporter = next(s for s in collector.services if isinstance(s, MetricsExporter))
        await asyncio.wait_for(exporter.ready.wait(), 10)
        with dealer(address, "drv.1") as sock:
            events = [setup, start_event("drv.1", 1), result_event("drv.1", 2), end]
            sock.send(frame_events("drv.1", 0, events))
            await wait_until(lambda: collector.snapshot().sinks["json"].events == 4, 20, "the writes")
        ended = await asyncio.to_thread(_scrape, exporter.port)
        collector.runs.clock = lambda: time.monotonic() + SHOWN_AFTER_END_S + 1  # an hour later
        later = await asyncio.to_thread(_scrape, exporter.port)
    info = ("tunebus_producer_info", (("experiments", "exp"), ("host", "gpu7"), ("pid", "4242"),
                                      ("producer", "drv.1"), ("run", "ended")))
    assert ended[info] == 1 and ended[("tunebus_events_received_total", (("producer", "drv.1"),))] == 4
    assert not [key for key in later if ("producer", "drv.1") in key[1]]
    assert later[("tunebus_refused_clients_total", ())] == 0
