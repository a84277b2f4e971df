"""``progress.csv`` rows made fast: a compiled layout per result shape, one orjson pass per batch."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from itertools import chain
from typing import Any

import orjson

__all__ = ["Layout", "csv_lines"]

Cells = tuple[Any, ...]
NONE = type(None)
ROW_TYPES = frozenset({float, int, str, bool, NONE})
"""Cell types whose orjson text becomes csv.writer's text by a few string replacements."""
# Where orjson and repr (so csv) write a float apart: orjson writes 1.5e-7 and 0.00001 where repr
# writes 1.5e-07 and 1e-05. Both patterns start with a literal, so re finds them at str.find speed.
_SHORT_EXPONENT = re.compile(r"e-([0-9])(?=[,\]])")
_SMALL_FIXED = re.compile(r"0\.0000[0-9]*(?=[,\]])")
_BARE_STRING = re.compile(r'"([^",]*)"')


class Layout:
    """How results of one shape become cells in a trial's column order.

    Built from one result into one generated function: ``cells`` gives the
    cells ``flatten`` then ``row.get(column, "")`` would, or None for a result
    of another shape (other keys at any level, a nested dict no longer a dict).
    Where the result held None or a bool, the cell is the string csv writes
    for it, so that most rows reach ``csv_lines`` without either.
    """

    __slots__ = ("cells",)

    def __init__(self, cells: Callable[[dict[str, Any]], Cells | None]) -> None:
        self.cells = cells

    @classmethod
    def build(cls, result: dict[str, Any], skip: frozenset[str], columns: list[str]) -> Layout | None:
        """The layout of ``result``'s shape, or None when its columns are not all in ``columns``.

        Only plain shapes get one (string keys, plain dicts, no flattened name
        twice); ``flatten`` handles the rest.
        """
        reads = _reads(result, skip)
        if reads is None or not reads[1].keys() <= set(columns):
            return None
        checks, where = reads
        cells = ", ".join(where.get(c, '""') for c in columns)
        source = "\n".join(["def cells(r):", "    try:", *(f"        {line}" for line in checks),
                            f"        return ({cells},)", "    except KeyError:", "        return None"])
        namespace: dict[str, Any] = {}
        exec(source, {}, namespace)  # keys are str, written as their repr: no code comes from data
        return cls(namespace["cells"])


def _reads(result: dict[str, Any], skip: frozenset[str]) -> tuple[list[str], dict[str, str]] | None:
    """The code checking a result has ``result``'s shape, and the expression reading each flattened name."""
    where: dict[str, str] = {}
    checks = [f"if len(r) != {len(result)}{''.join(f' or {k!r} not in r' for k in skip if k in result)}:",
              "    return None"]
    for key, value in result.items():
        if key not in skip and not isinstance(value, dict):
            if type(key) is not str:
                return None
            where[key] = _cell(f"r[{key!r}]", value)
    level = [("r", k, k, v) for k, v in result.items() if k not in skip and isinstance(v, dict)]
    while level:  # breadth first, as flatten (and Ray's flatten_dict) joins names
        deeper = []
        for parent, key, prefix, value in level:
            if type(value) is not dict or type(key) is not str:
                return None
            node = f"d{len(checks)}"
            checks += [f"{node} = {parent}[{key!r}]",
                       f"if type({node}) is not dict or len({node}) != {len(value)}:", "    return None"]
            for sub, item in value.items():
                name = f"{prefix}/{sub}"
                if type(sub) is not str or name in where:
                    return None
                if isinstance(item, dict):
                    deeper.append((node, sub, name, item))
                else:
                    where[name] = _cell(f"{node}[{sub!r}]", item)
        level = deeper
    return checks, where


def _cell(read: str, value: Any) -> str:
    """The expression for one cell: ``read``, as csv writes it when it is None or a bool like ``value``."""
    if value is None:
        return f'("" if (v := {read}) is None else v)'
    if type(value) is bool:
        return f'("True" if (v := {read}) is True else "False" if v is False else v)'
    return read


