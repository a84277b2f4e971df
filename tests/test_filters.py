"""Filters: callables from events to events, checked at construction, their state JSON-able."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

from pipeline.collector.filter_spec import parse_filter_flag, parse_filters
from pipeline.collector.filters import (
    DropKeys,
    KeepKeys,
    KeepKinds,
    NoneFilter,
    apply_filters,
    filter_states,
    restore_filters,
)
from pipeline.collector.gates import EveryN, EveryS, LogGate
from pipeline.collector.smoothing import Aggregate, Smooth
from pipeline.testing import event
from pipeline.wire.events import Event


def _event(kind: str, payload: dict[str, Any], trial: str = "t", ts: float = 0.0, seq: int = 0) -> Event:
    return event(kind, payload, seq=seq, ts=ts, experiment="e", trial=trial)


def _results(values: list[dict[str, Any]], trial: str = "t", dt: float = 1.0) -> list[Event]:
    return [_event("result", {**v, "training_iteration": i}, trial, ts=i * dt, seq=i)
            for i, v in enumerate(values, start=1)]


def test_drop_keys_strips_results_only_and_leaves_the_input_alone() -> None:
    """DropKeys removes keys from results, not from other kinds, without mutating the original."""
    result = _event("result", {"config": {"lr": 1}, "loss": 1})
    start = _event("trial_start", {"config": {}})
    out = DropKeys(["config"])([result, start])
    assert out[0].payload == {"loss": 1} and out[1] is start
    assert result.payload == {"config": {"lr": 1}, "loss": 1}


def test_filters_chain_in_order() -> None:
    """apply_filters runs each filter on the previous one's output."""
    events = [_event("result", {"a": 1, "b": 2}), _event("trial_start", {})]
    out = apply_filters([KeepKinds(["result"]), DropKeys(["a"])], events)
    assert [(e.kind, e.payload) for e in out] == [("result", {"b": 2})]


def test_bad_filter_arguments_raise_with_the_value() -> None:
    """Unknown kinds and empty key lists are refused at construction."""
    with pytest.raises(ValueError, match="nope"):
        KeepKinds(["nope"])
    with pytest.raises(ValueError, match="non-empty glob"):
        DropKeys([])


def test_keep_globs_flat_names_and_the_step_still_decides() -> None:
    """keep matches flattened names (a parent's name keeps its dict); the step keys answer by name only."""
    payload = {"loss": 1.0, "acc": 0.5, "lr": 3, "info/x": 0, "nested": {"a": 1, "b": 2},
               "deep": {"q": {"loss": 4}}, "training_iteration": 7, "timesteps_total": 70}
    out = KeepKeys(["loss", "acc", "nested/a", "deep"])([_event("result", payload)])[0].payload
    assert out == {"loss": 1.0, "acc": 0.5, "nested": {"a": 1}, "deep": {"q": {"loss": 4}}}
    assert out.get("timesteps_total") == 70 and out["training_iteration"] == 7
    assert "training_iteration" not in out and orjson.loads(orjson.dumps(out)) == dict(out)


def test_drop_globs_and_later_filters_keep_the_step() -> None:
    """drop removes matching leaves and dicts; the step keys it drops survive a later smooth."""
    payload = {"loss": 1.0, "hist_a": [1], "hist_b": [2], "nested": {"a": 1, "b": 2}, "training_iteration": 3}
    chain = [DropKeys(["hist_*", "nested/b", "training_iteration"]), Smooth("loss", 0.9)]
    out = apply_filters(chain, [_event("result", payload)])[0].payload
    assert out == {"loss": 1.0, "loss_smoothed_0.9": 1.0, "nested": {"a": 1}}
    assert out["training_iteration"] == 3


def test_none_drops_none_and_nan_only() -> None:
    """none removes None and NaN values (Python or numpy), keeps infinities and arrays; emptied dicts go."""
    payload = {"a": None, "b": math.nan, "c": np.float32("nan"), "d": math.inf, "e": np.array([np.nan]),
               "f": {"g": None}, "h": 0}
    out = NoneFilter()([_event("result", payload)])[0].payload
    assert list(out) == ["d", "e", "h"]


def test_every_s_keeps_one_result_per_trial_per_window_of_event_time() -> None:
    """every_s keeps a trial's first result, then the first N seconds (event time) after."""
    events = _results([{}] * 12, dt=1.0) + _results([{}] * 3, trial="u", dt=10.0)
    kept = EveryS(5)(events)
    assert [(e.trial, e.ts) for e in kept] == [("t", 1.0), ("t", 6.0), ("t", 11.0),
                                               ("u", 10.0), ("u", 20.0), ("u", 30.0)]


