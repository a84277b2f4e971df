"""Filters as the config spells them: ``{ smooth = "loss", coeff = 0.9 }``, or ``--filter`` flags."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.collector.filters import DropKeys, Filter, KeepKeys, NoneFilter
from pipeline.collector.gates import EveryN, EveryS, LogGate
from pipeline.collector.settings import Kind, Setting
from pipeline.collector.smoothing import Aggregate, Smooth

__all__ = ["FILTERS", "FILTERS_SETTING", "FilterChain", "parse_filter_flag", "parse_filter_text",
           "parse_filters"]


def _patterns(value: Any) -> list[str]:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return value
    raise ValueError(f"expected a list of glob patterns, got {value!r}")


def _count(value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
    return value  # type: ignore[no-any-return] # the filter checks its type and range


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    return value


def _text(value: Any) -> Any:
    return value


def _flag(value: Any) -> bool:
    if value in (True, "true", ""):
        return True
    raise ValueError(f"expected true, got {value!r}")


Option = Callable[[Any], Any]

FILTERS: dict[str, tuple[Callable[..., Filter], Option, dict[str, Option]]] = {
    "keep": (KeepKeys, _patterns, {}),
    "drop": (DropKeys, _patterns, {}),
    "none": (lambda _: NoneFilter(), _flag, {}),
    "every_s": (EveryS, _number, {}),
    "every_n": (EveryN, _count, {}),
    "log": (LogGate, _count, {}),
    "smooth": (Smooth, _text, {"coeff": _number}),
    "aggregate": (Aggregate, _text, {"window": _count, "window_s": _number}),
}
"""Each filter's name, its class, how its own value converts, and its other options."""


def parse_filters(spec: Sequence[Mapping[str, Any] | str]) -> list[Filter]:
    """The filters ``spec`` names, in order; a ValueError of one line for the first wrong one.

    Each item is a table with one filter name (``{ every_s = 5 }``) and that filter's
    options, or a bare name (``"none"``).
    """
    if isinstance(spec, (str, Mapping)) or not isinstance(spec, Sequence):
        raise ValueError(f"filters must be a list of tables like {{ every_s = 5 }}, got {spec!r}")
    return [_one(i, item) for i, item in enumerate(spec, start=1)]


def _one(i: int, item: Mapping[str, Any] | str) -> Filter:
    if isinstance(item, str):
        item = {item: True}
    if not isinstance(item, Mapping):
        raise ValueError(f"filter {i} must be a table like {{ every_s = 5 }}, got {item!r}")
    names = [key for key in item if key in FILTERS]
    if len(names) != 1:
        what = "no filter" if not names else f"{len(names)} filters ({', '.join(names)})"
        raise ValueError(f"filter {i} {dict(item)!r} names {what}; name one of {', '.join(FILTERS)}")
    name = names[0]
    build, convert, options = FILTERS[name]
    unknown = [key for key in item if key != name and key not in options]
    if unknown:
        known = ", ".join(options) or "none"
        raise ValueError(f"filter {i} ({name}): unknown option {unknown[0]!r}; its options: {known}")
    try:
        kwargs = {key: options[key](value) for key, value in item.items() if key != name}
        return build(convert(item[name]), **kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"filter {i} ({name}): {exc}") from None


def parse_filter_text(text: str) -> dict[str, str]:
    """``NAME[=VALUE][:OPTION=VALUE...]`` as the table ``parse_filters`` takes (values still text).

    ``keep=loss,acc``, ``smooth=loss:coeff=0.9``, ``every_s=5``, ``none``.
    """
    table: dict[str, str] = {}
    for part in text.strip().split(":"):
        key, _, value = part.partition("=")
        if not key.strip():
            raise ValueError(f"expected NAME=VALUE[:OPTION=VALUE], like smooth=loss:coeff=0.9; got {text!r}")
        table[key.strip()] = value
    return table


def parse_filter_flag(text: str) -> tuple[str, dict[str, str]]:
    """``SINK:NAME[=VALUE][:OPTION=VALUE...]`` (``--filter``) as the sink and its filter's table.

    ``tensorboard:keep=loss,acc``, ``tensorboard:smooth=loss:coeff=0.9``, ``aim:every_s=5``.
    """
    sink, _, rest = text.partition(":")
    if not sink.strip() or "=" in sink or not rest.strip():
        raise ValueError(f"--filter takes SINK:NAME=VALUE[:OPTION=VALUE], like tensorboard:keep=loss,acc; "
                         f"got {text!r}")
    return sink.strip(), parse_filter_text(rest)


@dataclass(frozen=True, slots=True)
class FilterChain(Kind):
    """A sink's filters, in order: a list of tables in TOML (``[{ every_s = 5 }]``); on the command
    line the same list as JSON, or ``NAME=VALUE[:OPTION=VALUE]`` filters joined by ``;``."""

    metavar: str = "FILTERS"

    def expected(self) -> str:
        return "a list of filters like [{ every_s = 5 }]"

    def from_text(self, text: str) -> tuple[Any, ...]:
        if text.lstrip().startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"expected a JSON list of filters, got {text!r} ({exc})") from None
            return self.from_value(value)
        return self.from_value([parse_filter_text(part) for part in text.split(";") if part.strip()])

    def from_value(self, value: Any) -> tuple[Any, ...]:
        if isinstance(value, str):
            return self.from_text(value)
        parse_filters(value)
        return tuple(dict(item) if isinstance(item, Mapping) else item for item in value)

    def to_text(self, value: Any) -> str:
        return json.dumps(list(value))

    def show(self, value: Any) -> str:
        return " | ".join(str(f) for f in parse_filters(value)) if value else "none"


FILTERS_SETTING = Setting("filters", FilterChain(), (), "this sink's filters, in order (see the README's "
                          "Filters): a TOML list of tables, JSON, or NAME=VALUE[:OPTION=VALUE];...")
"""Every sink's ``filters`` option: ``[sinks.<name>] filters = [...]``, ``--<name>-filters``."""
