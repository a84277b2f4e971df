"""Ray Tune's own logger test cases, replayed into Tune's callbacks and into tunebus: the same files."""

from __future__ import annotations

import asyncio
import csv
import enum
import gc
import json
import logging
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ray.tune.analysis.experiment_analysis import ExperimentAnalysis
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

from pipeline import BusCallback
from pipeline.testing import running_collector
from tests.readers import read_aim, read_tensorboard

EXPERIMENT = "exp"
REMOVED = "Removed the following hyperparameter values when logging to"
CONFIG = {"a": 2, "b": 5, "c": {"c": {"D": 123}, "e": None}}
TBX_CONFIG = {"a": 2, "b": [1, 2], "c": {"c": {"D": 123}}, "int32": np.int32(1), "int64": np.int64(2),
              "bool8": np.bool_(True), "float32": np.float32(3), "float64": np.float64(4),
              "bad": np.longdouble(4)}
LEGACY_TBX_CONFIG = {"a": 2, "b": [1, 2], "c": {"c": {"D": 123}}, "d": np.int64(1), "e": np.bool_(True),
                     "f": None}
NODE_IP = "127.0.0.1"


class Mode(str, enum.Enum):
    FAST = "fast"


class Level(enum.IntEnum):
    HIGH = 3


class Meters(float):
    """A float subclass, as units libraries make them."""


class Dummy:
    """An object no logger can write as a value: Ray's Aim suite puts one in the config."""

    def __repr__(self) -> str:
        return "Dummy()"


@dataclass(eq=False)
class MockTrial:
    """What Tune's logger callbacks and BusCallback read from a ``Trial``, mocked as Ray's tests do."""

    trial_id: str
    evaluated_params: dict[str, Any]
    root: Path
    config: dict[str, Any] = field(default_factory=dict)
    checkpoint: Any = None
    error_file: str | None = None
    status: str = "RUNNING"

    @property
    def trial_dir_name(self) -> str:
        return f"trial_{self.trial_id}"

    @property
    def experiment_dir_name(self) -> str:
        return EXPERIMENT

    @property
    def local_experiment_path(self) -> str:
        return str(self.root / EXPERIMENT)

    remote_experiment_path = local_experiment_path

    @property
    def local_path(self) -> str:
        return str(self.root / EXPERIMENT / self.trial_dir_name)

    path = local_path

    @property
    def storage(self) -> SimpleNamespace:
        return SimpleNamespace(trial_dir_name=self.trial_dir_name, trial_fs_path=self.local_path,
                               storage_filesystem=_local_fs())

    def init_local_path(self) -> None:
        Path(self.local_path).mkdir(parents=True, exist_ok=True)

    def get_ray_actor_ip(self) -> str:
        return NODE_IP

    def __hash__(self) -> int:
        return hash(self.trial_id)


def _local_fs() -> Any:
    import pyarrow.fs

    return pyarrow.fs.LocalFileSystem()


def result(t: float, rew: float, **kwargs: Any) -> dict[str, Any]:
    """Ray's ``test_logger.result``: the fields every case reports."""
    return {"time_total_s": t, "episode_reward_mean": rew, "mean_accuracy": rew * 2,
            "training_iteration": int(t), **kwargs}


Case = Callable[[Any, list[MockTrial]], None]
Renamed = dict[str, str] | None


def _three_results(cb: Any, trials: list[MockTrial], start: bool = False, **extra: Any) -> None:
    """Ray's testCSV/testJSON/testTBX hooks: three results (no start unless asked), then complete."""
    for i, t in enumerate(trials):
        if start:
            cb.on_trial_start(iteration=0, trials=trials, trial=t)
        cb.on_trial_result(iteration=0, trials=trials, trial=t, result=result(0, 3 * i + 1, **extra))
        cb.on_trial_result(iteration=1, trials=trials, trial=t, result=result(1, 3 * i + 2, **extra))
        cb.on_trial_result(iteration=2, trials=trials, trial=t, result=result(
            2, 3 * i + 3, score=[1, 2, 3], hello={"world": 1}, **extra))
        cb.on_trial_complete(iteration=3, trials=trials, trial=t)


