"""The one factory that builds the collector from its configuration, and wires its parts together."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.collector.backlog import SinkBacklog
from pipeline.collector.config import CollectorConfig
from pipeline.collector.fanout import Fanout
from pipeline.collector.file_budget import open_file_budget, share
from pipeline.collector.filter_spec import parse_filters
from pipeline.collector.frame_log import FrameLog
from pipeline.collector.ledger import Ledger
from pipeline.collector.out_lock import OutLock
from pipeline.collector.quarantine import Quarantine
from pipeline.collector.receiver import Collector, CurveServer, Service, ShardPlace
from pipeline.collector.shard_state import check_shard_count, shard_state_dir
from pipeline.collector.sink_process import SinkProcess, child_spec, take_backlog
from pipeline.collector.sink_worker import BatchPolicy, SinkWorker
from pipeline.collector.status import StatusServer
from pipeline.collector.throughput import ThroughputLog
from pipeline.wire.sockets import CurveKeys
from sinks import make_sink, sink_class
from sinks.base import STATE_DIR, Sink, TrialFiles

__all__ = ["STATE_DIR", "CollectorConfig", "batch_policy", "build_collector", "services"]



def services(config: CollectorConfig) -> list[Service]:
    """What runs beside the collector: status socket, Prometheus metrics, throughput log."""
    found: list[Service] = []
    if config.status_bind:
        found.append(StatusServer(config.status_bind))
    if config.metrics_port is not None:
        from pipeline.collector.metrics import MetricsExporter  # prometheus-client is optional

        found.append(MetricsExporter(config.metrics_port, config.metrics_host))
    if config.log_interval_s > 0:
        found.append(ThroughputLog(config.log_interval_s))
    return found


def batch_policy(config: CollectorConfig) -> BatchPolicy:
    return BatchPolicy(config.batch_max_events, config.batch_linger_s, config.max_queue_events)


def build_collector(config: CollectorConfig) -> Collector:
    """The whole collector: sinks, their queues and workers, quarantine, socket loop, wired together.

    First of all it takes ``--out``'s lock (``OutLocked`` if another collector holds
    it), so nothing of another collector's ledgers or backlogs is touched. A shard of
    several keeps all of its state in ``<out>/.tunebus/shard-<k>`` and takes that lock.
    """
    check_shard_count(config.out, config.shard_count)
    state = shard_state_dir(config.out, config.shard_index, config.shard_count)
    lock = OutLock(state, config.bind)
    try:
        curve = None
        if config.curve_secret_key and config.curve_clients:
            curve = CurveServer(_curve_keys(config.curve_secret_key, config.curve_clients),
                                config.curve_clients)
        quarantine = Quarantine(state, config.quarantine_max_bytes)
        acks_due = asyncio.Event()  # a worker wrote a batch: acknowledgements may move
        budget = open_file_budget(config.max_open_files)
        workers: list[SinkWorker | SinkProcess] = []
        for name in config.sinks:
            if config.own_process(name):  # built in its own process, never here
                workers.append(_process(name, config, state, share(budget, len(config.sinks)).limit))
                continue
            sink = make_sink(name, config.out, **config.sink_kwargs(name), **_state_kwargs(name, state))
            sink.files = share(budget, len(config.sinks))
            workers.append(_worker(sink, config, acks_due, quarantine, state))
    except BaseException:
        lock.release(discard=True)
        raise
    return Collector(config.bind, Fanout(workers), quarantine, config.max_message_bytes, acks_due,
                     services=services(config), curve=curve, out=config.out, lock=lock,
                     shard=ShardPlace(config.shard_index, config.shard_addresses,
                                      config.shard_status_addresses))


def _worker(sink: Sink, config: CollectorConfig, acks_due: asyncio.Event,
            quarantine: Quarantine, state: Path) -> SinkWorker:
    ledger = backlog = None
    if not sink.durable and config.backlog_max_bytes:
        backlog = SinkBacklog(state / f"backlog-{sink.name}.spool", config.backlog_max_bytes)
    if sink.durable:
        ledger = Ledger(state / f"ledger-{sink.name}.json", config.out, sink.appends, sink.rewrites_head,
                        ended_ttl_s=config.ended_producer_ttl_s)
        ledger.recover()
        sink.settle = ledger.settle  # a sink cutting a file (a restored trial's rows moved aside)
    return SinkWorker(sink, TrialFiles(config.out), batch_policy(config), durable=sink.durable,
                      on_progress=acks_due.set, on_poison=quarantine.add_refused, ledger=ledger,
                      backlog=backlog, filters=parse_filters(config.worker_options(sink.name)["filters"]),
                      filter_state_path=None if ledger else state / f"filters-{sink.name}.json")


def _process(name: str, config: CollectorConfig, state: Path, files: int) -> SinkProcess:
    """A non-durable sink in its own niced process, fed from ``<state>/sink-<name>/``."""
    cls = sink_class(name)
    options = config.sink_options[name]
    spec = child_spec(name, f"{cls.__module__}:{cls.__qualname__}", config.out, state, dict(options),
                      _state_kwargs(name, state), (config.batch_max_events, config.batch_linger_s), files,
                      config.quarantine_max_bytes, config.log_level)
    frames = FrameLog(Path(spec.log), max(1, config.backlog_max_bytes))
    take_backlog(frames, state / f"backlog-{name}.spool", config.backlog_max_bytes)
    return SinkProcess(spec, frames, filters=tuple(str(f) for f in parse_filters(options["filters"])))


def _state_kwargs(sink: str, state: Path) -> dict[str, Path]:
    """A sink's own state file moved into a shard's directory (aim's run hashes); none elsewhere."""
    if sink == "aim" and state.name != STATE_DIR:
        from sinks.aim import RUNS_FILE

        return {"runs_file": state / RUNS_FILE}
    return {}


def _curve_keys(secret_key: Path, clients: Path) -> CurveKeys:
    """The collector's keys, with the flag named when a path is wrong (checked here, at start,
    not when the flags are read: a config may be written for another machine)."""
    if not secret_key.is_file():
        raise ValueError(f"--curve-secret-key: no such file: {str(secret_key)!r}")
    if not clients.is_dir():
        raise ValueError(f"--curve-clients: expected a directory of public .key files, got {str(clients)!r}")
    return CurveKeys.load(secret_key)
