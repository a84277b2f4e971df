"""``tunebus collect`` with the benchmark-only sinks (``slow``) registered, for collector child processes."""

from __future__ import annotations

import gc
import os
import sys

from pipeline.entry.cli import main
from sinks import register_sink

__all__ = ["BENCH_SINKS", "GC_THRESHOLD_ENV", "main"]

BENCH_SINKS = {"slow": "bench.slowsink:SlowSink"}
GC_THRESHOLD_ENV = "TUNEBUS_BENCH_GC_THRESHOLD"
"""``TUNEBUS_BENCH_GC_THRESHOLD=N`` sets the collector's first GC generation threshold to N (an
experiment for the report: collection passes over every queued event are a large share of its CPU)."""

if __name__ == "__main__":
    for name, target in BENCH_SINKS.items():
        register_sink(name, target)
    if os.environ.get(GC_THRESHOLD_ENV):
        gc.set_threshold(int(os.environ[GC_THRESHOLD_ENV]), 50, 100)
    sys.exit(main(sys.argv[1:]))