def test_gates_follow_acme_periodic_and_logarithmic() -> None:
    """every_n keeps calls 0, n, 2n...; log keeps 0..9, 10, 20..90, 100, 200... per trial."""
    events = _results([{}] * 250)
    assert [e.seq - 1 for e in EveryN(100)(events)] == [0, 100, 200]
    logged = [e.seq - 1 for e in LogGate(10)(events)]
    assert logged == [*range(10), *range(10, 100, 10), 100, 200]


def test_smooth_is_the_seeds_ema_with_warm_up_per_trial_and_key() -> None:
    """smooth writes value*(1-c)+prev*c beside each match, c = c*0.9 + coeff*0.1 from 0."""
    values = [1.0, 2.0, 4.0, math.nan, 8.0]
    events = _results([{"loss": v, "eval": {"loss": -v}, "acc": v} for v in values])
    events.insert(2, _event("result", {"loss": 100.0}, trial="other"))
    out = Smooth("loss", 0.5)(events)
    expected, prev, c = [], 0.0, 0.0
    for v in values:
        if not math.isnan(v):
            prev, c = v * (1 - c) + prev * c, c * 0.9 + 0.5 * 0.1
        expected.append(prev)
    mine = [e.payload for e in out if e.trial == "t"]
    assert [p.get("loss_smoothed_0.5") for p in mine] == [*expected[:3], None, expected[4]]
    assert [p["eval"]["loss_smoothed_0.5"] for p in mine if "loss_smoothed_0.5" in p] == \
        [-x for i, x in enumerate(expected) if i != 3]
    assert list(mine[0]) == ["loss", "eval", "acc", "training_iteration", "loss_smoothed_0.5"]
    assert [e.payload["loss_smoothed_0.5"] for e in out if e.trial == "other"] == [100.0]


def test_aggregate_writes_window_statistics_and_the_last_other_values() -> None:
    """aggregate turns each window of N results into one: stats of matching numbers, last of the rest."""
    events = _results([{"loss": float(v), "label": f"r{v}", "n": {"r": v}} for v in [1, 2, 3, 4, 5]])
    out = Aggregate("loss|r$", window=2)([*events, _event("trial_complete", {})])
    assert [e.kind for e in out] == ["result", "result", "result", "trial_complete"]
    first = out[0].payload
    assert first == {"loss_mean": 1.5, "loss_std": 0.5, "loss_median": 1.5, "loss_max": 2.0, "loss_min": 1.0,
                     "label": "r2", "n": {"r_mean": 1.5, "r_std": 0.5, "r_median": 1.5, "r_max": 2.0,
                                          "r_min": 1.0}, "training_iteration": 2}
    assert out[2].payload["loss_mean"] == 5.0 and out[2].payload["training_iteration"] == 5  # flushed at end


def test_aggregate_time_windows_close_before_the_result_past_them() -> None:
    """With window_s, a result at least T seconds after the window's first starts the next window."""
    events = _results([{"loss": float(v)} for v in range(1, 8)], dt=1.0)
    out = Aggregate("loss", window_s=3)([*events, _event("experiment_end", {}, trial="")])
    assert [(e.payload["training_iteration"], e.payload["loss_mean"]) for e in out if e.kind == "result"] == \
        [(3, 2.0), (6, 5.0), (7, 7.0)]


def _chain() -> list[Any]:
    return [NoneFilter(), Smooth("loss", 0.9), EveryN(2), Aggregate("loss", window=3), EveryS(2.5)]


def test_a_chain_restored_from_its_json_state_writes_what_an_unbroken_one_writes() -> None:
    """State taken mid-window, through JSON, into a fresh chain: the rest comes out the same."""
    payloads = [{"loss": v * 1.5, "arr": np.arange(3), "nan": math.nan} for v in range(40)]
    events = _results(payloads, dt=0.75) + [_event("trial_complete", {})]
    whole = apply_filters(_chain(), events)
    first = _chain()
    head = apply_filters(first, events[:15])
    states = orjson.loads(orjson.dumps(filter_states(first)))
    second = _chain()
    assert restore_filters(second, states)
    tail = apply_filters(second, events[15:])
    assert [repr(e) for e in head + tail] == [repr(e) for e in whole]


def test_a_changed_chain_does_not_take_the_old_state() -> None:
    """restore_filters refuses the state of a different chain."""
    states = filter_states([Smooth("loss", 0.9)])
    assert not restore_filters([Smooth("loss", 0.5)], states)
    assert filter_states([KeepKeys(["a"])]) is None


