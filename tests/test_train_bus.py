"""A real Ray Train V2 run (2 workers, no torch) through a real collector, read back as a Tune user would."""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import ray.train
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import pipeline
from pipeline import TrainBusCallback

pytestmark = pytest.mark.slow

ITERATIONS = 4
BATCHES = 5
AUTO_FILLED = {"training_iteration", "timestamp", "time_this_iter_s", "time_total_s", "date", "hostname"}


def train_fn(config: dict[str, Any]) -> None:
    """Each rank logs every batch with pipeline.log and reports once per epoch; rank 0 checkpoints last."""
    rank = ray.train.get_context().get_world_rank()
    for epoch in range(ITERATIONS):
        for batch in range(BATCHES):
            loss = config["lr"] * (rank + 1) / (1 + batch)
            pipeline.log({"batch_loss": loss}, step=epoch * BATCHES + batch)
        checkpoint = None
        if rank == 0 and epoch == ITERATIONS - 1:
            directory = tempfile.mkdtemp()
            Path(directory, "weights").write_text("w")
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        if config.get("fail") and rank == 1 and epoch == 2:
            raise RuntimeError("rank 1 fails on purpose")
        once = config.get("fail_once")
        if once and rank == 1 and epoch == 2 and not Path(once).exists():
            Path(once).touch()
            raise RuntimeError("rank 1 fails once")
        ray.train.report({"loss": 10.0 - epoch + rank, "rank": rank}, checkpoint=checkpoint)


def _fit(storage: Path, name: str, address: str, config: dict[str, Any], max_failures: int = 0) -> Any:
    trainer = DataParallelTrainer(
        train_fn, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=2),
        run_config=ray.train.RunConfig(name=name, storage_path=str(storage),
                                       callbacks=[TrainBusCallback(address)],
                                       failure_config=ray.train.FailureConfig(max_failures=max_failures)),
    )
    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as exc:
        return exc


@pytest.fixture(scope="module")
def runs(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run that completes, one whose rank 1 fails, one Train restarts once; one collector."""
    from pipeline.testing import free_address, start_collector

    out = tmp_path_factory.mktemp("train")
    address = free_address()
    proc = start_collector(address, out)
    try:
        _fit(out, "ok", address, {"lr": 0.5})
        _fit(out, "failed", address, {"lr": 0.5, "fail": True})
        _fit(out, "restarted", address, {"lr": 0.5, "fail_once": str(out / "failed_once")}, max_failures=1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    return out


def test_result_json_has_one_row_per_report_with_rank_0_metrics_and_tune_fields(runs: Path) -> None:
    """result.json: rank 0's metrics, training_iteration 1..N and Tune's auto-filled fields."""
    rows = [json.loads(line) for line in (runs / "ok/train/result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in rows] == list(range(1, ITERATIONS + 1))
    assert [r["loss"] for r in rows] == [10.0 - i for i in range(ITERATIONS)]
    assert all(r["rank"] == 0 and AUTO_FILLED <= set(r) for r in rows)
    assert rows[-1]["checkpoint_dir_name"] and rows[0]["checkpoint_dir_name"] is None


def test_progress_csv_and_params_read_back_with_pandas(runs: Path) -> None:
    """progress.csv has the same rows; params.json holds train_loop_config."""
    frame = pd.read_csv(runs / "ok/train/progress.csv")
    assert list(frame["training_iteration"]) == list(range(1, ITERATIONS + 1))
    assert AUTO_FILLED <= set(frame.columns)
    assert json.loads((runs / "ok/train/params.json").read_text()) == {"lr": 0.5}
    assert (runs / "ok/train/params.pkl").exists()


def test_tensorboard_has_every_rank_and_every_worker_log(runs: Path) -> None:
    """TensorBoard: rank 0 as Tune's ray/tune/ tags, every rank's report and pipeline.log per rank."""
    acc = EventAccumulator(str(runs / "ok/train"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"ray/tune/loss", "ray/train/loss/rank0", "ray/train/loss/rank1",
            "batch_loss/rank0", "batch_loss/rank1"} <= tags
    assert [e.value for e in acc.Scalars("ray/train/loss/rank1")] == [11.0 - i for i in range(ITERATIONS)]
    steps = [e.step for e in acc.Scalars("batch_loss/rank1")]
    assert steps == list(range(ITERATIONS * BATCHES))


def test_worker_log_json_has_one_line_per_call(runs: Path) -> None:
    """worker_log.json: one line per pipeline.log call and per rank's report, with step and rank."""
    lines = [json.loads(line) for line in (runs / "ok/train/worker_log.json").read_text().splitlines()]
    calls = [x for x in lines if "batch_loss" in x["values"]]
    assert len(calls) == 2 * ITERATIONS * BATCHES
    assert sorted({x["rank"] for x in calls}) == [0, 1]
    reports = [x for x in lines if "ray/train" in x["values"]]
    assert len(reports) == 2 * ITERATIONS


def test_a_failed_run_keeps_its_rows_and_its_error(runs: Path) -> None:
    """The failing run: the reports Train processed before the failure, and the failure in error.txt."""
    rows = [json.loads(line) for line in (runs / "failed/train/result.json").read_text().splitlines()]
    # Train may drop the last report when a worker fails while it is still queued on the worker.
    assert [r["training_iteration"] for r in rows] in ([1], [1, 2])
    assert "rank 1 fails on purpose" in (runs / "failed/train/error.txt").read_text()


def test_a_run_train_restarts_continues_the_same_files(runs: Path) -> None:
    """A worker group Train restarts after a failure: one result.json, iterations counting on."""
    rows = [json.loads(line) for line in (runs / "restarted/train/result.json").read_text().splitlines()]
    iterations = [r["training_iteration"] for r in rows]
    assert iterations == list(range(1, len(rows) + 1))
    assert len(rows) in (ITERATIONS + 1, ITERATIONS + 2)  # the reports before the failure, then all
    assert "rank 1 fails once" in (runs / "restarted/train/error.txt").read_text()
    assert len(list((runs / "restarted/train").glob("result.json*"))) == 1
