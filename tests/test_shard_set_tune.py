"""A real Tuner sweep through tunebus collect --shards 2 writes the rows a single collector writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from pipeline import BusCallback
from pipeline.testing import free_ports, run_cli, start_collector, wait_for
from pipeline.wire.shards import shard_of

TRIALS = 6
ITERATIONS = 5
VOLATILE = {"timestamp", "date", "time_this_iter_s", "time_total_s", "time_since_restore",
            "pid", "hostname", "node_ip", "trial_id", "experiment_tag", "checkpoint_dir_name"}


def trainable(config: dict[str, Any]) -> None:
    """Deterministic rows from the trial's ``k``."""
    for i in range(ITERATIONS):
        tune.report({"value": config["k"] * i, "nested": {"half": i / 2}})


def _sweep(storage: Path, address: str) -> tune.ResultGrid:
    tuner = tune.Tuner(trainable, param_space={"k": tune.grid_search(list(range(TRIALS)))},
                       run_config=tune.RunConfig(name="exp", storage_path=str(storage), verbose=0,
                                                 callbacks=[BusCallback(address)]))
    return tuner.fit()


def _rows(storage: Path) -> dict[int, list[dict[str, Any]]]:
    """Each trial's result.json rows without the fields that differ between runs, by its ``k``."""
    found = {}
    for result in (storage / "exp").glob("*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines()]
        found[rows[0]["config"]["k"]] = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
    return found


@pytest.mark.slow  # a Tuner sweep and collector child processes
def test_a_sweep_through_two_shards_writes_what_one_collector_writes(ray_session: None,
                                                                     tmp_path: Path) -> None:
    """Every trial's rows through 2 shards equal a 1-shard run's; each shard wrote its own trials; status."""
    bus, status = free_ports(2), free_ports(2)
    sharded = tmp_path / "sharded"
    supervisor = subprocess.Popen([sys.executable, "-m", "pipeline.entry.cli", "collect", "--shards", "2",
                                   "--bind", f"tcp://127.0.0.1:{bus}", "--status-bind",
                                   f"tcp://127.0.0.1:{status}", "--out", str(sharded), "--sinks", "json,csv",
                                   "--log-interval-s", "0"])
    try:
        second = f"tcp://127.0.0.1:{status + 1}"
        wait_for(lambda: run_cli("status", second, "--timeout-s", "1").returncode == 0, 60, "both shards")
        grid = _sweep(sharded, f"tcp://127.0.0.1:{bus}")
        assert not grid.errors
        shown = run_cli("status", f"tcp://127.0.0.1:{status}")
        assert shown.returncode == 0 and "2 shards, 2 answering" in shown.stdout, shown.stdout + shown.stderr
        answers = json.loads(run_cli("status", f"tcp://127.0.0.1:{status}", "--json").stdout)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
    single = tmp_path / "single"
    address = f"tcp://127.0.0.1:{free_ports(1)}"
    plain = start_collector(address, single, "--sinks", "json,csv", "--log-interval-s", "0")
    try:
        assert not _sweep(single, address).errors
    finally:
        plain.send_signal(signal.SIGTERM)
        assert plain.wait(timeout=60) == 0
    assert _rows(sharded) == _rows(single) and len(_rows(single)) == TRIALS
    # Each shard wrote the trials that hash to it, and the experiment's events: its json sink's
    # count is 2 (setup, experiment_end) plus the same number of events for each of its trials.
    routed = [sum(shard_of(_trial_id(p), 2) == k for p in (sharded / "exp").glob("*/result.json"))
              for k in (0, 1)]
    written = [a["sinks"]["json"]["events"] - 2 for a in answers]
    per_trial = sum(written) // TRIALS
    assert per_trial > ITERATIONS and written == [per_trial * n for n in routed], (written, routed)
    assert all(stream.endswith(f".s{k}") for k, a in enumerate(answers) for stream in a["producers"])


def _trial_id(result: Path) -> str:
    return str(json.loads(result.read_text().splitlines()[0])["trial_id"])
