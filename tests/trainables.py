"""Trainables the tests run in Ray workers (importable, so workers can load them)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import tune

MAX_ITERATIONS = 20_000


def until_told(config: dict[str, Any]) -> None:
    """Reports deterministic rows until ``config['stop_file']`` exists (and at least ``min_iters``)."""
    i = 0
    while i < MAX_ITERATIONS and not (i >= config["min_iters"] and os.path.exists(config["stop_file"])):
        i += 1
        tune.report({"value": config["k"] * i, "nested": {"half": i / 2}, "label": f"row-{i}",
                     "pad": "x" * config.get("pad_bytes", 0)})
        time.sleep(config.get("sleep_s", 0.005))


def expected_row(k: int, i: int) -> dict[str, Any]:
    """The values ``until_told`` reports at iteration ``i``."""
    return {"value": k * i, "nested": {"half": i / 2}, "label": f"row-{i}", "training_iteration": i}


def checkpointed(config: dict[str, Any]) -> None:
    """``until_told`` with a checkpoint every ``config['every']`` iterations, resumed from it.

    Its rows say which run wrote them (``resumed_from``: the checkpoint's iteration, 0 at first).
    """
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start = int((Path(directory) / "i").read_text())
    for i in range(start + 1, MAX_ITERATIONS):
        if i > config["min_iters"] and os.path.exists(config["stop_file"]):
            return
        saved = None
        if i % config["every"] == 0:
            directory = tempfile.mkdtemp()
            (Path(directory) / "i").write_text(str(i))
            saved = tune.Checkpoint.from_directory(directory)
        tune.report({"value": i, "resumed_from": start}, checkpoint=saved)
        time.sleep(config["sleep_s"])
