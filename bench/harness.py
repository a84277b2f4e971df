"""Shared benchmark plumbing: flags, machine facts, percentiles, and one JSON result per run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["REPO", "RESULTS_DIR", "BenchArgs", "child_env", "emit", "machine", "parse_args", "percentiles"]

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"


class BenchArgs(argparse.Namespace):
    """The flags every benchmark takes."""

    quick: bool
    plots: bool


def parse_args(name: str, argv: Sequence[str] | None = None,
               extra: Callable[[argparse.ArgumentParser], None] | None = None,
               namespace: BenchArgs | None = None) -> BenchArgs:
    """``--quick`` (seconds, proves the script works), ``--plots`` (save PNGs too), and ``extra``'s flags."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: prove the script works")
    parser.add_argument("--plots", action="store_true", help="also save PNG plots in bench/results/")
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv, namespace=namespace or BenchArgs())


def child_env() -> dict[str, str]:
    """This process's environment with the repository first on PYTHONPATH (Ray workers import bench.*)."""
    paths = (str(REPO), os.environ.get("PYTHONPATH"))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
        load = [round(x, 2) for x in os.getloadavg()]
    except (ImportError, OSError):
        mem_gib, load = 0.0, []
    return {"cpu": model, "cores": os.cpu_count(), "mem_gib": mem_gib, "load_avg": load,
            "python": platform.python_version(), "platform": platform.platform()}


def percentiles(samples: Sequence[float], scale: float = 1.0, digits: int = 2) -> dict[str, Any]:
    """Median, p90, p99 and max of ``samples`` times ``scale`` (empty: zeros and n=0)."""
    if not samples:
        return {"n": 0, "median": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * scale, digits)

    return {"n": len(ordered), "median": round(statistics.median(ordered) * scale, digits),
            "p90": at(0.90), "p99": at(0.99), "max": round(ordered[-1] * scale, digits)}


def emit(name: str, args: BenchArgs, started: float, result: dict[str, Any]) -> dict[str, Any]:
    """Print ``result`` as one JSON line and save it as ``bench/results/<name>[-quick].json``."""
    record = {"bench": name, "quick": args.quick, "elapsed_s": round(time.monotonic() - started, 1),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **result}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS_DIR / f"{name}{suffix}.json").write_text(json.dumps(record, indent=2) + "\n")
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
    return record
