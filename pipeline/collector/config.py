"""Every collector setting, declared once, and the configuration that checks itself against them."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.collector.filter_spec import FILTERS_SETTING
from pipeline.collector.settings import (
    Choice,
    Integer,
    Names,
    Number,
    PathKind,
    Setting,
    Text,
    declared,
    setting,
)
from pipeline.collector.sink_process import PROCESS_SETTINGS
from pipeline.wire.sockets import DEFAULT_ADDRESS, DEFAULT_STATUS_ADDRESS
from sinks import sink_class, sink_names

__all__ = ["EVERY_SINK", "CollectorConfig", "collector_settings", "settings_argv", "sink_settings"]

ZMQ = ("tcp://", "ipc://", "inproc://")
BYTES = Integer(minimum=0, metavar="BYTES")
SECONDS = Number(minimum=0)
EVENTS = Integer(minimum=1, metavar="EVENTS")

EVERY_SINK: tuple[Setting, ...] = (FILTERS_SETTING, *PROCESS_SETTINGS)
"""Options every sink has, for the collector's side of it (its worker), not for the sink's
constructor: each is ``--<sink>-<name>`` and ``<name>`` in ``[sinks.<sink>]``. A new one (a
sink's filters) is one entry here; ``CollectorConfig.worker_options`` hands its values on."""


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Everything ``tunebus collect`` can be told; checked on construction.

    ``sink_options`` holds each chosen sink's options by sink and option name
    (``{"aim": {"repo": ...}}``); once built, every chosen sink has all of its own,
    defaults filled in. ``from_flat`` takes the flat spelling (``aim_repo=...``).
    """

    out: Path = setting(Path("~/ray_results"), PathKind(directory=True, metavar="DIR"),
                        "root for experiment folders; use Tune's storage_path")
    bind: str = setting(DEFAULT_ADDRESS, Text(ZMQ, "tcp://127.0.0.1:5555", metavar="ADDRESS"),
                        "ZeroMQ address to bind")
    sinks: tuple[str, ...] = setting(("json", "csv", "tensorboard"),
                                     Names(sink_names, at_least_one=True, what="sink"),
                                     "comma-separated sinks to write")
    max_queue_events: int = setting(200_000, EVENTS, "events a sink may queue in memory: a durable sink "
                                    "then stops the collector reading, a lagging one spills to its backlog")
    backlog_max_bytes: int = setting(1024 * 1024 * 1024, BYTES,
                                     "disk per non-durable sink (aim unless --aim-durable) for events past "
                                     "its queue, in <out>/.tunebus; full, it pushes back; 0 for none")
    batch_max_events: int = setting(5_000, EVENTS, "most events one sink write takes")
    batch_linger_s: float = setting(0.05, SECONDS,
                                    "seconds a sink waits for a full batch once it has an event")
    max_message_bytes: int = setting(64 * 1024 * 1024, Integer(minimum=1, metavar="BYTES"),
                                     "largest frame accepted; larger ones drop the connection")
    quarantine_max_bytes: int = setting(256 * 1024 * 1024, BYTES,
                                        "bytes of bad frames kept in <out>/.tunebus/quarantine.msgpack")
    curve_secret_key: Path | None = setting(None, PathKind(), "the collector's .key_secret file "
                                            "(tunebus keygen): require CurveZMQ", default_text="no CurveZMQ")
    curve_clients: Path | None = setting(None, PathKind(metavar="DIR"), "directory of client public .key "
                                         "files admitted with --curve-secret-key", default_text="no CurveZMQ")
    status_bind: str = setting(DEFAULT_STATUS_ADDRESS, Text(ZMQ, DEFAULT_STATUS_ADDRESS, empty=True,
                                                            metavar="ADDRESS"),
                               "control socket for tunebus status; '' for none")
    metrics_port: int | None = setting(None, Integer(0, 65535, metavar="PORT"),
                                       "serve Prometheus metrics on this port, 0 for any",
                                       default_text="no metrics")
    metrics_host: str = setting("127.0.0.1", Text(empty=True, metavar="HOST"), "interface for --metrics-port")
    max_open_files: int | None = setting(None, Integer(minimum=1, metavar="FILES"),
                                         "files the sinks keep open at once, shared among them; past it "
                                         "the least recently used is closed and later reopened to append",
                                         default_text="half the open-file limit (raised to its hard limit), "
                                                      "at most 4096")
    log_interval_s: float = setting(30.0, SECONDS, "log a line of throughput and lag this often, 0 for never")
    ended_producer_ttl_s: float = setting(7 * 24 * 3600.0, SECONDS,
                                          "forget a driver this long after its run ended, so the ledger "
                                          "stays small; a replay of its spool after that may write twice; "
                                          "0 for never")
    shard_index: int = setting(0, Integer(minimum=0, metavar="K"),
                               "this collector's place among --shard-addresses (0 for the first)")
    shard_addresses: tuple[str, ...] = setting((), Names(what="address", metavar="ADDRESSES"),
                                               "every shard's bus address in shard order (a,b,...), "
                                               "as producers reach them; given to producers that ask",
                                               default_text="not sharded")
    shard_status_addresses: tuple[str, ...] = setting((), Names(what="address", metavar="ADDRESSES"),
                                                      "every shard's status address in shard order, for "
                                                      "tunebus status and stop", default_text="none")
    log_level: str = setting("INFO", Choice(("DEBUG", "INFO", "WARNING", "ERROR"), metavar="LEVEL"),
                             "how much the collector logs")
    sink_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for declared_setting in declared(CollectorConfig):
            value = declared_setting.check(getattr(self, declared_setting.name))
            object.__setattr__(self, declared_setting.name, value)
        if (self.curve_secret_key is None) != (self.curve_clients is None):
            raise ValueError("--curve-secret-key and --curve-clients go together")
        self._check_shards()
        if self.metrics_port is not None and importlib.util.find_spec("prometheus_client") is None:
            raise ValueError("metrics need prometheus-client: pip install 'tunebus[metrics]'")
        object.__setattr__(self, "sink_options", self._checked_sink_options())

    def _check_shards(self) -> None:
        count = len(self.shard_addresses)
        for name in ("shard_addresses", "shard_status_addresses"):
            for address in getattr(self, name):
                if not address.startswith(ZMQ):
                    raise ValueError(f"{name}: expected addresses like tcp://127.0.0.1:5555, got {address!r}")
        if self.shard_index and not count:
            raise ValueError(f"shard_index {self.shard_index} needs shard_addresses "
                             "(each shard's bus address)")
        if count and self.shard_index >= count:
            raise ValueError(f"shard_index {self.shard_index} is not below the {count} shard_addresses")
        if self.shard_status_addresses and len(self.shard_status_addresses) != count:
            raise ValueError(f"{len(self.shard_status_addresses)} shard_status_addresses for "
                             f"{count} shard_addresses: give one per shard")

    @property
    def shard_count(self) -> int:
        """How many shards the collectors on this ``--out`` are (1: not sharded)."""
        return max(1, len(self.shard_addresses))

    def _checked_sink_options(self) -> dict[str, dict[str, Any]]:
        for sink, given in self.sink_options.items():
            if sink not in self.sinks:
                flags = ", ".join(f"--{sink}-{name}".replace("_", "-") for name in given)
                raise ValueError(f"{flags or 'options'} for the {sink} sink, which is not in sinks "
                                 f"({','.join(self.sinks)})")
        checked: dict[str, dict[str, Any]] = {}
        for sink in self.sinks:
            given = dict(self.sink_options.get(sink, {}))
            known = {s.name: s for s in sink_settings(sink)}
            for name in given:
                if name not in known:
                    raise ValueError(f"sink {sink!r} has no option {name!r}; "
                                     f"its options: {', '.join(known) or 'none'}")
            checked[sink] = {name: s.check(given.get(name, s.default)) for name, s in known.items()}
            sink_class(sink).check_options(self._constructor_options(checked[sink]))
            if checked[sink].get("process") == "on" and _durable(sink, checked[sink]):
                raise ValueError(f"--{sink}-process: the {sink} sink is durable (acknowledgements wait for "
                                 f"it): only a sink that may lag runs in its own process")
        return checked

    def own_process(self, sink: str) -> bool:
        """Whether the sink called ``sink`` runs in its own process: ``--<sink>-process``, by default
        the sink's choice (``Sink.own_process``), never for a durable sink."""
        options = self.sink_options[sink]
        asked = options.get("process")
        if asked is None:
            return sink_class(sink).own_process and not _durable(sink, options)
        return bool(asked == "on")

    def sink_kwargs(self, sink: str) -> dict[str, Any]:
        """What the sink called ``sink`` is built with: its own declared options."""
        return self._constructor_options(self.sink_options[sink])

    def worker_options(self, sink: str) -> dict[str, Any]:
        """The ``EVERY_SINK`` options of the sink called ``sink``: for its worker, not for it."""
        return {s.name: self.sink_options[sink][s.name] for s in EVERY_SINK}

    @staticmethod
    def _constructor_options(options: Mapping[str, Any]) -> dict[str, Any]:
        shared = {s.name for s in EVERY_SINK}
        return {name: value for name, value in options.items() if name not in shared}

    @classmethod
    def from_flat(cls, **values: Any) -> CollectorConfig:
        """The configuration from flat keys (``max_queue_events=...``, ``aim_repo=...``)."""
        by_key = {s.key: s for s in collector_settings()}
        core: dict[str, Any] = {}
        options: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            found = by_key.get(key)
            if found is None:
                raise ValueError(f"unknown setting {key!r}; known settings: {', '.join(by_key)}")
            if found.sink:
                options.setdefault(found.sink, {})[found.name] = value
            else:
                core[key] = value
        return cls(**core, sink_options=options)

    def describe(self) -> str:
        """Every setting's value, flat (``bind='tcp://...', aim_repo=None``): the effective-config line."""
        pairs = [f"{s.name}={getattr(self, s.name)!r}" for s in declared(CollectorConfig)]
        pairs += [f"{sink}_{name}={value!r}" for sink, options in self.sink_options.items()
                  for name, value in options.items()]
        return ", ".join(pairs)

    @staticmethod
    def default(name: str) -> Any:
        """The declared default of the setting called ``name``."""
        return next(s.default for s in declared(CollectorConfig) if s.name == name)


def _durable(sink: str, options: Mapping[str, Any]) -> bool:
    """Whether the sink called ``sink`` is durable with ``options`` (a sink whose durability is an
    option declares it as ``durable``), without building it."""
    return bool(options.get("durable", sink_class(sink).durable))


def collector_settings(with_sinks: bool = True) -> list[Setting]:
    """The collector's own settings, then each registered sink's options (as ``<sink>_<option>``).

    Each field of ``CollectorConfig`` is a ``Setting`` (kind, bounds, default, help);
    each sink declares its own options (``Sink.options``). This lists both, flat: the
    command line's flags, the TOML reader, ``--help``, the effective-config line and
    the Ray actor's arguments are all derived from it. A sink that cannot be loaded
    has no options here; asking for it names why.
    """
    settings = list(declared(CollectorConfig))
    if with_sinks:
        for sink in sink_names():
            try:
                settings += sink_settings(sink)
            except ValueError:
                continue
    return settings


def sink_settings(sink: str) -> list[Setting]:
    """The options of the sink called ``sink``: its own (``Sink.options``), then ``EVERY_SINK``'s."""
    return [s.for_sink(sink) for s in (*sink_class(sink).options, *EVERY_SINK)]


def settings_argv(**values: Any) -> list[str]:
    """``tunebus collect`` flags for flat settings, each checked: ``--max-queue-events 10 --aim-durable``."""
    by_key = {s.key: s for s in collector_settings()}
    argv: list[str] = []
    for key, value in values.items():
        found = by_key.get(key)
        if found is None:
            raise ValueError(f"unknown setting {key!r}; known settings: {', '.join(by_key)}")
        checked = found.check(value)
        if checked is None or checked is False:
            continue
        argv += [found.flag] if checked is True else [found.flag, found.kind.to_text(checked)]
    return argv