class _Lines(list[str]):
    """What csv.writer writes to: a list of its lines."""

    write = list.append


def csv_lines(rows: list[Cells]) -> str | None:
    """``rows`` as ``csv.writer`` (excel dialect) writes them, each ending in ``\\r\\n``.

    None when a cell is a dict: a layout took a result whose value became a
    nested dict, which flatten would have spread over columns.
    """
    if not rows:
        return ""
    kinds = set(map(type, chain.from_iterable(rows)))
    if ROW_TYPES.issuperset(kinds):
        fast = _orjson_lines(rows, kinds)
        if fast is not None:
            return fast
    elif any(issubclass(kind, dict) for kind in kinds):
        return None
    out = _Lines()
    csv.writer(out).writerows(rows)
    return "".join(out)


def _orjson_lines(rows: list[Cells], kinds: set[type]) -> str | None:
    """The same text from one orjson pass, or None when a cell needs csv.writer.

    orjson writes what csv writes but for strings' quotes, None, booleans and
    some floats' notation; the checks first make sure every occurrence rewritten
    below is a cell and not part of a string (``kinds``: the cells' types).
    """
    if min(map(len, rows)) < 2:  # csv quotes a lone empty cell
        return None
    try:
        text = orjson.dumps(rows).decode()
    except orjson.JSONEncodeError:  # an int past 64 bits
        return None
    if str not in kinds:  # every token is a cell: a few passes, none of the checks for strings
        return _number_lines(text, rows, kinds)
    types = list(map(type, chain.from_iterable(rows)))
    if "\\" in text:  # a string with a quote, backslash or line break: csv quotes or escapes it
        return None
    if "null" in text or "true" in text or "false" in text:  # (layouts write most as strings)
        if (text.count("null") != types.count(NONE)  # NaN/inf are null too
                or text.count("true") + text.count("false") != types.count(bool)):
            return None  # or a string holds one of these words
        text = text.replace("null", "").replace("true", "True").replace("false", "False")
    bare = text.count(",") == len(types) - 1  # no string holds a comma
    if "e-" in text or "0.0000" in text:
        if not bare or text.count("[") != len(rows) + 1:
            return None  # a string holds a comma or bracket: it could look like a number token
        text = _SHORT_EXPONENT.sub(r"e-0\1", text)
        text = _SMALL_FIXED.sub(_small_float, text)
    if bare:
        text = text.replace('"', "")
    else:  # a string with a comma keeps its quotes, as csv quotes it
        if text.count("],[") != len(rows) - 1:
            return None
        text = _BARE_STRING.sub(r"\1", text)
    return text[2:-2].replace("],[", "\r\n") + "\r\n"


def _number_lines(text: str, rows: list[Cells], kinds: set[type]) -> str | None:
    """``_orjson_lines`` for rows of numbers, None and booleans only (the usual batch)."""
    if "null" in text:
        if text.count("null") != list(map(type, chain.from_iterable(rows))).count(NONE):  # NaN/inf too
            return None
        text = text.replace("null", "")
    if bool in kinds:
        text = text.replace("true", "True").replace("false", "False")
    if float in kinds and ("e-" in text or "0.0000" in text):
        text = _SHORT_EXPONENT.sub(r"e-0\1", text)
        text = _SMALL_FIXED.sub(_small_float, text)
    return text[2:-2].replace("],[", "\r\n") + "\r\n"


def _small_float(match: re.Match[str]) -> str:
    """orjson's 0.00001 as repr writes it (1e-05), when the match is a whole number token."""
    at = match.start() - 1
    before = match.string[at - 1:at + 1] if match.string[at] == "-" else match.string[at]
    if before[0] not in ",[":  # part of a longer token, as in 10.00001
        return match.group()
    return repr(float(match.group()))
