"""The collector's configuration, checked on construction, and the one factory that builds it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pipeline.bus import DEFAULT_ADDRESS, CurveKeys
from pipeline.collector import Collector, CurveServer
from pipeline.fanout import BatchPolicy, Fanout, SinkWorker
from pipeline.ledger import Ledger
from pipeline.quarantine import Quarantine
from sinks import SINKS, make_sink
from sinks.base import Sink, TrialFiles

__all__ = ["CollectorConfig", "build_collector"]

STATE_DIR = ".tunebus"
DEFAULT_SINKS = ("json", "csv")


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Everything ``tunebus collect`` can be told."""

    out: Path
    bind: str = DEFAULT_ADDRESS
    sinks: tuple[str, ...] = DEFAULT_SINKS
    max_queue_events: int = 200_000
    batch_max_events: int = 5_000
    batch_linger_s: float = 0.05
    max_message_bytes: int = 64 * 1024 * 1024
    quarantine_max_bytes: int = 256 * 1024 * 1024
    curve_secret_key: Path | None = None
    curve_clients: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out).expanduser())
        if (self.curve_secret_key is None) != (self.curve_clients is None):
            raise ValueError("--curve-secret-key and --curve-clients go together")
        if not self.sinks:
            raise ValueError("at least one sink is needed")
        for name in self.sinks:
            if name not in SINKS:
                raise ValueError(f"unknown sink {name!r}; choose from {', '.join(SINKS)}")
        if len(set(self.sinks)) != len(self.sinks):
            raise ValueError(f"a sink is named twice in {','.join(self.sinks)}")
        if not self.bind.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"bind must be a ZeroMQ address like tcp://127.0.0.1:5555, got {self.bind!r}")
        for name in ("max_message_bytes", "quarantine_max_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        self.batch_policy()

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(self.batch_max_events, self.batch_linger_s, self.max_queue_events)

    def replace(self, **changes: object) -> CollectorConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def build_collector(config: CollectorConfig) -> Collector:
    """The whole collector: sinks, their queues and workers, quarantine, socket loop."""
    (config.out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    workers = [
        _worker(make_sink(name, config.out), config) for name in config.sinks
    ]
    quarantine = Quarantine(config.out / STATE_DIR, config.quarantine_max_bytes)
    curve = None
    if config.curve_secret_key and config.curve_clients:
        curve = CurveServer(CurveKeys.load(config.curve_secret_key), config.curve_clients)
    return Collector(config.bind, Fanout(workers), quarantine, config.max_message_bytes,
                     curve=curve)


def _worker(sink: Sink, config: CollectorConfig) -> SinkWorker:
    ledger = None
    if sink.durable:
        ledger = Ledger(config.out / STATE_DIR / f"ledger-{sink.name}.json", config.out,
                        getattr(sink, "appends", ()), getattr(sink, "rewrites_head", False))
        ledger.recover()
    return SinkWorker(sink, TrialFiles(config.out), config.batch_policy(),
                      durable=sink.durable, ledger=ledger)
