"""tunebus: Tune's logging moved off the driver, onto a ZeroMQ bus, into a collector."""

from __future__ import annotations

from typing import Any

__all__ = ["BusCallback", "CollectorConfig", "build_collector", "find_collector_on_ray",
           "start_collector_on_ray", "stop_collector_on_ray"]


def __getattr__(name: str) -> Any:
    # BusCallback imports Ray; the collector does not need it, so load it on first use.
    if name == "BusCallback":
        from pipeline.callback import BusCallback

        return BusCallback
    if name in ("CollectorConfig", "build_collector"):
        from pipeline import config

        return getattr(config, name)
    if name in ("find_collector_on_ray", "start_collector_on_ray", "stop_collector_on_ray"):
        from pipeline import ray_actor

        return getattr(ray_actor, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
