"""``python -m tests.aim_dump REPO``: every run of an Aim repo as one JSON line (params, metrics, steps)."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

__all__ = ["dump"]


def _number(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def dump(repo_path: str) -> list[dict[str, Any]]:
    """Runs ordered by trial id; each metric keyed by name and context, with steps, values, epochs."""
    from aim import Repo

    runs = []
    for run in Repo.from_path(repo_path).iter_runs():
        metrics = {}
        for metric in run.metrics():
            key = f"{metric.name}|{json.dumps(metric.context.to_dict(), sort_keys=True)}"
            metrics[key] = {"steps": metric.data.indices_list(),
                            "values": [_number(v) for v in metric.values.values_list()],
                            "epochs": [_number(e) for e in metric.epochs.values_list()]}
        params = run[...]
        runs.append({"hash": run.hash, "experiment": run.experiment, "params": params,
                     "metrics": metrics})
    return sorted(runs, key=lambda r: str(r["params"].get("trial_id")))


if __name__ == "__main__":
    print(json.dumps(dump(sys.argv[1]), default=str))