def test_the_issue_example_parses_in_order() -> None:
    """The README's tables build keep then smooth, and every_s."""
    chain = parse_filters([{"keep": ["loss", "acc"]}, {"smooth": "loss", "coeff": 0.9}])
    assert [str(f) for f in chain] == ["keep=loss,acc", "smooth=loss coeff=0.9"]
    assert [str(f) for f in parse_filters([{"every_s": 5}])] == ["every_s=5"]
    assert [str(f) for f in parse_filters(["none", {"aggregate": "r", "window": 10, "window_s": 60},
                                           {"log": 10}, {"every_n": 3}, {"drop": "a,b"}])] == \
        ["none", "aggregate=r window=10 window_s=60", "log=10", "every_n=3", "drop=a,b"]


@pytest.mark.parametrize(("spec", "message"), [
    ([{"smoth": "loss"}], r"filter 1 \{'smoth': 'loss'\} names no filter; name one of keep, drop"),
    ([{"smooth": "loss["}], r"filter 1 \(smooth\): bad regular expression 'loss\['"),
    ([{"every_s": 5}, {"every_s": "soon"}], r"filter 2 \(every_s\): expected a number, got 'soon'"),
    ([{"every_s": -1}], r"every_s must be a number of seconds > 0, got -1"),
    ([{"smooth": "loss", "coeff": 1.5}], r"coeff must be a number from 0 up to"),
    ([{"smooth": "loss", "cof": 0.5}], r"unknown option 'cof'; its options: coeff"),
    ([{"aggregate": "loss"}], r"needs a window \(results\) or window_s"),
    ([{"every_n": 2.5}], r"every_n must be a whole number >= 1, got 2.5"),
    ([{"log": 1}], r"log must be a whole number >= 2"),
    ([{"keep": 3}], r"expected a list of glob patterns, got 3"),
    ([{"keep": ["a"], "drop": ["b"]}], r"names 2 filters \(keep, drop\)"),
    ({"every_s": 5}, r"filters must be a list of tables"),
])
def test_a_wrong_filter_is_one_readable_line(spec: Any, message: str) -> None:
    """Unknown names, bad regexes, bad numbers and stray options are one ValueError line naming the filter."""
    with pytest.raises(ValueError, match=message) as info:
        parse_filters(spec)
    assert "\n" not in str(info.value)


def test_the_flag_form_names_a_sink_and_a_table() -> None:
    """--filter SINK:NAME=VALUE[:OPTION=VALUE] reads as the same tables."""
    sink, table = parse_filter_flag("tensorboard:smooth=loss:coeff=0.9")
    assert (sink, table) == ("tensorboard", {"smooth": "loss", "coeff": "0.9"})
    assert [str(f) for f in parse_filters([table])] == ["smooth=loss coeff=0.9"]
    assert parse_filter_flag("aim:keep=loss,acc") == ("aim", {"keep": "loss,acc"})
    assert [str(f) for f in parse_filters([parse_filter_flag("json:none")[1]])] == ["none"]
    with pytest.raises(ValueError, match="SINK:NAME=VALUE"):
        parse_filter_flag("every_s=5")


def _log(step: int, rank: int, values: dict[str, Any], ts: float = 0.0) -> Event:
    payload = {"step": step, "rank": rank, "world_size": 2, "values": values}
    return Event("log", "w", step, ts, "e", "t", "t_dir", payload)


def test_worker_logs_are_filtered_in_their_values_per_rank() -> None:
    """On log events filters act on ``values``, with state per rank; the trial's end flushes every rank."""
    logs = [_log(s, r, {"loss": float(s + 10 * r), "gpu": 1}) for s in range(3) for r in (0, 1)]
    chain = [KeepKeys(["loss"]), Smooth("loss", 0.5), Aggregate("loss_smoothed", window=10)]
    out = apply_filters(chain, [*logs, _event("trial_complete", {})])
    assert [(e.kind, e.payload["rank"], e.payload["step"]) for e in out[:2]] == [("log", 0, 2), ("log", 1, 2)]
    assert out[0].payload["values"]["loss"] == 2.0 and "gpu" not in out[0].payload["values"]
    assert out[1].payload["values"]["loss_smoothed_0.5_max"] == Smooth("loss", 0.5)(
        [_log(s, 1, {"loss": float(s + 10)}) for s in range(3)])[-1].payload["values"]["loss_smoothed_0.5"]
    assert out[2].kind == "trial_complete"
