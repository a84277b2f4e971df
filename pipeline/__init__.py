"""tunebus: Tune's logging moved off the driver, onto a ZeroMQ bus, into a collector.

The sub-packages follow the data and the process boundary: ``producer`` (driver
side) -> ``wire`` (shared format) -> ``collector`` (collector side) -> ``sinks``;
``ops`` and ``entry`` are the tools around them. The names below load on first
use, so importing ``pipeline`` costs nothing and pulls in no Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BusCallback", "CollectorConfig", "FullPolicy", "SenderConfig", "build_collector",
           "find_collector_on_ray", "start_collector_on_ray", "stop_collector_on_ray"]

_HOMES = {
    "BusCallback": "pipeline.producer.callback",
    "SenderConfig": "pipeline.producer.sender",
    "FullPolicy": "pipeline.producer.sender",
    "CollectorConfig": "pipeline.collector.assembly",
    "build_collector": "pipeline.collector.assembly",
    "find_collector_on_ray": "pipeline.entry.ray_actor",
    "start_collector_on_ray": "pipeline.entry.ray_actor",
    "stop_collector_on_ray": "pipeline.entry.ray_actor",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
