"""The aim library's own floor: microseconds per value through ``Run.track``, one by one or as a dict."""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from typing import Any

from bench.workload import make_result

__all__ = ["aim_floor", "tracked_values"]

# What Tune's AimLoggerCallback leaves out of each result before tracking.
NOT_TRACKED = frozenset({"config", "pid", "timestamp", "time_total_s", "training_iteration", "epoch",
                         "context"})


def tracked_values(result: dict[str, Any], prefix: str = "") -> int:
    """How many numbers one result makes Aim track (nested dicts flattened, as Tune does)."""
    count = 0
    for key, value in result.items():
        if not prefix and key in NOT_TRACKED:
            continue
        if isinstance(value, dict):
            count += tracked_values(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            count += 1
    return count


def aim_floor(steps: int) -> dict[str, Any]:
    """Time ``steps`` results' worth of values into a fresh repo, per value and per result."""
    from aim.sdk.run import Run

    values = {f"ray/tune/m{i}": 0.1 * i for i in range(tracked_values(make_result(0)))}
    repo = tempfile.mkdtemp(prefix="tunebus-aim-floor-")
    try:
        run = Run(repo=repo, experiment="floor")
        for step in range(10):
            run.track(0.5, name="warmup", step=step)
        began = time.perf_counter()
        for step in range(steps):
            for name, value in values.items():
                run.track(value, name=name, step=step)
        one_by_one = (time.perf_counter() - began) / (steps * len(values))
        began = time.perf_counter()
        for step in range(steps, 2 * steps):
            run.track(values, step=step)
        as_dict = (time.perf_counter() - began) / (steps * len(values))
        run.close()
        del run
        gc.collect()
    finally:
        shutil.rmtree(repo, ignore_errors=True)
    best = min(one_by_one, as_dict)
    return {"values_per_result": len(values), "track_us_per_value": round(one_by_one * 1e6, 1),
            "dict_track_us_per_value": round(as_dict * 1e6, 1),
            "floor_results_per_s": round(1 / (best * len(values)))}
