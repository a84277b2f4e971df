"""tunebus: Tune's logging moved off the driver, onto a ZeroMQ bus, into a collector."""

from __future__ import annotations

import importlib
from typing import Any

# The sub-packages follow the data and the process boundary: ``producer`` (driver
# side) -> ``wire`` (shared format) -> ``collector`` (collector side) -> ``sinks``;
# ``ops`` and ``entry`` are the tools around them.

__all__ = ["BusCallback", "CollectorConfig", "FullPolicy", "SenderConfig", "TrainBusCallback",
           "build_collector", "find_collector_on_ray", "flush_logs", "log", "start_collector_on_ray",
           "stop_collector_on_ray"]

_HOMES = {
    "BusCallback": "pipeline.producer.callback",
    "SenderConfig": "pipeline.producer.sender",
    "FullPolicy": "pipeline.producer.sender",
    "CollectorConfig": "pipeline.collector.config",
    "build_collector": "pipeline.collector.assembly",
    "find_collector_on_ray": "pipeline.entry.ray_shards",
    "start_collector_on_ray": "pipeline.entry.ray_shards",
    "stop_collector_on_ray": "pipeline.entry.ray_shards",
    "TrainBusCallback": "pipeline.producer.train_callback",
    "log": "pipeline.producer.worker_log",
    "flush_logs": "pipeline.producer.worker_log",
}
_ATTRS = {"flush_logs": "flush"}


def __getattr__(name: str) -> Any:
    """Load the public names on first use, so importing ``pipeline`` costs nothing and pulls in no Ray.

    Each is cached here after its first use: ``pipeline.log`` (metrics from inside a
    trainable or a Train worker) is then a plain attribute.
    """
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), _ATTRS.get(name, name))
    globals()[name] = value  # the next lookup is a plain attribute: pipeline.log in a hot loop
    return value
