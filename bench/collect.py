"""``tunebus collect`` with the benchmark-only sinks (``slow``) registered, for collector child processes."""

from __future__ import annotations

import sys

from pipeline.cli import main
from sinks import SINKS

__all__ = ["BENCH_SINKS", "main"]

BENCH_SINKS = {"slow": "bench.slowsink:SlowSink"}

if __name__ == "__main__":
    SINKS.update(BENCH_SINKS)
    sys.exit(main(sys.argv[1:]))
