"""Aim sink: one run per trial, with what Tune's AimLoggerCallback writes, read back with aim.Repo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.testing import event
from pipeline.wire.events import Event
from sinks import make_sink
from sinks.aim import AimSink
from sinks.base import TrialFiles, close_all, deliver
from tests.readers import read_aim
from tests.sink_sweeps import Sweeps, run_sweeps

VOLATILE = {"ray/tune/time_this_iter_s", "ray/tune/time_since_restore"}
CONTEXT = '{"subset": "train"}'


def _event(kind: str, seq: int, payload: dict[str, Any], trial: str = "t1") -> Event:
    return event(kind, payload, seq=seq, trial=trial, trial_dir=f"dir_{trial}")


def _result(i: int, **extra: Any) -> dict[str, Any]:
    return {"loss": 1.0 / i, "training_iteration": i, "nested": {"a": i}, "time_total_s": 1.0,
            "timestamp": 5, "pid": 9, "config": {"lr": 0.1}, **extra}


def _write(sink: AimSink, events: list[Event]) -> None:
    trials = TrialFiles(sink.out)
    deliver(sink, events, trials)
    close_all(sink, trials)


class RecordingRun:
    """Stands in for ``aim.Run`` in the fast lane: keeps the run's params and every ``track`` call."""

    made: list[RecordingRun] = []

    def __init__(self, run_hash: str | None, **options: Any) -> None:
        self.hash, self.options = run_hash or f"run{len(self.made)}", options
        self.params: dict[str, Any] = {}
        self.tracked: list[tuple[dict[str, Any], Any, Any, Any]] = []
        self.closed = False
        self.made.append(self)

    def __setitem__(self, key: str, value: Any) -> None:
        self.params[key] = value

    def track(self, values: dict[str, Any], step: Any = None, epoch: Any = None, context: Any = None) -> None:
        self.tracked.append((values, step, epoch, context))

    def close(self) -> None:
        self.closed = True


def test_each_result_is_tracked_with_tunes_names_step_epoch_and_context(tmp_path: Path) -> None:
    """In process, with a recording Run: finite scalars as ray/tune/ names at Tune's step, params set once."""
    RecordingRun.made.clear()
    sink = AimSink(tmp_path, run_class=RecordingRun)
    start = _event("trial_start", 0, {"evaluated_params": {"lr": 0.5}, "path": "/storage/exp/dir_t1"})
    results = [_event("result", i, _result(i, epoch=7, context={"subset": "train"}, nan=float("nan")))
               for i in (1, 2)]
    _write(sink, [start, *results, _event("result", 3, _result(3, epoch="e", timesteps_total=30))])
    [run] = RecordingRun.made
    assert run.options["experiment"] == "exp" and run.closed
    assert run.params == {"trial_id": "t1", "trial_log_dir": "/storage/exp/dir_t1", "hparams": {"lr": 0.5}}
    assert [(step, epoch, context) for _, step, epoch, context in run.tracked] == [
        (1, 7, {"subset": "train"}), (2, 7, {"subset": "train"}), (30, None, None)]
    assert run.tracked[0][0] == {"ray/tune/loss": 1.0, "ray/tune/nested/a": 1}


@pytest.mark.slow  # read back with Aim's own CLI (reindex) in child processes: seconds each
def test_one_run_per_trial_with_tunes_params_and_finite_scalars(tmp_path: Path) -> None:
    """trial_id, trial_log_dir and scrubbed hparams as params; finite scalars with step, epoch, context."""
    params = {"lr": np.float64(0.5), "arch": {"act": "relu"}, "shape": (1, 2)}
    start = _event("trial_start", 0, {"evaluated_params": params, "path": "/storage/exp/dir_t1"})
    results = [_event("result", i, _result(i, epoch=7, context={"subset": "train"}, nan=float("nan"),
                                           inf=float("inf"), flag=True, text="x"))
               for i in (1, 2)]
    _write(AimSink(tmp_path), [start, *results, _event("trial_complete", 3, {})])
    [run] = read_aim(tmp_path / "exp")
    assert run["experiment"] == "exp"
    assert run["params"] == {"trial_id": "t1", "trial_log_dir": "/storage/exp/dir_t1",
                             "hparams": {"lr": 0.5, "arch/act": "relu"}}
    assert sorted(run["metrics"]) == [f"ray/tune/{k}|{CONTEXT}" for k in ("flag", "loss", "nested/a")]
    loss = run["metrics"][f"ray/tune/loss|{CONTEXT}"]
    assert loss == {"steps": [1, 2], "values": [1.0, 0.5], "epochs": [7, 7]}


