"""One lineage per trial file: rows a restored trial reports again move to a side file first."""

from __future__ import annotations

import csv
import itertools
import operator
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["ITERATION", "Settle", "csv_rows", "iteration", "json_rows", "last_line", "move_tail",
           "orphan_path", "rewinds"]

ITERATION = "training_iteration"
TAIL_CHUNK = 65_536
_ITERATION_OF = operator.methodcaller("get", ITERATION)
_INT = frozenset({int})

Settle = Callable[[Path, int, int], None]
"""Told ``(file, size, orphan_at)`` before a file is cut to ``size``, its bytes past ``size`` already
appended to its orphan file from offset ``orphan_at``, so a ledger can commit the move first."""


def iteration(value: Any) -> int | None:
    """A result's ``training_iteration`` as an int; None when it has none."""
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError, OverflowError):
        return None


def rewinds(last: int | None, results: list[dict[str, Any]],
            restarted: bool = False) -> Iterator[tuple[int, int | None]]:
    """``(index, iteration)`` of each result that starts another lineage: its iteration is
    below the one before it, or equal to it as the first result after a trial (re)start
    (several results of one iteration without a restart are one lineage, as Tune has them)."""
    values = list(map(_ITERATION_OF, results))
    if _one_lineage(last, values, restarted):
        return
    for i, result in enumerate(results):
        now = iteration(result.get(ITERATION))
        if now is None:
            continue
        if last is not None and (now < last or (now == last and restarted)):
            yield i, now
        last, restarted = now, False


def _one_lineage(last: int | None, values: list[Any], restarted: bool) -> bool:
    """Whether ``values`` (each result's iteration) certainly start no lineage: plain ints that never
    go back, from past ``last`` (or at it, not ``restarted``). A batch of a running trial is one; the
    rest ``rewinds`` looks at result by result."""
    if not values or not _INT.issuperset(map(type, values)):
        return False
    if last is not None and (values[0] < last or values[0] == last and restarted):
        return False
    return all(map(operator.le, values, itertools.islice(values, 1, None)))


def orphan_path(path: Path) -> Path:
    """``result.json`` -> ``result.orphaned.json``: where the rows of a dropped lineage go."""
    return path.with_name(f"{path.stem}.orphaned{path.suffix}")


def last_line(path: Path) -> bytes:
    """The last complete line of ``path`` (without its newline); empty for an empty file."""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        chunk, at = b"", end
        while at > 0:
            at = max(0, at - TAIL_CHUNK)
            f.seek(at)
            chunk = f.read(end - at)
            body = chunk.rstrip(b"\n")
            if b"\n" in body or at == 0:
                return body.rsplit(b"\n", 1)[-1]
        return b""


def json_rows(data: bytes) -> Iterator[tuple[int, int | None]]:
    """``(byte offset, training_iteration)`` of each line of a ``result.json``."""
    at = 0
    for line in data.splitlines(keepends=True):
        try:
            value = orjson.loads(line).get(ITERATION)
        except (orjson.JSONDecodeError, AttributeError):
            value = None
        yield at, iteration(value)
        at += len(line)


def csv_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    """``(byte offset, cells)`` of each record of a CSV file (quoted newlines kept in one record)."""
    pos = 0

    def lines() -> Iterator[str]:
        nonlocal pos
        while pos < len(data):
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end + 1
            line, pos = data[pos:end], end
            yield line.decode()

    start = 0
    for cells in csv.reader(lines()):  # the reader takes the lines of one record, never more
        yield start, cells
        start = pos


def move_tail(path: Path, offset: int, settle: Settle, header: bytes = b"") -> int:
    """Move ``path``'s bytes from ``offset`` on to the end of its orphan file; returns how many.

    Crash-safe with a ledger: the orphan file is written and fsynced, then ``settle``
    commits ``path`` at ``offset`` (and the orphan file as written), and only then is
    ``path`` cut. A crash before the commit leaves both as committed before (the move
    is done again); after it, recovery cuts ``path`` as the commit says. ``header``
    (a CSV header line) goes before the moved rows unless the orphan file starts
    with the same header.
    """
    with path.open("rb") as f:
        f.seek(offset)
        moved = f.read()
    if not moved:
        return 0
    orphan = orphan_path(path)
    with orphan.open("ab") as f:
        if header and _header(orphan) != header:
            f.write(header)
        orphan_at = f.tell()
        f.write(moved)
        f.flush()
        os.fsync(f.fileno())
    settle(path, offset, orphan_at)
    os.truncate(path, offset)
    return len(moved)


def _header(path: Path) -> bytes:
    """The first line of an orphaned CSV, its header (empty when there is no file yet)."""
    if not path.exists():
        return b""
    with path.open("rb") as f:
        return f.readline()