def _legacy(cb: Any, trials: list[MockTrial]) -> None:
    """The legacy loggers' inputs (testLegacyCSV): three results at the same iteration, then the end."""
    [t] = trials
    for rew, extra in ((4, {}), (5, {}), (6, {"score": [1, 2, 3], "hello": {"world": 1}})):
        cb.on_trial_result(iteration=0, trials=trials, trial=t, result=result(2, rew, **extra))
    cb.on_trial_complete(iteration=3, trials=trials, trial=t)


def _started_twice(cb: Any, trials: list[MockTrial]) -> None:
    """testCSVEmptyHeader: a trial started twice, then one result, never ended."""
    [t] = trials
    cb.on_trial_start(iteration=0, trials=trials, trial=t)
    cb.on_trial_start(iteration=0, trials=trials, trial=t)
    cb.on_trial_result(iteration=1, trials=trials, trial=t, result=result(1, 5))


# ---- running both sides ---------------------------------------------------------------------------


def _trials(root: Path, params: list[dict[str, Any]]) -> list[MockTrial]:
    return [MockTrial(f"t{i}", p, root, config=p) for i, p in enumerate(params)]


def _tune_callbacks(aim: dict[str, Any] | None) -> list[Any]:
    callbacks: list[Any] = [JsonLoggerCallback(), CSVLoggerCallback(), TBXLoggerCallback()]
    if aim is not None:
        from ray.tune.logger.aim import AimLoggerCallback

        callbacks.append(AimLoggerCallback(**aim))
    return callbacks


@dataclass
class Sides:
    """Where Tune's callbacks and the collector wrote the same case."""

    tune: Path
    bus: Path
    tune_trials: list[MockTrial]
    bus_trials: list[MockTrial]


async def replay(tmp_path: Path, address: str, case: Case, params: list[dict[str, Any]],
                 aim: dict[str, Any] | None = None, collector: dict[str, Any] | None = None) -> Sides:
    """``case``'s hooks into Tune's callbacks (under tune/) and into BusCallback and a collector (bus/)."""
    sides = Sides(tmp_path / "tune", tmp_path / "bus", _trials(tmp_path / "tune", params),
                  _trials(tmp_path / "bus", params))
    for t in sides.tune_trials:  # Tune's driver makes the trial directory before any callback runs
        t.init_local_path()
    for cb in _tune_callbacks(aim):
        case(cb, sides.tune_trials)
        for writer in getattr(cb, "_trial_writer", {}).values():  # a trial cut short: no hparams
            writer.close()
    sinks = ("json", "csv", "tensorboard", "aim") if aim is not None else ("json", "csv", "tensorboard")
    options: dict[str, Any] = {"sinks": sinks, **(collector or {})}
    if aim is not None:
        options["aim_durable"] = True
    async with running_collector(sides.bus, address, **options):
        await asyncio.to_thread(_drive, address, case, sides.bus_trials)
    return sides


def _drive(address: str, case: Case, trials: list[MockTrial]) -> None:
    cb = BusCallback(address, end_timeout_s=30)
    case(cb, trials)
    assert cb.flush(30), "the collector did not confirm every event"
    cb.close()


# ---- comparing files ------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_json_files(tune: Path, bus: Path) -> None:
    """result.json rows parse to the same values in the same key order (ours is compact), params.json
    is the same text and params.pkl the same bytes."""
    assert (bus / "params.json").read_text() == (tune / "params.json").read_text()
    assert (bus / "params.pkl").read_bytes() == (tune / "params.pkl").read_bytes()
    theirs = (tune / "result.json").read_text().splitlines()
    ours = (bus / "result.json").read_text().splitlines()
    assert len(ours) == len(theirs)
    for mine, their in zip(ours, theirs):
        assert _same(json.loads(mine), json.loads(their)), (mine, their)
        assert len(mine) < len(their)  # compact separators, on purpose


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def assert_csv_files(tune: Path, bus: Path, late: tuple[str, ...] = (), renamed: Renamed = None) -> None:
    """progress.csv has Tune's cells under Tune's header; ours adds only the ``late`` columns, at the end."""
    theirs, ours = _csv_rows(tune / "progress.csv"), _csv_rows(bus / "progress.csv")
    theirs[0] = [(renamed or {}).get(name, name) for name in theirs[0]]
    width = len(theirs[0])
    assert ours[0] == theirs[0] + list(late)
    assert [row[:width] for row in ours] == theirs


