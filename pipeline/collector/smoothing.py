"""The seed's two stateful filters: an EMA written beside each value, and store-then-log windows."""

from __future__ import annotations

import base64
import math
import re
from typing import Any

import numpy as np

from pipeline.collector.filters import PerTrial
from pipeline.collector.metric_keys import (
    STEP_KEYS,
    NameMatch,
    StepKept,
    is_number,
    map_leaves,
    matching_leaves,
    metrics_of,
    with_leaves,
    with_metrics,
)
from pipeline.wire.codec import decode_event, encode_stored
from pipeline.wire.events import Event, Kind

__all__ = ["Aggregate", "Smooth", "compile_regex", "regex_match"]

WARM_UP = 0.9
"""How fast the smoothing coefficient anneals from 0 to the one asked for (the seed's warm-up)."""
STATS = ("mean", "std", "median", "max", "min")
RESULT = Kind.RESULT.value


def compile_regex(what: str, pattern: object) -> re.Pattern[str]:
    """``pattern`` compiled, or a ValueError that quotes it."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"{what} needs a regular expression, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None


def regex_match(what: str, pattern: object) -> NameMatch:
    """Flat names in which ``pattern`` is found (``re.search``, as the seed)."""
    regex = compile_regex(what, pattern)
    return NameMatch(regex.search, regex.pattern)


class Smooth(PerTrial):
    """The seed's ``SmoothingFilter``: an EMA of each finite number whose flat name matches.

    Per (trial, key), with ``c`` starting at 0: ``smoothed = value * (1 - c) + smoothed * c``,
    then ``c = c * 0.9 + coeff * 0.1``. Written beside the raw value (at the end of its dict,
    as the seed adds it) as ``<key>_smoothed_<coeff>``. A NaN or infinite value is not
    smoothed and leaves the EMA as it was.
    """

    def __init__(self, pattern: object, coeff: float = 0.9) -> None:
        super().__init__()
        self.matches = regex_match("smooth", pattern)
        if not (is_number(coeff) and 0 <= coeff < 1):
            raise ValueError(f"smooth coeff must be a number from 0 up to (not including) 1, got {coeff!r}")
        self.coeff = float(coeff)
        self.suffix = f"_smoothed_{self.coeff}"

    def __str__(self) -> str:
        return f"smooth={self.matches.text} coeff={self.coeff}"

    def result(self, stream: str, event: Event, metrics: dict[Any, Any]) -> list[Event]:
        added: dict[tuple[Any, ...], dict[Any, float]] = {}
        for path, key, name, value in matching_leaves(metrics, self.matches):
            number = _finite(value)
            if number is None:
                continue
            emas: dict[str, list[float]] = self.trials.setdefault(stream, {})
            smoothed_name = name + self.suffix
            previous, c = emas.get(smoothed_name, (0.0, 0.0))
            smoothed = number * (1 - c) + previous * c
            emas[smoothed_name] = [smoothed, c * WARM_UP + self.coeff * (1 - WARM_UP)]
            added.setdefault(path, {})[f"{key}{self.suffix}"] = smoothed
        if not added:
            return [event]
        return [with_metrics(event, with_leaves(metrics, added))]

    def state(self) -> Any:
        return {trial: dict(emas) for trial, emas in self.trials.items()}

    def restore(self, state: Any) -> None:
        self.trials = {trial: dict(emas) for trial, emas in state.items()}


class Aggregate(PerTrial):
    """The seed's ``AggregateFilter``, store then log: one result per window of a trial's results.

    A window opens at a trial's result and closes after ``window`` results, or before the
    first result at least ``window_s`` seconds (event time) after the one that opened it.
    It is written as its last result, with every number whose flat name matches (step
    keys aside) replaced by ``<key>_mean``, ``_std``, ``_median``, ``_max``, ``_min`` over
    the window's results that have it; other keys keep the last result's value. A trial's
    end (or its experiment's) writes its open window first.
    """

    def __init__(self, pattern: object, window: int | None = None, window_s: float | None = None) -> None:
        super().__init__()
        self.matches = regex_match("aggregate", pattern)
        if window is None and window_s is None:
            raise ValueError("aggregate needs a window (results) or window_s (seconds), or both")
        if window is not None and not (type(window) is int and window >= 1):
            raise ValueError(f"aggregate window must be a whole number of results >= 1, got {window!r}")
        if window_s is not None and not (is_number(window_s) and 0 < window_s < math.inf):
            raise ValueError(f"aggregate window_s must be a number of seconds > 0, got {window_s!r}")
        self.window = window
        self.window_s = window_s
        self._last: dict[str, Event] = {}

    def __str__(self) -> str:
        size = [f"window={self.window}"] if self.window is not None else []
        size += [f"window_s={self.window_s:g}"] if self.window_s is not None else []
        return f"aggregate={self.matches.text} {' '.join(size)}"

    def result(self, stream: str, event: Event, metrics: dict[Any, Any]) -> list[Event]:
        out: list[Event] = []
        open_ = self.trials.get(stream)
        if open_ is not None and self.window_s is not None and event.ts - open_["start"] >= self.window_s:
            out += self.end(stream)
            open_ = None
        if open_ is None:
            open_ = self.trials[stream] = {"start": event.ts, "count": 0, "values": {}}
        open_["count"] += 1
        self._last[stream] = event
        self._store(open_["values"], metrics, event.kind == RESULT)
        if self.window is not None and open_["count"] >= self.window:
            out += self.end(stream)
        return out

    def _store(self, values: dict[str, Any], tree: dict[Any, Any], steps_at_top: bool) -> None:
        """Append each matching number of ``tree`` to ``values[flat name] = [path, numbers]``."""
        for path, key, name, value in matching_leaves(tree, self.matches):
            if is_number(value) and (path or not steps_at_top or key not in STEP_KEYS):
                try:
                    number = float(value)
                except OverflowError:  # an int past a float's range: carried as the last value
                    continue
                values.setdefault(name, [[*path, key], []])[1].append(number)

    def end(self, stream: str) -> list[Event]:
        open_ = self.trials.pop(stream, None)
        last = self._last.pop(stream, None)
        if open_ is None or last is None:
            return []
        values: dict[str, Any] = open_["values"]
        written: set[str] = set()

        def aggregate(key: Any, name: str, value: Any) -> list[tuple[Any, Any]]:
            numbers = values.get(name)
            if numbers is None or not is_number(value):
                return [(key, value)]
            written.add(name)
            return _stats(key, numbers[1])

        payload = map_leaves(metrics_of(last) or {}, aggregate)
        for name, (path, numbers) in values.items():  # matched earlier in the window, not in its last result
            if name not in written:
                node = payload
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node.update(_stats(path[-1], numbers))
        return [with_metrics(last, payload)]

    def state(self) -> Any:
        return {trial: _encoded(self._last[trial], open_) for trial, open_ in self.trials.items()}

    def restore(self, state: Any) -> None:
        self.trials, self._last = {}, {}
        for trial, text in state.items():
            self._last[trial], self.trials[trial] = _decoded(text)


def _finite(value: Any) -> float | None:
    """``value`` as a float if it is a finite number, else None."""
    if not is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past a float's range
        return None
    return number if math.isfinite(number) else None


def _stats(key: Any, numbers: list[float]) -> list[tuple[Any, Any]]:
    array = np.asarray(numbers, dtype=np.float64)
    values = (array.mean(), array.std(), np.median(array), array.max(), array.min())
    return [(f"{key}_{stat}", float(v)) for stat, v in zip(STATS, values)]


def _encoded(last: Event, open_: dict[str, Any]) -> str:
    """An open window and its last result as wire bytes in base64: exact for arrays, NaN and
    the other values JSON cannot hold; step keys a filter left out travel beside the payload."""
    window = {"p": dict(last.payload), "s": dict(getattr(last.payload, "steps", {})), "w": open_}
    return base64.b64encode(encode_stored(last._replace(payload=window))).decode()


def _decoded(text: str) -> tuple[Event, dict[str, Any]]:
    event = decode_event(base64.b64decode(text))
    window = event.payload
    payload = StepKept(window["p"], window["s"]) if window["s"] else window["p"]
    return event._replace(payload=payload), window["w"]
