"""A real driver killed with kill -9 and resumed by Tuner.restore, the collector restarted between."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.testing import start_collector, wait_for
from tests.conftest import REPO
from tests.readers import read_tensorboard
from tests.restore_driver import EVERY


def _iterations(path: Path) -> list[int]:
    return [json.loads(line)["training_iteration"] for line in path.read_text().splitlines()]


def _driver(mode: str, address: str, out: Path, stop_file: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"}
    env.update(PYTHONPATH=REPO, TUNE_GLOBAL_CHECKPOINT_S="1")
    return subprocess.Popen([sys.executable, "-m", "tests.restore_driver", mode, address, str(out),
                             str(stop_file)], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)


def _checkpointed_and_past_it(out: Path) -> bool:
    """The experiment state saved after the latest checkpoint, and two rows past it (so the
    restored trial goes back); between two saves (a second apart), so no state file is half written."""
    checkpoints = sorted(out.glob("restored/*/checkpoint_*"))
    states = list(out.glob("restored/experiment_state-*.json"))
    rows = list(out.glob("restored/*/result.json"))
    if not (checkpoints and states and rows):
        return False
    at = (int(checkpoints[-1].name.rsplit("_", 1)[1]) + 1) * EVERY
    saved = states[0].stat().st_mtime
    quiet = 0.2 < time.time() - saved < 0.6
    return quiet and saved > checkpoints[-1].stat().st_mtime + 0.2 and _iterations(rows[0])[-1] >= at + 2


@pytest.mark.ray  # two drivers, each with its own local Ray
def test_a_killed_and_restored_driver_leaves_one_lineage_and_no_tune_files(
        address: str, tmp_path: Path) -> None:
    """kill -9 the driver past a checkpoint, restart the collector, Tuner.restore: every file holds
    iterations 1..12 once, the re-reported ones moved aside, and Tune's own loggers wrote nothing."""
    out, stop_file = tmp_path / "out", tmp_path / "stop"
    collector = start_collector(address, out)
    driver = _driver("fit", address, out, stop_file)
    try:
        wait_for(lambda: _checkpointed_and_past_it(out), 180, "a checkpoint and rows past it")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=60) == 0
    (trial_dir,) = [p.parent for p in out.glob("restored/*/result.json")]
    killed_at = _iterations(trial_dir / "result.json")[-1]
    stop_file.touch()
    collector = start_collector(address, out)
    try:
        restored = _driver("restore", address, out, stop_file)
        stdout, _ = restored.communicate(timeout=240)
        assert restored.returncode == 0
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=60) == 0
    assert _iterations(trial_dir / "result.json") == list(range(1, 13))
    moved = _iterations(trial_dir / "result.orphaned.json")
    assert moved and moved == list(range(moved[0], killed_at + 1)) and moved[0] % EVERY == 1
    with (trial_dir / "progress.csv").open(newline="") as f:
        assert [int(r["training_iteration"]) for r in csv.DictReader(f)] == list(range(1, 13))
    assert json.loads(stdout.strip().splitlines()[-1]) == list(range(1, 13))  # metrics_dataframe
    events = [p.name for p in trial_dir.glob("events.out.tfevents.*")]
    assert len(events) == 2 and all(".tunebus" in name for name in events)  # none of Tune's TBX files
    assert [s for s, _ in read_tensorboard(trial_dir)["scalars"]["ray/tune/value"]] == list(range(1, 13))
