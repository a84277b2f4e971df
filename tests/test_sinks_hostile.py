"""Schema-valid but odd results never make a sink raise: a sink that raises on data would stall forever."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.wire.codec import decode_frame, encode_event, frame_events
from sinks import make_sink
from sinks.base import TrialFiles, close_all, deliver

ODD_RESULTS: list[dict[Any, Any]] = [
    {"x": 2**70}, {"x": -2**80}, {b"k": 1}, {5: {6: 7}}, {1.5: 2.0}, {"n": {(1, 2): 3}},
    {"b": b"\x00\xff"}, {"a": np.array(3.0)}, {"a": np.zeros((0, 3))}, {"c": np.complex64(1 + 2j)},
    {"s": np.array(["a", "b"])}, {"a": np.zeros((1, 2, 3, 4, 5), dtype=np.float32)},
    {"d": {"a": {"b": {"c": {"d": 1.0}}}}}, {"config": 5}, {"x": 1.0, "epoch": "e"},
    {"x": 1.0, "context": [1, 2]}, {"x": 1.0, "timesteps_total": "many"},
]


def _events() -> list[Any]:
    start = {"config": {"lr": 0.1}, "evaluated_params": {"lr": 0.1}}
    encoded = [encode_event("trial_start", "p", 0, 1.0, "e", "t", "d", start)]
    encoded += [encode_event("result", "p", i, 1.0, "e", "t", "d", {**r, "training_iteration": i})
                for i, r in enumerate(ODD_RESULTS, start=1)]
    encoded.append(encode_event("trial_complete", "p", len(encoded), 1.0, "e", "t", "d",
                                {"evaluated_params": {"lr": 0.1}}))
    frame = decode_frame(frame_events("p", 0, encoded))
    assert frame.faults == []
    return frame.events


@pytest.mark.parametrize("name", ["json", "csv", "tensorboard", "aim"])
def test_odd_results_are_written_without_raising(tmp_path: Path, name: str) -> None:
    """Big ints, bytes/tuple/float keys, 0-d and empty arrays, complex, deep nests: no sink raises."""
    sink, files = make_sink(name, tmp_path), TrialFiles(tmp_path)
    deliver(sink, _events(), files)
    close_all(sink, files)
    if name == "json":
        lines = (tmp_path / "e" / "d" / "result.json").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        assert [r["training_iteration"] for r in rows] == list(range(1, len(ODD_RESULTS) + 1))
        assert rows[2]["b'k'"] == 1 and rows[5]["n"] == {"(1, 2)": 3}
