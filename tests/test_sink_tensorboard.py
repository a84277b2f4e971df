"""TensorBoard sink: event files TensorBoard reads, equal to what Tune's TBXLoggerCallback writes."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.wire.events import Event
from sinks import make_sink
from sinks.base import TrialFiles, close_all, deliver
from sinks.tb_events import record
from sinks.tensorboard import TensorBoardSink
from tests.readers import read_tensorboard
from tests.sink_sweeps import Sweeps, run_sweeps, trial_dirs

VOLATILE = {"ray/tune/time_this_iter_s", "ray/tune/time_since_restore"}


def _event(kind: str, seq: int, payload: dict[str, Any], trial: str = "t1") -> Event:
    return Event(kind, "p", seq, 0.0, "exp", trial, f"dir_{trial}", payload)


def _result(i: int, **extra: Any) -> dict[str, Any]:
    return {"loss": 1.0 / i, "training_iteration": i, "nested": {"a": i}, "time_total_s": 1.0,
            "timestamp": 5, "pid": 9, "config": {"lr": 0.1}, **extra}


def _events(path: Path) -> list[Any]:
    """The Event protos of one file, as TensorBoard's raw record reader finds them (CRCs checked)."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboardX.proto.event_pb2 import Event as TbEvent

    return [TbEvent.FromString(raw) for raw in RawEventFileLoader(str(path)).Load()]


def _files(out: Path, trial: str = "t1") -> list[Path]:
    return sorted((out / "exp" / f"dir_{trial}").glob("events.out.tfevents.*"))


def _write(out: Path, events: list[Event]) -> TensorBoardSink:
    sink = TensorBoardSink(out)
    trials = TrialFiles(out)
    deliver(sink, events, trials)
    close_all(sink, trials)
    return sink


def test_each_result_is_one_event_with_all_its_scalars_at_tunes_step(tmp_path: Path) -> None:
    """One Event per result: every valid scalar under ray/tune/, step from timesteps_total else iteration."""
    start = _event("trial_start", 0, {"evaluated_params": {"lr": 0.1}})
    results = [_event("result", 1, _result(1, flag=True, nan=float("nan"), np32=np.float32(0.5))),
               _event("result", 2, _result(2, timesteps_total=64, text="no"))]
    _write(tmp_path, [start, *results])
    [path] = _files(tmp_path)
    assert path.name.startswith("events.out.tfevents.")
    assert path.name.endswith(f"{socket.gethostname()}.tunebus")
    first, one, two = _events(path)
    assert first.file_version == "brain.Event:2"
    assert one.step == 1 and two.step == 64
    assert {v.tag: v.simple_value for v in one.summary.value} == {
        "ray/tune/loss": 1.0, "ray/tune/flag": 1.0, "ray/tune/np32": 0.5, "ray/tune/nested/a": 1.0}
    assert [v.tag for v in two.summary.value] == ["ray/tune/loss", "ray/tune/timesteps_total",
                                                  "ray/tune/nested/a"]


def test_records_are_tensorboardx_records_with_the_native_crc(tmp_path: Path) -> None:
    """record() writes the bytes tensorboardX's own RecordWriter writes for the same data."""
    from tensorboardX.record_writer import RecordWriter

    data = os.urandom(300)
    writer = RecordWriter(str(tmp_path / "theirs"))
    writer.write(data)
    writer.close()
    assert record(data) == (tmp_path / "theirs").read_bytes()


def test_records_wait_in_memory_until_the_batch_is_flushed(tmp_path: Path) -> None:
    """Results are written to the file at flush (once per batch), not one by one."""
    sink = TensorBoardSink(tmp_path)
    trials = TrialFiles(tmp_path)
    ref = trials.ref(_event("result", 0, {}))
    sink.open_trial(ref, None)
    sink.write_results(ref, [_result(i) for i in range(1, 4)])
    [path] = _files(tmp_path)
    assert path.stat().st_size == 0
    sink.flush()
    assert [e.step for e in _events(path)] == [0, 1, 2, 3]
    sink.close()


def test_arrays_become_images_and_histograms_tensorboard_reads(tmp_path: Path) -> None:
    """3-d and 4-d arrays are images, lists and other arrays histograms; empty ones are left out."""
    result = _result(1, img=np.zeros((3, 4, 5), np.float32), imgs=np.zeros((2, 1, 3, 3), np.uint8),
                     hist=[1.0, 2.0, 2.0], harr=np.arange(4), empty=[], bad=[[]])
    _write(tmp_path, [_event("trial_start", 0, {}), _event("result", 1, result)])
    read = read_tensorboard(tmp_path / "exp" / "dir_t1")
    assert sorted(read["images"]) == ["ray/tune/img", "ray/tune/imgs"]  # a batch is one grid image
    assert read["images"]["ray/tune/img"][0][:3] == (1, 5, 4)
    assert sorted(read["histograms"]) == ["ray/tune/harr", "ray/tune/hist"]
    assert read["histograms"]["ray/tune/hist"][0][1].num == 3