def assert_tensorboard_files(tune: Path, bus: Path, renamed: Renamed = None) -> None:
    """Scalars, histograms, images and hparams read back equal; ours holds one event per result."""
    ours, theirs = read_tensorboard(bus), read_tensorboard(tune)
    tags = {f"ray/tune/{k}": f"ray/tune/{v}" for k, v in (renamed or {}).items()}
    theirs["scalars"] = {tags.get(tag, tag): values for tag, values in theirs["scalars"].items()}
    if "_hparams_/experiment" in theirs["hparams"]:
        for info in theirs["hparams"]["_hparams_/experiment"].experiment.metric_infos:
            info.name.tag = tags.get(info.name.tag, info.name.tag)
    assert ours == theirs


def _tensorboard_events(trial_dir: Path) -> list[Any]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    events = []
    for path in sorted(trial_dir.glob("events.out.tfevents.*")):
        events.extend(e for e in EventFileLoader(str(path)).Load() if e.HasField("summary"))
    return events


def assert_one_event_per_result(tune: Path, bus: Path, results: int, hparams: bool) -> None:
    """The documented difference: Tune writes an event per value, we one per result (+3 for hparams)."""
    assert len(_tensorboard_events(bus)) == results + (3 if hparams else 0)
    assert len(_tensorboard_events(tune)) > results


def assert_dataframes(tune: MockTrial, bus: MockTrial, renamed: Renamed = None) -> None:
    """``ResultGrid.metrics_dataframe`` as Ray builds it, from result.json and from progress.csv alone."""
    tune.last_result = bus.last_result = {"done": True}  # type: ignore[attr-defined]
    frames = [ExperimentAnalysis._fetch_trial_dataframe(None, t) for t in (tune, bus)]  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(frames[1], frames[0])
    theirs = pd.read_csv(Path(tune.local_path, "progress.csv"), dtype={"trial_id": str})
    theirs = theirs.rename(columns=renamed or {})
    ours = pd.read_csv(Path(bus.local_path, "progress.csv"), dtype={"trial_id": str})
    pd.testing.assert_frame_equal(ours[list(theirs.columns)], theirs)


def assert_all_files(sides: Sides, results: int, hparams: bool = True, late: tuple[str, ...] = (),
                     renamed: Renamed = None) -> None:
    """Every file of every trial, and the dataframes Ray reads from them; ``renamed`` maps Tune's
    flattened names to ours where they differ on purpose."""
    for t_trial, b_trial in zip(sides.tune_trials, sides.bus_trials):
        tune, bus = Path(t_trial.local_path), Path(b_trial.local_path)
        assert_json_files(tune, bus)
        assert_csv_files(tune, bus, late, renamed)
        assert_tensorboard_files(tune, bus, renamed)
        assert_one_event_per_result(tune, bus, results, hparams)
        assert_dataframes(t_trial, b_trial, renamed)


# ---- Ray's LoggerSuite --------------------------------------------------------------------------


async def test_csv(tmp_path: Path, address: str) -> None:
    """testCSV: three results with no start, a late list and dict, then complete; every file as Tune's."""
    sides = await replay(tmp_path, address, _three_results, [CONFIG])
    assert_all_files(sides, 3, late=("score", "hello/world"))
    rows = list(csv.DictReader((Path(sides.bus_trials[0].local_path) / "progress.csv").open()))
    assert [int(row["episode_reward_mean"]) for row in rows] == [1, 2, 3]


async def test_csv_empty_header(tmp_path: Path, address: str) -> None:
    """testCSVEmptyHeader: started twice, one result, never ended: the header is there, as Tune's."""
    sides = await replay(tmp_path, address, _started_twice, [CONFIG])
    tune, bus = Path(sides.tune_trials[0].local_path), Path(sides.bus_trials[0].local_path)
    assert "training_iteration" in (bus / "progress.csv").read_text().splitlines()[0]
    assert_json_files(tune, bus)
    assert_csv_files(tune, bus)
    assert_tensorboard_files(tune, bus)


