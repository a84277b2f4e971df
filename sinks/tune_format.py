"""Values rendered exactly as Tune's own JSON and CSV loggers render them."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson

from pipeline.wire.events import Fallback

__all__ = ["REMOVED_HPARAMS", "flatten", "json_line", "json_lines", "params_json", "split_hparams",
           "tune_tag"]

_NONFINITE = {math.inf: b"Infinity", -math.inf: b"-Infinity"}
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS
JSON_KEY_TYPES = (str, int, float, bool, type(None))


def flatten(result: dict[str, Any], delimiter: str = "/",
            skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``ray.tune.utils.flatten_dict`` without the top-level ``skip`` keys.

    Nested keys are joined by ``delimiter`` and come after the plain ones,
    level by level, in the order Ray's loop appends them.
    """
    flat: dict[str, Any] = {}
    nested: list[tuple[str, dict[Any, Any]]] = []
    for key, value in result.items():
        if isinstance(value, dict):
            if key not in skip:  # Ray's own join raises on a key that is not a string
                nested.append((key if type(key) is str else str(key), value))
        elif key not in skip:
            flat[key] = value
    while nested:
        deeper: list[tuple[str, dict[Any, Any]]] = []
        for key, value in nested:
            for sub, item in value.items():
                name = delimiter.join([key, str(sub)])
                if isinstance(item, dict):
                    deeper.append((name, item))
                else:
                    flat[name] = item
        nested = deeper
    return flat


def tune_tag(key: Any) -> str:
    """The name Tune's TBX and Aim loggers give a flattened result key: ``ray/tune/<key>``."""
    return "ray/tune/" + (key if type(key) is str else str(key))


HPARAM_TYPES = (str, bool, int, float, list, type(None))
NP_HPARAM_TYPES = (np.bool_, np.float32, np.float64, np.int32, np.int64)


REMOVED_HPARAMS = "Removed the following hyperparameter values when logging to %s: %s"
"""What Tune's TBX and Aim loggers say at INFO about the hparams they leave out."""


def split_hparams(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluated params as Tune's TBX and Aim loggers keep them for hparams, and the ones removed.

    Flattened with ``/``; plain values kept, the numpy scalars Tune accepts turned
    into Python values; everything else (tuples, objects) removed, as Tune names it
    in its INFO line.
    """
    flat = flatten(params)
    kept = {k: v for k, v in flat.items() if isinstance(v, HPARAM_TYPES)}
    kept.update({k: v.tolist() for k, v in flat.items() if isinstance(v, NP_HPARAM_TYPES)})
    removed = {k: _Shown(v.text) if isinstance(v, Fallback) else v for k, v in flat.items() if k not in kept}
    return kept, removed


class _Shown(str):
    """A value that reached the collector as text: shown as that text, as Tune shows the object."""

    def __repr__(self) -> str:
        return str(self)


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return orjson.Fragment(b"NaN" if value != value else _NONFINITE[value])


def _patch_nonfinite(value: Any) -> Any:
    """``value`` with every non-finite float as the NaN/Infinity tokens Python's json writes."""
    if not _has_nonfinite(value):
        return value
    kind = type(value)
    if kind is float:
        return _float(value)
    if kind is dict:
        return {k: _patch_nonfinite(v) for k, v in value.items()}
    return [_patch_nonfinite(v) for v in value]


def _has_nonfinite(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return not math.isfinite(value)
    if kind is dict:
        value = value.values()
    elif kind is not list and kind is not tuple:
        return False
    for item in value:
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                return True
        elif (kind is dict or kind is list or kind is tuple) and _has_nonfinite(item):
            return True
    return False


def _json_default(value: Any) -> Any:
    """Tune's ``SafeFallbackEncoder.default``, for the values orjson leaves to us."""
    if isinstance(value, Fallback):
        return orjson.Fragment(value.json)
    if isinstance(value, np.ndarray):
        return _patch_nonfinite(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.float64):  # a float subclass: json writes it as a float
        return _float(float(value))
    try:
        if np.isnan(value):
            return "null"
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.number):  # float(complex) keeps the real part, as Tune's does
        return _float(float(np.real(value)))
    return str(value)


def json_line(result: dict[str, Any]) -> bytes:
    """One ``result.json`` line (without the newline) that reads back as Tune's does."""
    try:
        return orjson.dumps(_patch_nonfinite(result), default=_json_default, option=_JSON_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):  # an int past 64 bits: the slow, exact path
        return json.dumps(_plain(result)).encode()


_SPLIT = "\x00tunebus\x00"
_SPLIT_JSON = b',"\\u0000tunebus\\u0000",'
"""How orjson writes ``_SPLIT`` between two results of a list: where a batch's lines part."""


def json_lines(results: list[dict[str, Any]]) -> bytes:
    """``json_line`` of each result, each ending in a newline, from one orjson call for the batch.

    A call costs more than a result's own text on the collector's machines (1.6 us a call against
    0.6 a result), so the batch is written as one list with ``_SPLIT`` between the results, which
    becomes the newline: exact when it was replaced as many times as there are gaps (a value
    holding the marker's text makes more, and each result is then written alone). orjson writes
    a non-finite float as ``null``, so only a line with ``null`` in it may need the NaN/Infinity
    tokens ``json_line`` writes.
    """
    if len(results) < 2:
        return b"".join([json_line(r) + b"\n" for r in results])
    items: list[Any] = [_SPLIT] * (2 * len(results) - 1)
    items[::2] = results
    try:
        blob = orjson.dumps(items, default=_json_default)  # a quarter faster without the option
    except TypeError:  # a key that is not a string; an int past 64 bits; too deep a nest
        try:
            blob = orjson.dumps(items, default=_json_default, option=_JSON_OPTIONS)
        except TypeError:
            return b"".join([json_line(r) + b"\n" for r in results])
    text = blob.replace(_SPLIT_JSON, b"\n")
    if len(blob) - len(text) != (len(results) - 1) * (len(_SPLIT_JSON) - 1):
        return b"".join([json_line(r) + b"\n" for r in results])
    text = text[1:-1] + b"\n"
    if b"null" not in text:
        return text
    lines = text.split(b"\n")  # (orjson escapes every newline inside a string)
    for i, line in enumerate(lines[:-1]):
        if b"null" in line and _has_nonfinite(results[i]):
            lines[i] = json_line(results[i])
    return b"\n".join(lines)


def params_json(config: dict[str, Any]) -> bytes:
    """``params.json``: indent 2, sorted keys, as Tune writes it."""
    options = _JSON_OPTIONS | orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    try:
        return orjson.dumps(_patch_nonfinite(config), default=_json_default, option=options)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(_plain(config), indent=2, sort_keys=True).encode()


def _plain(value: Any) -> Any:
    """``value`` as plain Python values the standard json module writes as Tune does."""
    if isinstance(value, dict):  # keys json cannot take (bytes, tuples) as their str, not a crash
        return {k if isinstance(k, JSON_KEY_TYPES) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, type(None))) and not isinstance(value, np.generic):
        return value
    rendered = _json_default(value)
    if isinstance(rendered, orjson.Fragment):
        return json.loads(orjson.dumps(rendered))
    return _plain(rendered)
