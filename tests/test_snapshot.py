"""Typed snapshots: the status socket's JSON keeps its field names, and reads back to the same objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.collector.snapshot import (
    CollectorSnapshot,
    ProducerSnapshot,
    Rates,
    ShardSnapshot,
    SinkSnapshot,
)
from pipeline.collector.status import StatusServer
from pipeline.testing import dealer, result_event, running_collector, start_event, wait_until
from pipeline.wire.codec import frame_events

TOP_KEYS = ["frames", "events", "duplicates", "gaps", "quarantined", "refused", "faults", "queue_depth",
            "sinks", "uptime_s", "dropped", "producers", "rates", "bus", "misrouted", "shard"]
SINK_KEYS = ["events", "batches", "errors", "poisoned", "queued", "lag", "busy_s", "durable", "last_error",
             "bytes", "backlog", "backlog_unreadable", "filters"]
PRODUCER_KEYS = ["events", "last_seq", "acked", "dropped", "lag", "experiments", "host", "pid", "ended"]

SNAPSHOT = CollectorSnapshot(
    frames=3, events=5, duplicates=1, gaps=2, quarantined=1, refused=4, faults={"bad-msgpack": 1},
    queue_depth=6, sinks={"json": SinkSnapshot(events=5, batches=2, bytes=120, filters=("keep loss",)),
                          "aim": SinkSnapshot(events=1, lag=4, durable=False, last_error="OSError: x")},
    uptime_s=1.5, dropped=7, producers={"p": ProducerSnapshot(5, 9, 8, 7, 1, ("exp",), "h", 42, True)},
    rates=Rates(2.0, {"json": 2.0, "aim": 0.5}), bus="tcp://127.0.0.1:1",
    shard=ShardSnapshot(1, 2, ("tcp://127.0.0.1:2", "tcp://127.0.0.1:3")))


def test_to_json_writes_every_field_under_the_names_status_clients_read() -> None:
    """Top-level, per-sink, per-producer and rate keys: the ones ``tunebus status --json`` always had."""
    raw = json.loads(SNAPSHOT.to_json())
    assert list(raw) == TOP_KEYS
    assert list(raw["sinks"]["aim"]) == SINK_KEYS and list(raw["producers"]["p"]) == PRODUCER_KEYS
    assert raw["rates"] == {"events": 2.0, "sinks": {"json": 2.0, "aim": 0.5}}
    assert raw["producers"]["p"]["experiments"] == ["exp"] and raw["sinks"]["json"]["bytes"] == 120
    assert raw["shard"] == {"index": 1, "count": 2, "status_addresses": ["tcp://127.0.0.1:2", "tcp://127.0.0.1:3"]}


def test_from_json_reads_back_the_same_snapshot() -> None:
    """to_json then from_json gives an equal object, nested snapshots and tuples included."""
    assert CollectorSnapshot.from_json(SNAPSHOT.to_json(indent=2)) == SNAPSHOT


def test_from_json_ignores_keys_it_does_not_know_and_defaults_missing_ones() -> None:
    """A newer collector's extra keys are skipped; an older one's missing keys take their defaults."""
    text = json.dumps({"events": 3, "new_total": 1, "sinks": {"json": {"events": 3, "new": True}},
                       "producers": {"p": {"events": 3, "experiments": ["a", "b"]}}})
    back = CollectorSnapshot.from_json(text)
    assert back == CollectorSnapshot(events=3, sinks={"json": SinkSnapshot(events=3)},
                                     producers={"p": ProducerSnapshot(events=3, experiments=("a", "b"))})


def test_from_json_refuses_what_is_not_an_object() -> None:
    """A JSON array (not a collector's answer) is a ValueError saying what came instead."""
    with pytest.raises(ValueError, match="a collector snapshot is a JSON object, got list"):
        CollectorSnapshot.from_json(b"[1, 2]")


async def test_the_status_answer_is_the_snapshot_with_rates_and_bus(tmp_path: Path, address: str) -> None:
    """The status server answers a running collector's own snapshot, in to_json's names, with its address."""
    async with running_collector(tmp_path, address, sinks=("json",), status_bind="tcp://127.0.0.1:0") as c:
        server = next(s for s in c.services if isinstance(s, StatusServer))
        with dealer(address, "p1") as sock:
            sock.send(frame_events("p1", 0, [start_event("p1", 0), result_event("p1", 1)]))
            await wait_until(lambda: c.snapshot().sinks["json"].events == 2, 20, "the writes")
        raw = json.loads(server.answer(c))
    assert list(raw) == TOP_KEYS and raw["bus"] == address and raw["events"] == 2
    assert list(raw["sinks"]) == ["json"] and raw["sinks"]["json"]["events"] == 2
    assert raw["producers"]["p1"]["last_seq"] == 1 and set(raw["rates"]) == {"events", "sinks"}