async def test_json_without_trial_start(tmp_path: Path, address: str) -> None:
    """testJSON: a trial whose first hook is a result still gets params.json and params.pkl, as Tune's."""
    sides = await replay(tmp_path, address, _three_results, [CONFIG])
    bus = Path(sides.bus_trials[0].local_path)
    assert json.loads((bus / "params.json").read_text()) == CONFIG
    assert_all_files(sides, 3, late=("score", "hello/world"))


async def test_tbx(tmp_path: Path, address: str, caplog: pytest.LogCaptureFixture) -> None:
    """testTBX: numpy hparams kept as Tune keeps them, a float128 one removed and said at INFO."""
    caplog.set_level(logging.INFO)
    sides = await replay(tmp_path, address, _three_results, [TBX_CONFIG])
    assert_all_files(sides, 3, late=("score", "hello/world"))
    start = read_tensorboard(Path(sides.bus_trials[0].local_path))["hparams"]["_hparams_/session_start_info"]
    assert set(start.session_start_info.hparams) == {"a", "c/c/D", "int32", "int64", "bool8",
                                                     "float32", "float64"}
    said = [r for r in caplog.records if r.getMessage().startswith(REMOVED) and r.name.startswith("sinks")]
    assert len(said) == 1 and said[0].levelno == logging.INFO and "'bad'" in said[0].getMessage()


async def test_bad_tbx(tmp_path: Path, address: str, caplog: pytest.LogCaptureFixture) -> None:
    """testBadTBX: a tuple hparam is removed, and said once at INFO as Tune says it."""
    caplog.set_level(logging.INFO)
    sides = await replay(tmp_path, address, _three_results, [{"b": (1, 2, 3)}])
    assert_all_files(sides, 3, late=("score", "hello/world"))
    tune_said = [r.getMessage() for r in caplog.records if r.name.startswith("ray.tune")]
    assert tune_said == [f"{REMOVED} tensorboard: {{'b': (1, 2, 3)}}"]  # Tune's own line
    ours = [r for r in caplog.records if r.name == "sinks.tensorboard" and REMOVED in r.getMessage()]
    assert len(ours) == 1 and ours[0].levelno == logging.INFO
    assert ours[0].getMessage().endswith("tensorboard: {'b': (1, 2, 3)}")


async def test_legacy_logger_inputs(tmp_path: Path, address: str) -> None:
    """The legacy loggers' inputs: three results at one iteration, None and numpy hparams."""
    sides = await replay(tmp_path, address, _legacy, [LEGACY_TBX_CONFIG])
    assert_all_files(sides, 3, late=("score", "hello/world"))


@pytest.mark.slow  # many trials through a collector: over 2 s
async def test_memory_is_released_after_many_trials(tmp_path: Path, address: str) -> None:
    """The memory-leak cases: many trials end, the files match, and BusCallback holds none of them."""
    params = [{"lr": 0.01 * i} for i in range(12)]
    sides = await replay(tmp_path, address, _three_results, params)
    assert_all_files(sides, 3, late=("score", "hello/world"))
    trials = _trials(tmp_path / "leak", params)
    refs = [weakref.ref(t) for t in trials]
    cb = BusCallback(address, end_timeout_s=30)
    async with running_collector(tmp_path / "leak", address):
        await asyncio.to_thread(_three_results, cb, trials)
        assert await asyncio.to_thread(cb.flush, 30)
    cb.close()
    del trials
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(params)


# ---- odd values Tune's loggers write ---------------------------------------------------------------


RENAMED = {"by_mode/Mode.FAST": "by_mode/fast"}
"""A (str, Enum) key, flattened: Tune writes ``str(key)``, we its value (as result.json has it)."""
ODD_PARAMS = {"mode": Mode.FAST, "level": Level.HIGH, "width": Meters(1.5), "lr": 0.1}


def _odd_values(cb: Any, trials: list[MockTrial]) -> None:
    """A start, then results carrying enum and float-subclass values and enum keys."""
    [t] = trials
    cb.on_trial_start(iteration=0, trials=trials, trial=t)
    for i in (1, 2):
        cb.on_trial_result(iteration=i, trials=trials, trial=t, result=result(
            i, i * 1.5, mode=Mode.FAST, level=Level.HIGH, width=Meters(i / 4),
            by_mode={Mode.FAST: i, Level.HIGH: 2 * i}, node_ip=NODE_IP))
    cb.on_trial_complete(iteration=3, trials=trials, trial=t)


