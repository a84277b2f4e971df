"""``tunebus collect --config FILE.toml``: collector settings from TOML, checked by their declarations."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pipeline.collector.config import collector_settings
from pipeline.collector.settings import Setting
from sinks import sink_names

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["read_config"]

SINKS_HINT = (" (a sinks = [...] list and [sinks.<name>] tables both at the top level: "
              "put the list under [collect])")


def read_config(path: Path) -> dict[str, Any]:
    """What ``path`` sets, by flat key (``max_queue_events``, ``aim_repo``), each value checked.

    The collector's keys sit at the top level or under ``[collect]`` (with ``-`` or ``_``);
    a sink's options may also sit in a ``[sinks.<name>]`` table (``[sinks.aim] repo = ...``)
    beside their flat spelling (``aim-repo``)::

        [collect]
        out = "/data/ray_results"
        sinks = ["json", "csv", "aim"]

        [sinks.aim]
        repo = "/data/aim"
        durable = true

    Raises ValueError with one line for an unreadable file, an unknown key or a bad value.
    """
    data = _load(path)
    tables = {name: data.pop(name) for name in ("collect", "sinks") if isinstance(data.get(name), dict)}
    flat = dict(data)
    for key, value in tables.get("collect", {}).items():
        if key in flat:
            raise ValueError(f"{path}: {key} is given both at the top level and under [collect]")
        flat[key] = value
    if isinstance(flat.get("sinks"), dict):  # [collect.sinks.<name>] tables
        tables["sinks"] = {**tables.get("sinks", {}), **flat.pop("sinks")}
    settings = collector_settings()
    values = _flat_values(path, flat, {s.key: s for s in settings})
    for sink, options in tables.get("sinks", {}).items():
        for key, value in _sink_values(path, sink, options, settings).items():
            if key in values:
                flat_key = key.replace("_", "-")
                raise ValueError(f"{path}: {flat_key} is given twice, flat and in [sinks.{sink}]")
            values[key] = value
    return values


def _load(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read config {str(path)!r}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        hint = SINKS_HINT if "('sinks'," in str(exc) else ""
        raise ValueError(f"{path}: not valid TOML: {exc}{hint}") from exc


def _flat_values(path: Path, data: dict[str, Any], known: dict[str, Setting]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in data.items():
        found = known.get(key.replace("-", "_"))
        if found is None:
            names = ", ".join(k.replace("_", "-") for k in known)
            raise ValueError(f"{path}: unknown key {key!r}; known keys: {names}, and [sinks.<name>] tables")
        values[found.key] = _checked(path, key, found, value)
    return values


def _sink_values(path: Path, sink: str, options: Any, settings: list[Setting]) -> dict[str, Any]:
    if sink not in sink_names():
        names = ", ".join(sink_names())
        raise ValueError(f"{path}: [sinks.{sink}]: unknown sink {sink!r}; choose from {names}")
    if not isinstance(options, dict):
        raise ValueError(f"{path}: sinks.{sink} must be a table of its options, got {options!r}")
    known = {s.name: s for s in settings if s.sink == sink}
    values: dict[str, Any] = {}
    for key, value in options.items():
        found = known.get(key.replace("-", "_"))
        if found is None:
            names = ", ".join(k.replace("_", "-") for k in known) or "none"
            raise ValueError(f"{path}: [sinks.{sink}]: unknown key {key!r}; known keys: {names}")
        values[found.key] = _checked(path, f"[sinks.{sink}] {key}", found, value)
    return values


def _checked(path: Path, key: str, found: Setting, value: Any) -> Any:
    try:
        return found.kind.from_value(value)
    except ValueError as exc:
        raise ValueError(f"{path}: {key}: {exc}") from None