@pytest.mark.slow  # read back with Aim's own CLI (reindex) in child processes: seconds each
def test_the_metrics_allow_list_tracks_only_the_named_keys(tmp_path: Path) -> None:
    """With metrics given, only those flattened keys are tracked; steps follow timesteps_total."""
    sink = AimSink(tmp_path, repo=tmp_path / "repo", metrics=("nested/a",))
    _write(sink, [_event("trial_start", 0, {}), _event("result", 1, _result(1, timesteps_total=32))])
    [run] = read_aim(tmp_path / "repo")
    assert list(run["metrics"]) == ["ray/tune/nested/a|{}"]
    assert run["metrics"]["ray/tune/nested/a|{}"]["steps"] == [32]
    assert run["params"]["trial_log_dir"] == str(tmp_path / "exp" / "dir_t1")


@pytest.mark.slow  # read back with Aim's own CLI (reindex) in child processes: seconds each
def test_a_restarted_trial_reuses_its_run_across_collector_restarts(tmp_path: Path) -> None:
    """A second start, in the same sink or a new one over the same runs file, tracks into the same run."""
    runs_file = tmp_path / "aim-runs.json"
    _write(AimSink(tmp_path, runs_file=runs_file),
           [_event("trial_start", 0, {}), _event("result", 1, _result(1)),
            _event("trial_start", 2, {}), _event("result", 3, _result(2))])
    _write(AimSink(tmp_path, runs_file=runs_file),
           [_event("trial_start", 4, {}), _event("result", 5, _result(3))])
    [run] = read_aim(tmp_path / "exp")
    assert run["metrics"]["ray/tune/loss|{}"]["steps"] == [1, 2, 3]


@pytest.mark.slow  # read back with Aim's own CLI (reindex) in child processes: seconds each
def test_a_result_aim_refuses_is_left_out_and_the_sink_goes_on(tmp_path: Path) -> None:
    """A context Aim cannot take loses that result only; the sink never raises."""
    _write(AimSink(tmp_path), [_event("trial_start", 0, {}), _event("result", 1, _result(1, context=3)),
                               _event("result", 2, {"loss": 1.0}), _event("result", 3, _result(3))])
    [run] = read_aim(tmp_path / "exp")
    assert run["metrics"]["ray/tune/loss|{}"]["steps"] == [3]


def test_make_sink_builds_it_by_name_lagging_unless_made_durable(tmp_path: Path) -> None:
    """'aim' is not durable by default; durable=True makes the collector wait for it."""
    assert not make_sink("aim", tmp_path).durable
    assert make_sink("aim", tmp_path, durable=True).durable
    with pytest.raises(ValueError, match="''"):
        AimSink(tmp_path, metrics=("",))