async def test_enum_and_float_subclass_values_are_written_as_tune_writes_them(
        tmp_path: Path, address: str) -> None:
    """(str, Enum), IntEnum and float-subclass values and keys: every file, scalars and hparams as Tune's,
    but a (str, Enum) key flattened by its value, where Tune's flatten writes ``str(key)``."""
    sides = await replay(tmp_path, address, _odd_values, [ODD_PARAMS])
    assert_all_files(sides, 2, renamed=RENAMED)
    bus = Path(sides.bus_trials[0].local_path)
    row = json.loads((bus / "result.json").read_text().splitlines()[0])
    assert (row["mode"], row["level"], row["by_mode"]) == ("fast", 3, {"fast": 1, "3": 2})
    board = read_tensorboard(bus)
    assert {"ray/tune/level", "ray/tune/width", "ray/tune/by_mode/fast"} <= set(board["scalars"])
    hparams = board["hparams"]["_hparams_/session_start_info"].session_start_info.hparams
    assert hparams["mode"].string_value == "fast" and hparams["level"].number_value == 3


def _object_array(cb: Any, trials: list[MockTrial]) -> None:
    """Results carrying a numpy array of dtype=object, with no start."""
    [t] = trials
    for i in (1, 2):
        cb.on_trial_result(iteration=i, trials=trials, trial=t,
                           result=result(i, i, objects=np.array([1, 2.5, i], dtype=object)))
    cb.on_trial_complete(iteration=3, trials=trials, trial=t)


async def test_an_object_array_gets_tunes_histogram(tmp_path: Path, address: str) -> None:
    """A dtype=object array: the histogram Tune writes, and the same JSON and CSV text."""
    sides = await replay(tmp_path, address, _object_array, [CONFIG])
    assert_all_files(sides, 2)
    board = read_tensorboard(Path(sides.bus_trials[0].local_path))
    assert [step for step, _ in board["histograms"]["ray/tune/objects"]] == [1, 2]


# ---- Ray's AimLoggerSuite --------------------------------------------------------------------------


AIM_CONFIG = {"a": 2, "b": [1, 2], "c": {"d": {"e": 123}}, "int32": np.int32(1), "int64": np.int64(2),
              "bool8": np.bool_(True), "float32": np.float32(3), "float64": np.float64(4), "bad": Dummy()}
VOLATILE = ("trial_log_dir",)


def _aim_case(cb: Any, trials: list[MockTrial]) -> None:
    """Ray's AimLoggerSuite: two trials started, three results each (with node_ip), then complete."""
    _three_results(cb, trials, start=True, node_ip=NODE_IP)


def assert_aim_runs(sides: Sides, tune_repo: Path, bus_repo: Path,
                    renamed: Renamed = None) -> list[dict[str, Any]]:
    """Runs, params and sequences equal to Tune's, paths aside; ours tracks no system metrics."""
    theirs, ours = read_aim(tune_repo), read_aim(bus_repo)
    names = {f"ray/tune/{k}|": f"ray/tune/{v}|" for k, v in (renamed or {}).items()}
    for run in theirs:
        run["metrics"] = {next((names[p] + key[len(p):] for p in names if key.startswith(p)), key): seq
                          for key, seq in run["metrics"].items()}
    assert len(ours) == len(theirs) == len(sides.tune_trials)
    for mine, their, t_trial, b_trial in zip(ours, theirs, sides.tune_trials, sides.bus_trials):
        assert mine["params"]["trial_log_dir"] == b_trial.path
        assert their["params"]["trial_log_dir"] == t_trial.path
        assert mine["experiment"] == their["experiment"]
        assert {k: v for k, v in mine["params"].items() if k not in VOLATILE} == {
            k: v for k, v in their["params"].items() if k not in VOLATILE}
        system = {k for k in their["metrics"] if k.startswith("__system__")}
        assert {k for k in mine["metrics"] if k.startswith("__system__")} == set()
        assert mine["metrics"] == {k: v for k, v in their["metrics"].items() if k not in system}
    return ours


