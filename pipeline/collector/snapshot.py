"""What a collector reports about itself: typed snapshots, and their JSON on the status socket."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["CollectorSnapshot", "ProducerSnapshot", "Rates", "ShardSnapshot", "SinkSnapshot"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SinkSnapshot:
    """One sink's counters: written, queued, failing, lagging."""

    events: int = 0
    batches: int = 0
    errors: int = 0
    poisoned: int = 0
    queued: int = 0
    lag: int = 0
    """Events the collector received that this sink has not written yet."""
    busy_s: float = 0.0
    durable: bool = True
    last_error: str = ""
    bytes: int | None = None
    """Bytes the sink wrote, where it counts them; None where it does not."""
    backlog: int = 0
    backlog_unreadable: int = 0
    filters: tuple[str, ...] = ()
    """The sink's filter chain, each filter as its spec reads."""


@dataclass(frozen=True, slots=True)
class ProducerSnapshot:
    """One producer's stream as the collector sees it, and the run it belongs to."""

    events: int = 0
    last_seq: int = -1
    acked: int = -1
    dropped: int = 0
    lag: int = 0
    """Events received but not yet acknowledged."""
    experiments: tuple[str, ...] = ()
    host: str = ""
    pid: int = 0
    ended: bool = False


@dataclass(frozen=True, slots=True)
class Rates:
    """Recent per-second rates: events received, and events each sink wrote."""

    events: float = 0.0
    sinks: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ShardSnapshot:
    """Where a collector stands among its shards: its index, their count, every shard's status address."""

    index: int = 0
    count: int = 1
    status_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CollectorSnapshot:
    """The whole collector at one moment: totals, each sink, each producer.

    ``SinkWorker.snapshot()`` builds a ``SinkSnapshot``, ``Collector.snapshot()`` a
    ``CollectorSnapshot`` holding those and a ``ProducerSnapshot`` per producer. The
    status server, Prometheus metrics, the throughput log, ``tunebus status`` and the
    demo's progress line read these objects; ``to_json``/``from_json`` are the one
    place their JSON (the status socket's answer, ``tunebus status --json``) is
    written and read. A newer collector's extra keys are ignored, missing ones default.
    """

    frames: int = 0
    events: int = 0
    duplicates: int = 0
    gaps: int = 0
    quarantined: int = 0
    refused: int = 0
    faults: Mapping[str, int] = field(default_factory=dict)
    queue_depth: int = 0
    sinks: Mapping[str, SinkSnapshot] = field(default_factory=dict)
    uptime_s: float = 0.0
    dropped: int = 0
    producers: Mapping[str, ProducerSnapshot] = field(default_factory=dict)
    rates: Rates = field(default_factory=Rates)
    """Filled in by the status server, which samples the counters; zero elsewhere."""
    bus: str = ""
    """The address the collector receives on."""
    misrouted: int = 0
    """Producers whose stream waits at a trial another shard owns (not written here)."""
    shard: ShardSnapshot = field(default_factory=ShardSnapshot)

    def to_json(self, indent: int | None = None) -> str:
        """The status socket's answer: every field under its own name, sinks and producers by name."""
        return json.dumps(dataclasses.asdict(self), indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> CollectorSnapshot:
        """Read ``to_json``'s output back (unknown keys ignored, missing ones at their defaults)."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"a collector snapshot is a JSON object, got {type(raw).__name__}")
        fields = _known(cls, raw)
        fields["faults"] = {str(k): int(v) for k, v in fields.get("faults", {}).items()}
        fields["sinks"] = {n: _sink(v) for n, v in fields.get("sinks", {}).items()}
        fields["producers"] = {p: _producer(v) for p, v in fields.get("producers", {}).items()}
        rates = fields.get("rates", {})
        fields["rates"] = Rates(float(rates.get("events", 0.0)),
                                {n: float(r) for n, r in rates.get("sinks", {}).items()})
        shard = _known(ShardSnapshot, fields.get("shard", {}))
        fields["shard"] = ShardSnapshot(int(shard.get("index", 0)), int(shard.get("count", 1)),
                                        tuple(str(a) for a in shard.get("status_addresses", ())))
        return cls(**fields)


def _known(cls: type[T], raw: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return {k: v for k, v in raw.items() if k in names}


def _sink(raw: Mapping[str, Any]) -> SinkSnapshot:
    fields = _known(SinkSnapshot, raw)
    fields["filters"] = tuple(fields.get("filters", ()))
    return SinkSnapshot(**fields)


def _producer(raw: Mapping[str, Any]) -> ProducerSnapshot:
    fields = _known(ProducerSnapshot, raw)
    fields["experiments"] = tuple(fields.get("experiments", ()))
    return ProducerSnapshot(**fields)