def test_hparams_are_written_when_a_trial_ends_and_not_when_cut_short(tmp_path: Path) -> None:
    """A complete trial gets the hparams plugin's three summaries; one cut short by the end gets none."""
    params = {"lr": np.float32(0.5), "arch": {"act": "relu"}, "shape": (1, 2), "fn": None}
    _write(tmp_path, [
        _event("trial_start", 0, {"evaluated_params": params}), _event("result", 1, _result(1)),
        _event("trial_complete", 2, {"evaluated_params": params}),
        _event("trial_start", 3, {"evaluated_params": params}, "t2"),
        _event("result", 4, _result(1), "t2"), Event("experiment_end", "p", 5, 0.0, "exp", "", "", {}),
    ])
    done = read_tensorboard(tmp_path / "exp" / "dir_t1")["hparams"]
    assert sorted(done) == ["_hparams_/experiment", "_hparams_/session_end_info",
                            "_hparams_/session_start_info"]
    start = done["_hparams_/session_start_info"].session_start_info
    assert dict(start.hparams).keys() == {"lr", "arch/act"}
    assert start.hparams["lr"].number_value == 0.5 and start.hparams["arch/act"].string_value == "relu"
    metrics = [m.name.tag for m in done["_hparams_/experiment"].experiment.metric_infos]
    assert metrics == ["ray/tune/loss", "ray/tune/nested/a"]
    assert read_tensorboard(tmp_path / "exp" / "dir_t2")["hparams"] == {}


def test_a_restarted_trial_opens_a_new_event_file_and_both_read_back(tmp_path: Path) -> None:
    """A second start of a trial closes its file and starts another; TensorBoard reads both."""
    _write(tmp_path, [_event("trial_start", 0, {}), _event("result", 1, _result(1)),
                      _event("trial_start", 2, {}), _event("result", 3, _result(2))])
    assert len(_files(tmp_path)) == 2
    read = read_tensorboard(tmp_path / "exp" / "dir_t1")
    assert [s for s, _ in read["scalars"]["ray/tune/loss"]] == [1, 2]


def test_a_tensorboardx_writer_in_the_same_second_never_takes_its_file(tmp_path: Path) -> None:
    """Tune's TBX logger starting beside the sink (same second, same host) gets another file name."""
    from tensorboardX import SummaryWriter

    _write(tmp_path, [_event("trial_start", 0, {}), _event("result", 1, _result(1))])
    writer = SummaryWriter(str(tmp_path / "exp" / "dir_t1"))
    writer.add_scalar("theirs", 2.0, 1)
    writer.close()
    assert len(_files(tmp_path)) == 2
    scalars = read_tensorboard(tmp_path / "exp" / "dir_t1")["scalars"]
    assert scalars["ray/tune/loss"] == [(1, 1.0)] and scalars["theirs"] == [(1, 2.0)]


def test_values_tensorboard_cannot_hold_are_left_out_and_the_sink_goes_on(tmp_path: Path) -> None:
    """A huge int, a string step or an unhistogrammable list never make the sink raise."""
    _write(tmp_path, [_event("trial_start", 0, {}),
                      _event("result", 1, _result(1, huge=10**400, words=["a", "b"])),
                      _event("result", 2, {"training_iteration": "x", "loss": 1.0}),
                      _event("result", 3, _result(3))])
    read = read_tensorboard(tmp_path / "exp" / "dir_t1")
    assert "ray/tune/huge" not in read["scalars"] and read["histograms"] == {}
    assert [s for s, _ in read["scalars"]["ray/tune/loss"]] == [1, 3]


def test_make_sink_builds_it_by_name(tmp_path: Path) -> None:
    """'tensorboard' names the TensorBoard sink, durable, appending to event files."""
    sink = make_sink("tensorboard", tmp_path)
    assert isinstance(sink, TensorBoardSink) and sink.durable


@pytest.fixture(scope="module")
def sweeps(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Sweeps:
    base = tmp_path_factory.getbasetemp() / "sink_sweeps"
    base.mkdir(exist_ok=True)
    return run_sweeps(base)


def _pairs(sweeps: Sweeps) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    ours, theirs = trial_dirs(sweeps.bus_exp), trial_dirs(sweeps.tune_exp)
    assert len(ours) == len(theirs) == 2
    return [(read_tensorboard(o), read_tensorboard(t)) for o, t in zip(ours, theirs)]


def test_sweep_scalars_match_tunes_tags_steps_and_values(sweeps: Sweeps) -> None:
    """Same scalar tags, steps and values as TBXLoggerCallback on the same sweep (timings aside)."""
    pairs = _pairs(sweeps)
    assert [[s for s, _ in ours["scalars"]["ray/tune/loss"]] for ours, _ in pairs] == [
        [1, 2, 3, 4], [10, 20, 30]]  # training_iteration; timesteps_total in the failing trial
    for ours, theirs in pairs:
        assert sorted(ours["scalars"]) == sorted(theirs["scalars"])
        assert "ray/tune/ok" in ours["scalars"] and "ray/tune/nan" not in ours["scalars"]
        for tag, points in theirs["scalars"].items():
            got = ours["scalars"][tag]
            assert [s for s, _ in got] == [s for s, _ in points], tag
            if tag not in VOLATILE:
                assert got == points, tag


def test_sweep_images_and_histograms_match_tune(sweeps: Sweeps) -> None:
    """Images (bytes, sizes, steps) and histograms (buckets, sums) equal Tune's."""
    for ours, theirs in _pairs(sweeps):
        assert len(theirs["images"]) == 2 and len(theirs["histograms"]) == 2
        assert ours["images"] == theirs["images"]
        assert ours["histograms"] == theirs["histograms"]


def test_sweep_hparams_plugin_data_matches_tune(sweeps: Sweeps) -> None:
    """The hparams experiment, session start and end summaries equal Tune's, for the failed trial too."""
    for ours, theirs in _pairs(sweeps):
        assert len(theirs["hparams"]) == 3
        assert ours["hparams"] == theirs["hparams"]
