"""``python -m bench --quick`` runs every benchmark and each prints one JSON object with its keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.testing import run_cli_here

REPO = Path(__file__).resolve().parent.parent

EXPECTED_KEYS = {
    "driver_cost": {"callbacks", "times_bus_median", "target", "in_sweep", "in_sweep_target"},
    "throughput": {"runs", "best_per_s", "targets", "producer_counts"},
    "latency": {"rates", "target"},
    "isolation": {"baseline", "with_slow_sink", "throughput_kept", "driver_median_ratio", "backlog"},
    "sweep": {"runs", "vs_no_loggers", "target"},
    "saturation": {"steps", "saturation_per_s", "lost_total"},
    "filters": {"tensorboard", "chains"},
    "worker_log": {"runs", "wall_vs_bare", "cpu_vs_bare", "every_point_in_tensorboard", "target"},
    "many_trials": {"runs", "trials", "open_at_once"},
    "shards": {"runs", "best_per_s", "two_over_one", "producers"},
}
COMMON_KEYS = {"bench", "quick", "elapsed_s", "machine"}


@pytest.fixture(scope="module")
def records() -> dict[str, dict[str, object]]:
    """Every benchmark's JSON line from one ``python -m bench --quick`` run."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    parsed = [json.loads(line) for line in lines]
    return {record["bench"]: record for record in parsed}


@pytest.mark.ray  # every benchmark, Tune sweeps included, in a child process
@pytest.mark.parametrize("name", sorted(EXPECTED_KEYS))
def test_each_benchmark_prints_its_keys(records: dict[str, dict[str, object]], name: str) -> None:
    """The benchmark ran without error and its JSON holds the common and its own keys."""
    assert name in records, f"{name} printed no JSON line"
    record = records[name]
    assert "error" not in record, record.get("error")
    assert record["quick"] is True
    assert COMMON_KEYS | EXPECTED_KEYS[name] <= set(record)


@pytest.mark.ray  # the same run of every benchmark
def test_no_benchmark_failed(records: dict[str, dict[str, object]]) -> None:
    """Every benchmark that ran, the other engineers' included, finished without error."""
    assert records
    assert [name for name, r in records.items() if "error" in r] == []


def test_tunebus_bench_names_itself_in_its_errors() -> None:
    """``tunebus bench --only nosuch`` reports itself as tunebus bench, not python -m bench."""
    done = run_cli_here("bench", "--only", "nosuch")
    assert done.returncode == 2
    assert "tunebus bench: error:" in done.stderr and "python -m bench" not in done.stderr
