"""``log`` events: routed to the sinks that write them, and written where a Tune user looks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.testing import event
from pipeline.wire.codec import decode_event, encode_event
from pipeline.wire.events import Event
from sinks.base import Sink, TrialFiles, TrialRef, close_all, deliver
from sinks.json import JsonSink
from sinks.tensorboard import TensorBoardSink


def _event(kind: str, seq: int, payload: dict[str, Any]) -> Event:
    return event(kind, payload, seq=seq, ts=100.0 + seq, trial_dir="dir_t1")


def _log(seq: int, step: int, values: dict[str, Any], rank: int = 0, world_size: int = 1) -> Event:
    return _event("log", seq, {"step": step, "rank": rank, "world_size": world_size, "values": values})


class ResultsOnlySink(Sink):
    """Records every call; takes no ``log`` events, as a sink written before the kind."""

    name = "results-only"
    durable = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        self.calls.append(("open", start is not None))

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        self.calls.append(("results", len(results)))

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        self.calls.append(("close", end is not None))

    def flush(self) -> None:
        self.calls.append(("flush", None))

    def close(self) -> None:
        self.calls.append(("close_sink", None))


def test_a_log_event_round_trips_the_codec_with_its_arrays() -> None:
    """The new kind decodes to the same step, rank and values, numpy arrays included."""
    image = np.zeros((3, 4, 4), dtype=np.uint8)
    data = encode_event("log", "w1", 0, 1.0, "exp", "t1", "dir_t1",
                        {"step": 7, "rank": 1, "world_size": 2, "values": {"img": image, "x": 0.5}})
    event = decode_event(data)
    assert event.kind == "log" and event.payload["step"] == 7 and event.payload["rank"] == 1
    assert np.array_equal(event.payload["values"]["img"], image)


def test_a_sink_without_write_logs_never_sees_log_events_nor_opens_a_trial_for_them() -> None:
    """Sinks from before the kind (CSV) are called exactly as if the log events were not there."""
    sink = ResultsOnlySink()
    deliver(sink, [_log(0, 0, {"x": 1.0}), _log(1, 1, {"x": 2.0})], TrialFiles(Path("/nonexistent")))
    assert sink.calls == [("flush", None)]


def test_json_sink_writes_one_worker_log_line_per_call_and_leaves_result_json_alone(tmp_path: Path) -> None:
    """worker_log.json gets step, rank, timestamp and values per call; result.json only results."""
    sink, trials = JsonSink(tmp_path), TrialFiles(tmp_path)
    events = [_event("trial_start", 0, {"config": {"lr": 0.1}}),
              _log(1, 0, {"loss": 1.5, "nested": {"a": 1}}),
              _event("result", 2, {"training_iteration": 1, "loss": 9.0}),
              _log(3, 5, {"loss": 0.5}, rank=1, world_size=2),
              _event("trial_complete", 4, {})]
    deliver(sink, events, trials)
    close_all(sink, trials)
    trial_dir = tmp_path / "exp" / "dir_t1"
    lines = [json.loads(line) for line in (trial_dir / "worker_log.json").read_text().splitlines()]
    assert lines == [{"step": 0, "rank": 0, "timestamp": 101.0, "values": {"loss": 1.5, "nested": {"a": 1}}},
                     {"step": 5, "rank": 1, "timestamp": 103.0, "values": {"loss": 0.5}}]
    results = (trial_dir / "result.json").read_text().splitlines()
    assert [json.loads(r)["loss"] for r in results] == [9.0]


def test_json_sink_writes_a_train_runs_failure_to_error_txt(tmp_path: Path) -> None:
    """An end event carrying ``error`` text (a Train run) leaves it in error.txt."""
    sink, trials = JsonSink(tmp_path), TrialFiles(tmp_path)
    deliver(sink, [_event("trial_start", 0, {}), _event("trial_error", 1, {"error": "rank 1: boom"})], trials)
    close_all(sink, trials)
    assert (tmp_path / "exp" / "dir_t1" / "error.txt").read_text() == "rank 1: boom\n"


@pytest.mark.parametrize("world_size, tag", [(1, "loss"), (2, "loss/rank1")])
def test_tensorboard_writes_logs_at_their_step_under_the_users_tag(tmp_path: Path, world_size: int,
                                                                    tag: str) -> None:
    """Scalars at the call's step, tag as given (``/rank<k>`` only with several ranks); images too."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink, trials = TensorBoardSink(tmp_path), TrialFiles(tmp_path)
    image = np.zeros((3, 8, 8), dtype=np.uint8)
    logs = [_log(i, 10 * i, {"loss": float(i), "img": image, "hist": np.arange(10.0)},
                 rank=1, world_size=world_size) for i in range(3)]
    deliver(sink, [_event("trial_start", 99, {}), *logs], trials)
    close_all(sink, trials)
    acc = EventAccumulator(str(tmp_path / "exp" / "dir_t1"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars(tag)] == [(0, 0.0), (10, 1.0), (20, 2.0)]
    suffix = tag[len("loss"):]
    assert f"img{suffix}" in acc.Tags()["images"] and f"hist{suffix}" in acc.Tags()["histograms"]
    assert not any(t.startswith("ray/tune/") for t in acc.Tags()["scalars"])


@pytest.mark.slow
def test_aim_tracks_logs_under_the_users_names_with_the_rank_in_the_context(tmp_path: Path) -> None:
    """Finite scalars of each call at its step, ``rank`` in the context; arrays and NaN left out."""
    from sinks.aim import AimSink
    from tests.readers import read_aim

    sink, trials = AimSink(tmp_path), TrialFiles(tmp_path)
    logs = [_log(i, 10 + i, {"loss": float(i), "nan": float("nan"), "img": np.zeros((3, 2, 2))},
                 rank=i % 2, world_size=2) for i in range(1, 5)]
    deliver(sink, [_event("trial_start", 0, {}), *logs], trials)
    close_all(sink, trials)
    [run] = read_aim(tmp_path / "exp")
    assert sorted(run["metrics"]) == ['loss|{"rank": 0}', 'loss|{"rank": 1}']
    # Sets: tests/aim_dump.py's read-back pairs steps and values in different orders when
    # steps are sparse (a bare aim.Run tracked by hand reads back the same way).
    for rank, steps, values in ((1, {11, 13}, {1.0, 3.0}), (0, {12, 14}, {2.0, 4.0})):
        metric = run["metrics"][f'loss|{{"rank": {rank}}}']
        assert set(metric["steps"]) == steps and set(metric["values"]) == values