@pytest.fixture(scope="module")
def sweeps(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Sweeps:
    base = tmp_path_factory.getbasetemp() / "sink_sweeps"
    base.mkdir(exist_ok=True)
    return run_sweeps(base)


def _tune_metrics(run: dict[str, Any]) -> dict[str, Any]:
    """Tune's runs also hold Aim's system metrics of the driver: not the trial's, left out."""
    return {k: v for k, v in run["metrics"].items() if not k.startswith("__system__")}


def test_sweep_runs_and_params_match_tunes(sweeps: Sweeps) -> None:
    """One run per trial, the same experiment name, hparams and trial id suffixes; log dirs are ours."""
    ours, theirs = read_aim(sweeps.bus_aim), read_aim(sweeps.tune_aim)
    assert len(ours) == len(theirs) == 2
    for o, t in zip(ours, theirs):
        assert o["experiment"] == t["experiment"] == "exp"
        assert o["params"]["hparams"] == t["params"]["hparams"] == {
            "lr": o["params"]["hparams"]["lr"], "arch/act": "relu"}
        assert o["params"]["trial_id"][-5:] == t["params"]["trial_id"][-5:]
        assert Path(o["params"]["trial_log_dir"]).parent == sweeps.bus_exp
        assert sorted(o["params"]) == sorted(t["params"])
        assert o["params"].get("trial_ip") == t["params"].get("trial_ip")


def test_sweep_metrics_match_tunes_names_steps_values_epochs(sweeps: Sweeps) -> None:
    """Same metric names and contexts, steps, values and epochs as AimLoggerCallback (timings aside)."""
    ours, theirs = read_aim(sweeps.bus_aim), read_aim(sweeps.tune_aim)
    assert [len(o["metrics"][f"ray/tune/loss|{CONTEXT}"]["steps"]) for o in ours] == [4, 3]
    for o, t in zip(ours, theirs):
        want = _tune_metrics(t)
        assert sorted(o["metrics"]) == sorted(want)
        assert f"ray/tune/inf|{CONTEXT}" not in want
        for name, series in want.items():
            got = o["metrics"][name]
            assert (got["steps"], got["epochs"]) == (series["steps"], series["epochs"]), name
            if name.split("|")[0] not in VOLATILE:
                assert got["values"] == series["values"], name


def test_collector_config_checks_and_passes_the_aim_options(tmp_path: Path) -> None:
    """Aim options need aim in sinks, metric names must be non-empty; valid ones reach the sink."""
    from pipeline.collector.assembly import CollectorConfig

    with pytest.raises(ValueError, match="--aim-durable for the aim sink, which is not in sinks"):
        CollectorConfig.from_flat(out=tmp_path, aim_durable=True)
    with pytest.raises(ValueError, match="--aim-experiment-name for the aim sink, which is not in sinks"):
        CollectorConfig.from_flat(out=tmp_path, aim_experiment_name="custom")
    with pytest.raises(ValueError, match="aim_metrics: expected comma-separated result keys, got"):
        CollectorConfig.from_flat(out=tmp_path, sinks=("json", "aim"), aim_metrics=("loss", " "))
    with pytest.raises(ValueError, match="aim_experiment_name: expected a non-empty string, got ''"):
        CollectorConfig.from_flat(out=tmp_path, sinks=("aim",), aim_experiment_name="")
    with pytest.raises(ValueError, match="aim_repo: expected a directory, got the file"):
        (tmp_path / "file").touch()
        CollectorConfig(out=tmp_path, sinks=("aim",), sink_options={"aim": {"repo": tmp_path / "file"}})
    config = CollectorConfig.from_flat(out=tmp_path, sinks=("json", "aim"), aim_repo=tmp_path / "r",
                                       aim_metrics=("loss",), aim_durable=True, aim_experiment_name="custom")
    assert config == CollectorConfig(out=tmp_path, sinks=("json", "aim"), sink_options={
        "aim": {"repo": str(tmp_path / "r"), "metrics": ["loss"], "durable": True,
                "experiment_name": "custom"}})
    sink = make_sink("aim", tmp_path, **config.sink_kwargs("aim"))
    assert isinstance(sink, AimSink) and sink.durable and sink.metrics == {"loss"}
    assert sink.experiment_name == "custom"
    assert sink.repo == tmp_path / "r" and config.sink_kwargs("json") == {}
    assert sink.runs_file == tmp_path / ".tunebus" / "aim-runs.json"