@pytest.mark.slow
@pytest.mark.parametrize("metrics", [None, ("episode_reward_mean",)], ids=["default", "filtered_metrics"])
async def test_aim(tmp_path: Path, address: str, caplog: pytest.LogCaptureFixture,
                   metrics: tuple[str, ...] | None) -> None:
    """testDefault/testFilteredMetrics: the repo in the experiment directory, the bad hparam removed
    and said, the same runs and metrics as Tune's."""
    caplog.set_level(logging.INFO)
    collector = {"aim_metrics": metrics} if metrics else {}
    sides = await replay(tmp_path, address, _aim_case, [AIM_CONFIG, AIM_CONFIG],
                         aim={"metrics": list(metrics) if metrics else None}, collector=collector)
    ours = assert_aim_runs(sides, sides.tune / EXPERIMENT, sides.bus / EXPERIMENT)
    assert [r["experiment"] for r in ours] == [EXPERIMENT, EXPERIMENT]
    assert set(ours[0]["params"]["hparams"]) == {"a", "b", "c/d/e", "int32", "int64", "bool8", "float32",
                                                 "float64"}
    said = [r for r in caplog.records if r.name == "sinks.aim" and REMOVED in r.getMessage()]
    assert len(said) == 2 and all(r.levelno == logging.INFO for r in said)  # once per trial
    assert_all_files(sides, 3, late=("score", "hello/world"))


@pytest.mark.slow
async def test_aim_custom_configurations(tmp_path: Path, address: str) -> None:
    """testCustomConfigurations: a custom repo and experiment name, as AimLoggerCallback's arguments."""
    tune_repo, bus_repo = tmp_path / "tune_repo", tmp_path / "bus_repo"
    sides = await replay(tmp_path, address, _aim_case, [AIM_CONFIG, AIM_CONFIG],
                         aim={"repo": str(tune_repo), "experiment_name": "custom"},
                         collector={"aim_repo": bus_repo, "aim_experiment_name": "custom"})
    ours = assert_aim_runs(sides, tune_repo, bus_repo)
    assert [r["experiment"] for r in ours] == ["custom", "custom"]


@pytest.mark.slow
async def test_aim_numpy_string_hparam(tmp_path: Path, address: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """An np.str_ hparam: Tune's Aim callback raises; ours drops that value alone, says so, keeps lr."""
    caplog.set_level(logging.INFO)
    from ray.tune.logger.aim import AimLoggerCallback

    params = {"lr": 0.1, "act": np.str_("relu")}
    tune_trial = MockTrial("t0", params, tmp_path / "tune", config=params)
    with pytest.raises(TypeError, match="Expected unicode"):
        AimLoggerCallback().on_trial_start(iteration=0, trials=[tune_trial], trial=tune_trial)
    bus_trials = _trials(tmp_path / "bus", [params])
    async with running_collector(tmp_path / "bus", address, sinks=("json", "aim"), aim_durable=True):
        await asyncio.to_thread(_drive, address, _aim_case, bus_trials)
    [run] = read_aim(tmp_path / "bus" / EXPERIMENT)
    assert run["params"]["hparams"] == {"lr": 0.1}
    assert len(run["metrics"]) > 1
    said = [r.getMessage() for r in caplog.records if r.name == "sinks.aim" and REMOVED in r.getMessage()]
    assert said == [f"{REMOVED} aim: {{'act': np.str_('relu')}}"]


@pytest.mark.slow
async def test_aim_enum_and_float_subclass_values(tmp_path: Path, address: str) -> None:
    """IntEnum and float-subclass hparams and metrics reach Aim as Tune's callback tracks them."""
    params = {"level": Level.HIGH, "width": Meters(1.5), "lr": 0.1}
    sides = await replay(tmp_path, address, _odd_values, [params], aim={})
    [run] = assert_aim_runs(sides, sides.tune / EXPERIMENT, sides.bus / EXPERIMENT, RENAMED)
    assert run["params"]["hparams"] == {"level": 3, "width": 1.5, "lr": 0.1}
    assert {"ray/tune/level|{}", "ray/tune/width|{}"} <= set(run["metrics"])
