"""progress.csv rows: the fast path writes byte for byte what csv.writer and Tune's CSV logger write."""

from __future__ import annotations

import csv
import enum
import math
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.logger import CSVLoggerCallback

from pipeline.wire.events import Event
from sinks.base import TrialFiles, close_all, deliver
from sinks.csv import CsvSink
from sinks.csv_rows import Layout, csv_lines
from sinks.tune_format import flatten

SKIP = frozenset({"config"})


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.Enum):
    HIGH = 3


STRINGS = ["", "plain", "a,b", 'say "hi"', "two\nlines", "cr\rlf", "[0.00001]", "x,0.00001,y",
           "e-5", "a,e-5,b", "null", "true", "False", "nullable", "],[", "tab\there", "ünï", "\\"]
ODD = [None, True, False, 0, -7, 2**63 - 1, 2**64, -(2**70), np.float64(0.1), np.float32(0.1),
       np.int64(3), np.bool_(True), Color.RED, Level.HIGH, [1, 2], (3,), b"by", math.nan, math.inf,
       -math.inf, -0.0, 0.0]


def _float(rng: random.Random) -> float:
    """A float from anywhere: every magnitude and notation repr has, and plain metric values."""
    pick = rng.random()
    if pick < 0.3:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        return value if math.isfinite(value) else 1.5
    if pick < 0.8:
        return rng.choice([-1, 1]) * rng.random() * 10.0 ** rng.randint(-12, 20)
    return rng.randint(-10**6, 10**6) / 10 ** rng.randint(0, 9)


def _reference(rows: list[tuple[Any, ...]]) -> str:
    lines: list[str] = []
    writer = csv.writer(type("Lines", (), {"write": staticmethod(lines.append)})())
    writer.writerows(rows)
    return "".join(lines)


def test_csv_lines_writes_what_csv_writer_writes() -> None:
    """Floats of every magnitude, odd strings and odd values: the same text as csv.writer."""
    rng = random.Random(13)
    batches = [[tuple(_float(rng) for _ in range(20)) for _ in range(50)] for _ in range(40)]
    pool = [*STRINGS, *ODD]
    batches += [[(_float(rng), rng.choice(pool), rng.randint(0, 9), rng.choice(pool)) for _ in range(3)]
                for _ in range(400)]
    numbers = [None, True, False, 0, -7, 2**63 - 1, math.nan, math.inf, -0.0, 1e-05, 0.00012, 1.5e-07]
    batches += [[(_float(rng), rng.choice(numbers), rng.choice(numbers)) for _ in range(3)]
                for _ in range(200)]
    batches += [[(value, value, 1.0)] for value in pool] + [[("",)], [(1.5,)], []]
    batches.append([(10.00001, -100.000012, 0.00001, -0.00009, 1.5e-07, -2e-9, 1e-10, 1e16, 1e-4)])
    for rows in batches:
        assert csv_lines(rows) == _reference(rows), rows


def test_layout_takes_its_own_shape_and_refuses_others() -> None:
    """Cells write as flatten's row in column order; another shape at any level gives None."""
    base = {"b": 1.0, "n": {"y": 2, "deep": {"z": None}}, "a": True, "config": {"lr": 0.1}}
    columns = ["a", "extra", "b", "n/y", "n/deep/z"]
    layout = Layout.build(base, SKIP, columns)
    assert layout is not None
    same = {"n": {"deep": {"z": "s"}, "y": 1e-5}, "config": 5, "a": None, "b": False}
    for result in (base, same):
        want = [flatten(result, skip=SKIP).get(c, "") for c in columns]
        got = layout.cells(result)
        assert got is not None and csv_lines([got]) == _reference([tuple(want)])
    others = [{**base, "c": 1}, {k: v for k, v in base.items() if k != "config"},
              {**base, "n": {"y": 2, "deep": 7}}, {**base, "n": {"y": 2, "deep": {"z": 1, "w": 2}}},
              {**base, "n": 3}, {"b": 1.0, "n": {"y": 2, "deep": {"z": None}}, "a": True, "cfg": 1}]
    assert [layout.cells(r) for r in others] == [None] * len(others)
    assert Layout.build({"x": 1, "new": 2}, SKIP, ["x"]) is None
    assert Layout.build({"n/y": 1, "n": {"y": 2}}, SKIP, ["n/y"]) is None  # flatten keeps one of two


def _events(results: list[dict[str, Any]]) -> list[Event]:
    events = [Event("trial_start", "p", 0, 0.0, "e", "t", "d", {"config": {}})]
    events += [Event("result", "p", i, 0.0, "e", "t", "d", r) for i, r in enumerate(results, start=1)]
    return events


def _through_sink(tmp_path: Path, results: list[dict[str, Any]], batch: int) -> bytes:
    sink, files = CsvSink(tmp_path), TrialFiles(tmp_path)
    events = _events(results)
    for at in range(0, len(events), batch):
        deliver(sink, events[at:at + batch], files)
    close_all(sink, files)
    return (tmp_path / "e" / "d" / "progress.csv").read_bytes()


def test_progress_csv_is_byte_identical_to_tunes(tmp_path: Path) -> None:
    """One shape whose values vary (floats, NaN, None, bools, quoted strings): Tune's bytes exactly."""
    rng = random.Random(7)
    pool = [*STRINGS, *ODD[:8], 1.5, "x"]
    results = [{"loss": _float(rng), "done": i % 5 == 0, "ckpt": None if i % 7 else f"c_{i}",
                "tag": rng.choice(STRINGS), "i": i, "odd": rng.choice(pool), "config": {"lr": 0.1},
                "nested": {"val": _float(rng), "w": {"n": rng.choice([math.nan, 1e-7, 2.0, None])}}}
               for i in range(300)]

    class FakeTrial:
        local_path = str(tmp_path / "tune")
        checkpoint = None

        def init_local_path(self) -> None:
            Path(self.local_path).mkdir(parents=True, exist_ok=True)

    tune, trial = CSVLoggerCallback(), FakeTrial()
    for i, result in enumerate(results):
        tune.log_trial_result(i, trial, result)
    tune.log_trial_end(trial)
    assert _through_sink(tmp_path / "ours", results, 64) == (tmp_path / "tune" / "progress.csv").read_bytes()


def test_changing_shapes_write_every_column_as_before(tmp_path: Path) -> None:
    """Late keys widen, nested dicts come and go, a value turns into a dict: the rows flatten gives."""
    shapes = [{"a": 1.0, "n": {"x": 1}}, {"a": 2.0, "n": {"x": 2}, "late": "l"}, {"n": {"x": 3}, "a": None},
              {"a": {"deep": 1e-9}, "n": {"x": 4}}, {"a": 5.0, "n": 6}, {"a": 7.0, "n": {"x": 8, "y": True}}]
    results = [dict(shapes[(i // 3) % len(shapes)], i=i) for i in range(60)]
    columns: list[str] = []
    for result in results:
        columns += [k for k in flatten(result, skip=SKIP) if k not in columns]
    rows = [tuple(flatten(r, skip=SKIP).get(c, "") for c in columns) for r in results]
    want = _reference([tuple(columns), *rows]).encode()
    for batch in (1, 4, 100):
        assert _through_sink(tmp_path / str(batch), results, batch) == want
