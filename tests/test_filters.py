"""Filters: callables from events to events, checked at construction."""

from __future__ import annotations

import pytest

from pipeline.collector.filters import DropKeys, KeepKinds, apply_filters
from pipeline.wire.events import Event


def _event(kind: str, payload: dict[str, object]) -> Event:
    return Event(kind, "p", 0, 0.0, "e", "t", "d", payload)


def test_drop_keys_strips_results_only_and_leaves_the_input_alone() -> None:
    """DropKeys removes keys from results, not from other kinds, without mutating the original."""
    result = _event("result", {"config": {}, "loss": 1})
    start = _event("trial_start", {"config": {}})
    out = DropKeys(["config"])([result, start])
    assert out[0].payload == {"loss": 1} and out[1] is start
    assert result.payload == {"config": {}, "loss": 1}


def test_filters_chain_in_order() -> None:
    """apply_filters runs each filter on the previous one's output."""
    events = [_event("result", {"a": 1, "b": 2}), _event("trial_start", {})]
    out = apply_filters([KeepKinds(["result"]), DropKeys(["a"])], events)
    assert [(e.kind, e.payload) for e in out] == [("result", {"b": 2})]


def test_bad_filter_arguments_raise_with_the_value() -> None:
    """Unknown kinds and empty key lists are refused at construction."""
    with pytest.raises(ValueError, match="nope"):
        KeepKinds(["nope"])
    with pytest.raises(ValueError):
        DropKeys([])
