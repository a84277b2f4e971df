"""The ledger: each durable sink's committed file sizes and producer marks, for exactly-once restarts."""

from __future__ import annotations

import fnmatch
import logging
import operator
import os
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from pipeline.wire.events import Event, Kind
from sinks.lineage import orphan_path

__all__ = ["Ledger", "last_seqs"]

log = logging.getLogger(__name__)

ENDS = frozenset({Kind.TRIAL_COMPLETE.value, Kind.TRIAL_ERROR.value})
EXPERIMENT_END = Kind.EXPERIMENT_END.value
CLOSING = ENDS | {EXPERIMENT_END}
# Event fields read per event in C, not in a Python loop: a batch holds thousands.
_KIND, _PRODUCER = (operator.itemgetter(Event._fields.index(f)) for f in ("kind", "producer"))
_DIR = operator.itemgetter(Event._fields.index("experiment"), Event._fields.index("trial_dir"))
HEAD_BYTES = 65_536

# One file's committed state: [size in bytes, newline count, crc32 of the first line].
FileMark = list[int]


class Ledger:
    """What one sink has durably written: a size per appended file and a seq per producer.

    Around every batch the sink's worker calls ``before`` (records the files of
    trial directories the batch touches for the first time) and ``after``
    (records the new sizes and the last seq of each producer), each an atomic
    rename of one small JSON file. ``recover`` cuts every tracked file back to
    its committed size and deletes files created since, so the events after
    the committed marks can be written again, once. A sink that cuts a file in
    the middle of a batch (a restored trial's rows moved aside) calls ``settle``
    first, so recovery cuts it there too.

    Args:
        path: the ledger file.
        out: the root the trial directories are relative to.
        appends: glob patterns of the files the sink appends to in a trial directory.
        rewrites_head: the sink may rewrite a file with a longer first line
            (the CSV header); such files are cut back by line count.
        ended_ttl_s: forget a producer's mark this long after its run ended (its
            ``experiment_end`` was written), so a collector that runs for months
            does not rewrite every driver it ever saw with each batch; 0 keeps all.
        clock: wall time in seconds (a test seam).

    Nothing is fsynced: this survives the collector being killed, not the
    machine losing power.
    """

    def __init__(self, path: Path, out: Path, appends: tuple[str, ...],
                 rewrites_head: bool = False, ended_ttl_s: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not ended_ttl_s >= 0:
            raise ValueError(f"ended_ttl_s must be >= 0, got {ended_ttl_s!r}")
        self.path = path
        self.out = out
        self.appends = appends
        self.rewrites_head = rewrites_head
        self.ended_ttl_s = ended_ttl_s
        self.clock = clock
        self.marks: dict[str, int] = {}
        self.ended: dict[str, float] = {}
        self.dirs: dict[str, dict[str, FileMark]] = {}
        self.filters: Any = None
        """The sink's filter state (``filters.filter_states``) as of the committed marks."""
        self._batch: tuple[list[Event], list[str]] | None = None
        """The batch ``before`` was given and its trial directories, until ``after``."""
        self._load()

    def _load(self) -> None:
        """Take the committed state as the truth (after a failed commit, memory may be ahead)."""
        self.marks, self.ended, self.dirs, self.filters = {}, {}, {}, None
        if self.path.exists():
            state = orjson.loads(self.path.read_bytes())
            self.marks = {str(k): int(v) for k, v in state["marks"].items()}
            self.ended = {str(k): float(v) for k, v in state.get("ended", {}).items()}
            self.dirs = state["dirs"]
            self.filters = state.get("filters")

    def fresh(self, events: list[Event]) -> list[Event]:
        """``events`` without those this sink already wrote before a restart."""
        marks = self.marks
        # Each producer's events come in rising seq: if its first one is fresh, all are (the usual batch).
        firsts = dict(zip(map(_PRODUCER, reversed(events)), reversed(events)))
        if all(first.seq > marks.get(producer, -1) for producer, first in firsts.items()):
            return events
        return [e for e in events if e.seq > marks.get(e.producer, -1)]

    def before(self, events: list[Event]) -> None:
        """Record the files of trial directories this batch is the first to touch."""
        new = [d for d in self._trial_dirs(events) if d not in self.dirs]
        if new:
            dirs = dict(self.dirs)
            for rel in new:
                dirs[rel] = {name: self._mark(path, None) for name, path in self._files(rel)}
            self._commit(self.marks, dirs, self.ended, self.filters)

    def after(self, events: list[Event], filters: Any = None) -> None:
        """Record what the batch wrote: new file sizes, each producer's last seq and, with
        them, ``filters``: the state of the sink's filters after the batch."""
        dirs = dict(self.dirs)
        for rel in self._trial_dirs(events, last_use=True):
            old = dirs.get(rel, {})
            dirs[rel] = {name: self._mark(path, old.get(name)) for name, path in self._files(rel)}
        marks = dict(self.marks)
        marks.update(last_seqs(events))
        kinds = set(map(_KIND, events))
        ended_now = [] if EXPERIMENT_END not in kinds else [
            e.producer for e in events if e.kind == EXPERIMENT_END]
        if not kinds.isdisjoint(CLOSING):
            for rel in _closed_dirs(events, dirs):
                del dirs[rel]
        self._commit(marks, dirs, self._forget_ended(ended_now, marks), filters)

    def _trial_dirs(self, events: list[Event], last_use: bool = False) -> list[str]:
        """``_trial_dirs(events)``: found once for the batch that ``before`` then ``after`` are given."""
        batch = self._batch
        dirs = batch[1] if batch is not None and batch[0] is events else _trial_dirs(events)
        self._batch = None if last_use else (events, dirs)
        return dirs

    def _forget_ended(self, ended_now: list[str], marks: dict[str, int]) -> dict[str, float]:
        """The end times with ``ended_now`` added; runs ended over ``ended_ttl_s`` ago are
        dropped from it and from ``marks``. Oldest first, so most batches look at one entry."""
        now = self.clock()
        ended = self.ended
        if ended_now:
            ended = {**ended, **dict.fromkeys(ended_now, now)}
        while self.ended_ttl_s and ended and now - next(iter(ended.values())) > self.ended_ttl_s:
            if ended is self.ended:
                ended = dict(ended)
            producer = next(iter(ended))
            del ended[producer]
            marks.pop(producer, None)
        return ended

    def settle(self, path: Path, size: int, orphan_at: int) -> None:
        """Before the sink cuts ``path`` to ``size`` (its tail already appended to its orphan file
        from offset ``orphan_at``), commit the move of what was committed: ``path`` at ``size``,
        the orphan file up to the committed rows it now holds, every other file as committed.

        The marks stay where the last batch left them, so nothing this batch wrote counts as
        committed: a crash or a failed write after this cuts the batch's rows (moved or not)
        back out and the batch, written again, moves its own rows again. A cut past what was
        committed moves only this batch's rows, and needs no commit at all.
        """
        rel = path.parent.relative_to(self.out).as_posix()
        old = self.dirs.get(rel, {})
        committed = old.get(path.name)
        if committed is None:
            return  # the file is this batch's own: recovery removes it
        committed_end = self._committed_end(path, committed)
        if size >= committed_end:
            return
        orphan = orphan_path(path)
        marks = dict(old)
        marks[path.name] = self._mark(path, committed, size)
        marks[orphan.name] = self._mark(orphan, old.get(orphan.name), orphan_at + committed_end - size)
        self._commit(self.marks, {**self.dirs, rel: marks}, self.ended, self.filters)

    def _committed_end(self, path: Path, mark: FileMark) -> int:
        """Where the committed part of ``path`` ends now (by its lines, if its head was rewritten)."""
        size, lines, head = mark
        with path.open("rb") as f:
            if not self.rewrites_head or zlib.crc32(f.readline(HEAD_BYTES)) == head:
                return size
            f.seek(0)
            at = 0
            for _, line in zip(range(lines), f):
                at += len(line)
            return at

    def recover(self) -> None:
        """Cut every tracked file back to its committed state."""
        self._load()
        for rel, marks in self.dirs.items():
            for name, path in self._files(rel):
                mark = marks.get(name)
                if mark is None:
                    log.info("recovery: removing %s, written after the last commit", path)
                    path.unlink()
                else:
                    self._cut(path, mark)

    def _files(self, rel: str) -> Iterable[tuple[str, Path]]:
        """The files of trial directory ``rel`` that match ``appends`` (one directory read, not a glob
        per pattern: this runs for every directory of every batch)."""
        directory = self.out / rel
        try:
            with os.scandir(directory) as entries:
                files = [entry.name for entry in entries if entry.is_file()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [(name, directory / name) for pattern in self.appends
                for name in fnmatch.filter(files, pattern)]

    def _mark(self, path: Path, old: FileMark | None, size: int | None = None) -> FileMark:
        """``path``'s state, or that of its first ``size`` bytes."""
        if size is None:
            size = path.stat().st_size
        with path.open("rb") as f:
            head = zlib.crc32(f.readline(HEAD_BYTES))
            if not self.rewrites_head:
                return [size, 0, head]
            if old is not None and old[2] == head and old[0] <= size:
                f.seek(old[0])
                return [size, old[1] + f.read(size - old[0]).count(b"\n"), head]
            f.seek(0)
            return [size, f.read(size).count(b"\n"), head]

    def _cut(self, path: Path, mark: FileMark) -> None:
        size, lines, head = mark
        current = path.stat().st_size
        if current == size:
            return
        if current < size:
            log.warning("recovery: %s is shorter (%d) than committed (%d); left as is",
                        path, current, size)
            return
        with path.open("rb") as f:
            same_head = zlib.crc32(f.readline(HEAD_BYTES)) == head
        if same_head or not self.rewrites_head:
            os.truncate(path, size)
            return
        with path.open("rb") as f:  # the head was rewritten wider: keep the committed lines
            kept = b"".join(line for _, line in zip(range(lines), f))
        tmp = path.with_name(path.name + ".recover")
        tmp.write_bytes(kept)
        os.replace(tmp, path)

    def _commit(self, marks: dict[str, int], dirs: dict[str, dict[str, FileMark]],
                ended: dict[str, float], filters: Any) -> None:
        """Write the state atomically; only then is it this ledger's state."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        state: dict[str, Any] = {"marks": marks, "dirs": dirs, "ended": ended}
        if filters is not None:
            state["filters"] = filters
        tmp.write_bytes(orjson.dumps(state))
        os.replace(tmp, self.path)
        self.marks, self.dirs, self.ended, self.filters = marks, dirs, ended, filters


def last_seqs(events: list[Event]) -> dict[str, int]:
    """Each producer's last seq in ``events``, reading only those events' seqs (each is an int of
    its own in memory: reading every one costs a cache miss per event)."""
    lasts = dict(zip(map(_PRODUCER, events), events))
    return {producer: event.seq for producer, event in lasts.items()}


def _trial_dirs(events: list[Event]) -> list[str]:
    """The trial directories ``events`` touch, in order of first touch (one pass in C, then per dir)."""
    return [f"{experiment}/{trial_dir}" for experiment, trial_dir in dict.fromkeys(map(_DIR, events))
            if trial_dir]


def _closed_dirs(events: list[Event], dirs: dict[str, Any]) -> list[str]:
    closed: set[str] = set()
    for e in events:
        if e.kind in ENDS:
            closed.add(f"{e.experiment}/{e.trial_dir}")
        elif e.kind == EXPERIMENT_END:
            closed.update(d for d in dirs if d.startswith(e.experiment + "/"))
    return [d for d in closed if d in dirs]
