"""The sinks a collector can fan out to, by name; each imported only when asked for."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from sinks.base import Sink, TrialRef

__all__ = ["SINKS", "Sink", "TrialRef", "make_sink"]

SINKS = {
    "json": "sinks.json:JsonSink",
    "csv": "sinks.csv:CsvSink",
    "tensorboard": "sinks.tensorboard:TensorBoardSink",
    "aim": "sinks.aim:AimSink",
}


def make_sink(name: str, out: Path, **options: Any) -> Sink:
    """Build the sink called ``name`` writing under ``out``."""
    if name not in SINKS:
        raise ValueError(f"unknown sink {name!r}; choose from {', '.join(SINKS)}")
    module, cls = SINKS[name].split(":")
    sink: Sink = getattr(importlib.import_module(module), cls)(out, **options)
    return sink
