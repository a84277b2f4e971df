"""``tunebus collect --config FILE.toml``: flag defaults from TOML, converted by the flags' own types."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["toml_defaults"]

NOT_FROM_FILE = frozenset({"help", "config"})


def toml_defaults(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """What ``path`` sets, keyed by the flags' ``dest``, each value checked as on the command line.

    Keys are flag names without the dashes, with ``-`` or ``_``; a ``[collect]``
    table may hold them instead of the top level. Raises ValueError with one line
    for an unreadable file, an unknown key or a bad value.
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read config {str(path)!r}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    if isinstance(data.get("collect"), dict) and len(data) == 1:
        data = data["collect"]
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in NOT_FROM_FILE}
    values: dict[str, Any] = {}
    for key, value in data.items():
        action = actions.get(key.replace("-", "_"))
        if action is None:
            known = ", ".join(sorted(d.replace("_", "-") for d in actions))
            raise ValueError(f"{path}: unknown key {key!r}; known keys: {known}")
        values[action.dest] = _convert(action, key, value, path)
    return values


def _convert(action: argparse.Action, key: str, value: Any, path: Path) -> Any:
    """``value`` as the flag would have parsed it from the command line."""
    if action.nargs == 0:  # store_true and friends
        if not isinstance(value, bool):
            raise ValueError(f"{path}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = ",".join(value)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        raise ValueError(f"{path}: {key} must be a string, a number or a list of strings, got {value!r}")
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {key} = {value!r}: {exc}") from exc
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ValueError(f"{path}: {key} = {value!r}: choose from {choices}")
    return converted
