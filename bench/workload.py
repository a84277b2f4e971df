"""What every benchmark reports: one Tune-like result of ten scalars and one nested dict."""

from __future__ import annotations

import math
import os
import socket
import time
from typing import Any

__all__ = ["EXPERIMENT", "make_result", "tune_result"]

EXPERIMENT = "bench"


def make_result(i: int) -> dict[str, Any]:
    """The ``i``-th result of a trial: ten scalars (Tune's step fields included) and ``nested``."""
    loss = 1.0 / (1.0 + 0.01 * i)
    return {
        "loss": loss,
        "accuracy": 1.0 - loss / 2,
        "lr": 0.001 * (1 + i % 7),
        "grad_norm": math.sqrt(1.0 + i),
        "epoch": i // 100,
        "training_iteration": i + 1,
        "timesteps_total": (i + 1) * 32,
        "time_this_iter_s": 0.0012,
        "time_total_s": 0.0012 * (i + 1),
        "timestamp": int(time.time()),
        "nested": {"val_loss": loss * 1.1, "val_acc": 1.0 - loss / 3, "weights": {"norm": 0.5 + i}},
    }


def tune_result(i: int, trial_id: str, config: dict[str, Any], tag: str) -> dict[str, Any]:
    """``make_result(i)`` with the fields Tune adds before on_trial_result sees it (config included)."""
    result = make_result(i)
    result.update({
        "done": False, "trial_id": trial_id, "date": time.strftime("%Y-%m-%d_%H-%M-%S"),
        "pid": os.getpid(), "hostname": socket.gethostname(), "node_ip": "127.0.0.1",
        "config": config, "time_since_restore": result["time_total_s"],
        "iterations_since_restore": i + 1, "checkpoint_dir_name": None, "experiment_tag": tag,
    })
    return result
