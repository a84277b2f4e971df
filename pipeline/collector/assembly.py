"""The collector's configuration, checked on construction, and the one factory that builds it."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from pipeline.collector.backlog import SinkBacklog
from pipeline.collector.fanout import Fanout
from pipeline.collector.ledger import Ledger
from pipeline.collector.out_lock import OutLock
from pipeline.collector.quarantine import Quarantine
from pipeline.collector.receiver import Collector, CurveServer, Service
from pipeline.collector.sink_worker import BatchPolicy, SinkWorker
from pipeline.collector.status import StatusServer
from pipeline.collector.throughput import ThroughputLog
from pipeline.wire.sockets import DEFAULT_ADDRESS, DEFAULT_STATUS_ADDRESS, CurveKeys
from sinks import SINKS, make_sink
from sinks.base import Sink, TrialFiles

__all__ = ["CollectorConfig", "build_collector"]

STATE_DIR = ".tunebus"
DEFAULT_SINKS = ("json", "csv", "tensorboard")
AIM_RUNS_FILE = "aim-runs.json"


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Everything ``tunebus collect`` can be told."""

    out: Path
    bind: str = DEFAULT_ADDRESS
    sinks: tuple[str, ...] = DEFAULT_SINKS
    max_queue_events: int = 200_000
    backlog_max_bytes: int = 1024 * 1024 * 1024
    """Disk for each non-durable sink's backlog past its queue (then it pushes back); 0: none."""
    batch_max_events: int = 5_000
    batch_linger_s: float = 0.05
    max_message_bytes: int = 64 * 1024 * 1024
    quarantine_max_bytes: int = 256 * 1024 * 1024
    curve_secret_key: Path | None = None
    curve_clients: Path | None = None
    aim_repo: Path | None = None
    """One Aim repo for every experiment; None: ``<out>/<experiment>``, as Tune's callback."""
    aim_metrics: tuple[str, ...] = ()
    """Track only these flattened result keys in Aim; empty: every finite scalar."""
    aim_durable: bool = False
    """Acknowledge events only once Aim has them too (Aim then paces the producers)."""
    aim_experiment_name: str | None = None
    """Every Aim run's ``experiment`` (AimLoggerCallback's ``experiment_name``); None: Tune's name."""
    status_bind: str = DEFAULT_STATUS_ADDRESS
    """The control socket ``tunebus status`` asks; empty: none."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (0: any free one); None: no metrics."""
    metrics_host: str = "127.0.0.1"
    log_interval_s: float = 30.0
    """Log a line of throughput and lag this often; 0: never."""
    ended_producer_ttl_s: float = 7 * 24 * 3600.0
    """Forget a producer this long after its run ended (a replay of its spool after that may
    write again what was written); 0: remember every producer."""

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
        for name in ("max_message_bytes", "quarantine_max_bytes", "backlog_max_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        self.batch_policy()
        self._check_aim()
        self._check_observers()

    def _check_aim(self) -> None:
        if self.aim_repo is not None:
            object.__setattr__(self, "aim_repo", Path(self.aim_repo).expanduser())
        object.__setattr__(self, "aim_metrics", tuple(self.aim_metrics))
        asked = {"aim_repo": self.aim_repo is not None, "aim_metrics": bool(self.aim_metrics),
                 "aim_durable": self.aim_durable, "aim_experiment_name": self.aim_experiment_name is not None}
        if "aim" not in self.sinks:
            for name, given in asked.items():
                if given:
                    raise ValueError(f"{name}={getattr(self, name)!r} needs aim in sinks, "
                                     f"got {','.join(self.sinks)}")
            return
        if importlib.util.find_spec("aim") is None:
            raise ValueError("the aim sink needs the aim package: pip install 'tunebus[aim]'")
        for metric in self.aim_metrics:
            if not isinstance(metric, str) or not metric.strip():
                raise ValueError(f"aim_metrics names must be non-empty, got {metric!r}")
        experiment = self.aim_experiment_name
        if experiment is not None and not (isinstance(experiment, str) and experiment.strip()):
            raise ValueError(f"aim_experiment_name must be a non-empty name, got {experiment!r}")
        if self.aim_repo is not None and self.aim_repo.exists() and not self.aim_repo.is_dir():
            raise ValueError(f"aim_repo must be a directory, got the file {str(self.aim_repo)!r}")

    def _check_observers(self) -> None:
        if self.status_bind and not self.status_bind.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"status_bind must be a ZeroMQ address like {DEFAULT_STATUS_ADDRESS} "
                             f"(or empty for none), got {self.status_bind!r}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be 0..65535, got {self.metrics_port!r}")
        if self.metrics_port is not None and importlib.util.find_spec("prometheus_client") is None:
            raise ValueError("metrics need prometheus-client: pip install 'tunebus[metrics]'")
        for name in ("log_interval_s", "ended_producer_ttl_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def services(self) -> list[Service]:
        """What runs beside the collector: status socket, Prometheus metrics, throughput log."""
        services: list[Service] = []
        if self.status_bind:
            services.append(StatusServer(self.status_bind))
        if self.metrics_port is not None:
            from pipeline.collector.metrics import MetricsExporter  # prometheus-client is optional

            services.append(MetricsExporter(self.metrics_port, self.metrics_host))
        if self.log_interval_s > 0:
            services.append(ThroughputLog(self.log_interval_s))
        return services

    def sink_options(self, name: str) -> dict[str, object]:
        """The keyword arguments ``make_sink`` passes to the sink called ``name``."""
        if name != "aim":
            return {}
        return {"repo": self.aim_repo, "metrics": self.aim_metrics, "durable": self.aim_durable,
                "runs_file": self.out / STATE_DIR / AIM_RUNS_FILE,
                "experiment_name": self.aim_experiment_name}

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(self.batch_max_events, self.batch_linger_s, self.max_queue_events)

    def replace(self, **changes: object) -> CollectorConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def build_collector(config: CollectorConfig) -> Collector:
    """The whole collector: sinks, their queues and workers, quarantine, socket loop.

    First of all it takes ``--out``'s lock (``OutLocked`` if another collector holds
    it), so nothing of another collector's ledgers or backlogs is touched.
    """
    lock = OutLock(config.out / STATE_DIR, config.bind)
    try:
        curve = None
        if config.curve_secret_key and config.curve_clients:
            curve = CurveServer(CurveKeys.load(config.curve_secret_key), config.curve_clients)
        workers = [
            _worker(make_sink(name, config.out, **config.sink_options(name)), config) for name in config.sinks
        ]
        quarantine = Quarantine(config.out / STATE_DIR, config.quarantine_max_bytes)
    except BaseException:
        lock.release(discard=True)
        raise
    return Collector(config.bind, Fanout(workers), quarantine, config.max_message_bytes,
                     services=config.services(), curve=curve, out=config.out, lock=lock)


def _worker(sink: Sink, config: CollectorConfig) -> SinkWorker:
    ledger = backlog = None
    state = config.out / STATE_DIR
    if not sink.durable and config.backlog_max_bytes:
        backlog = SinkBacklog(state / f"backlog-{sink.name}.spool", config.backlog_max_bytes)
    if sink.durable:
        ledger = Ledger(state / f"ledger-{sink.name}.json", config.out,
                        getattr(sink, "appends", ()), getattr(sink, "rewrites_head", False),
                        ended_ttl_s=config.ended_producer_ttl_s)
        ledger.recover()
        if hasattr(sink, "settle"):  # a sink that cuts a file (a restored trial's rows moved aside)
            sink.settle = ledger.settle  # commits the size first
    return SinkWorker(sink, TrialFiles(config.out), config.batch_policy(),
                      durable=sink.durable, ledger=ledger, backlog=backlog)
