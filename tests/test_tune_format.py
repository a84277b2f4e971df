"""JSON and CSV rendering read back exactly as Tune's own loggers' output does."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
from ray.tune.utils import flatten_dict
from ray.tune.utils.util import SafeFallbackEncoder

from pipeline.wire.codec import decode_frame, encode_event, frame_events
from sinks.tune_format import flatten, json_line, json_lines, params_json


def _tune(value: dict[str, object]) -> str:
    return json.dumps(value, cls=SafeFallbackEncoder)


def _same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_the_nan_float32_cases_read_back_as_tune_wrote_them() -> None:
    """The issue's exact case: NaN, float32 NaN, inf and float32(0.1) as Tune writes them."""
    value = {"a": float("nan"), "b": np.float32("nan"), "f": float("inf"), "h": np.float32(0.1)}
    assert _tune(value) == '{"a": NaN, "b": "null", "f": Infinity, "h": 0.10000000149011612}'
    ours = json.loads(json_line(value))
    assert math.isnan(ours["a"]) and ours["b"] == "null" and ours["f"] == math.inf
    assert ours["h"] == 0.10000000149011612
    assert _same(ours, json.loads(_tune(value)))


def test_values_after_a_wire_trip_render_like_tune() -> None:
    """numpy, nested, tuple, bytes, big int and odd values: same values as Tune's line."""
    value = {
        "i": 1, "f": 0.5, "s": "x", "n": None, "b": True, "neg_inf": -math.inf,
        "np": {"f64": np.float64(0.1), "f64nan": np.float64("nan"), "f16": np.float16(1.5),
               "i32": np.int32(-4), "u8": np.uint8(7), "bool": np.bool_(False),
               "c": np.complex64(1 + 2j), "arr": np.array([[1.5, np.nan], [np.inf, 0.0]])},
        "tuple": (1, "a", 2.5), "list": [1, [2, float("nan")]], "bytes": b"ab",
        "big": 2**70, "set": {3}, 7: "int key",
    }
    frame = frame_events("p", 0, [encode_event("result", "p", 0, 0.0, "e", "t", "d", value)])
    decoded = decode_frame(frame).events[0].payload
    assert _same(json.loads(json_line(decoded)), json.loads(_tune(value)))


_ODD_RESULTS = [
    {"a": math.nan, "b": None}, {"c": [1, -math.inf], "d": (2.5, math.inf)}, {"s": "\x00tunebus\x00"},
    {"n": None, "s": "null"}, {"big": 2**70}, {"arr": np.array([1.0, np.nan]), "f32": np.float32("nan")},
    {"l": [{"a": 1}, {"b": 2}], "lines": "a\nb"}, {7: "int key", "k": {1.5: 2}}, {},
    {"marker": [1, "\x00tunebus\x00", 2]}, {"i": 1, "f": 0.1, "nested": {"x": {"y": 2}}},
]


def test_a_batch_of_lines_is_each_result_s_line() -> None:
    """json_lines writes what json_line writes for each result, for every pair of odd results."""
    batches = [[a, b] for a in _ODD_RESULTS for b in _ODD_RESULTS] + [_ODD_RESULTS, _ODD_RESULTS[:1], []]
    for batch in batches:
        assert json_lines(batch) == b"".join(json_line(r) + b"\n" for r in batch), batch


def test_params_json_is_indented_and_sorted_like_tune() -> None:
    """params.json: same parsed content as Tune's indent-2, sorted-keys file."""
    config = {"b": 1, "a": {"y": np.float32(0.5), "x": [1, 2]}, "c": float("nan")}
    ours = params_json(config).decode()
    theirs = json.dumps(config, indent=2, sort_keys=True, cls=SafeFallbackEncoder)
    assert _same(json.loads(ours), json.loads(theirs))
    assert ours.splitlines()[1] == '  "a": {'


def test_flatten_matches_rays_flatten_dict_including_order() -> None:
    """Nested keys joined by '/', appended in the order Ray's flatten_dict gives."""
    value = {"a": {"b": {"c": 1}, "d": 2}, "e": 3, "f": {}, "g": {"h": [1, {"i": 2}]}}
    assert list(flatten(value).items()) == list(flatten_dict(value, delimiter="/").items())


def test_csv_cells_are_what_tunes_dictwriter_writes() -> None:
    """The csv module renders our decoded values exactly as Tune's CSV logger renders the originals."""
    value = {"f32": np.float32(0.1), "arr": np.array([1, 2]), "t": (1, 2), "nan": float("nan"),
             "n": None, "b": np.bool_(True), "when": b"x"}
    frame = frame_events("p", 0, [encode_event("result", "p", 0, 0.0, "e", "t", "d", value)])
    decoded = decode_frame(frame).events[0].payload

    def row(v: dict[str, object]) -> str:
        buf = io.StringIO()
        csv.DictWriter(buf, list(v)).writerow(v)
        return buf.getvalue()

    assert row(decoded) == row(value)
