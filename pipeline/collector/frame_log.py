"""A sink process's feed: the frames the collector accepted, in segment files, read back in order."""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

__all__ = ["SEGMENT_BYTES", "FrameLog", "FrameLogReader", "Position", "Record", "load_position"]

log = logging.getLogger(__name__)

MAGIC = b"TBFRLOG1"
RECORD = struct.Struct(">IQQ")  # frame length, first and last seq the collector accepted from it
SEGMENT_BYTES = 64 * 1024 * 1024
POSITION_FILE = "read.json"
SUFFIX = ".seg"


@dataclass(frozen=True, slots=True)
class Position:
    """How far the reader has got: ``at`` record bytes into the log (over every segment), after
    ``events`` events (both counted from the log's very first record)."""

    at: int = 0
    events: int = 0


@dataclass(frozen=True, slots=True)
class Record:
    """One accepted frame as it was received, the seq range taken from it, and the position after it."""

    frame: bytes
    first: int
    last: int
    after: Position


def load_position(directory: Path) -> Position:
    """The reader's last committed position (the start if it never committed)."""
    try:
        raw = orjson.loads((directory / POSITION_FILE).read_bytes())
        return Position(int(raw["at"]), int(raw["events"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return Position()


def _segments(directory: Path) -> list[int]:
    """Each segment's start (its first record's offset in the log), in order."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-len(SUFFIX)]) for n in names if n.endswith(SUFFIX) and n[:-len(SUFFIX)].isdigit())


def _path(directory: Path, start: int) -> Path:
    return directory / f"{start:020d}{SUFFIX}"


def _records(f: BinaryIO) -> Iterator[tuple[int, int, int]]:
    """(record bytes, first, last) of each whole record from ``f``'s position; stops at a cut one."""
    while len(head := f.read(RECORD.size)) == RECORD.size:
        length, first, last = RECORD.unpack(head)
        if len(f.read(length)) < length:
            return
        yield RECORD.size + length, first, last


class FrameLog:
    """The collector's end: ``append`` each accepted frame, whole, as the receiver got it.

    No re-encoding: a record is the frame's bytes and the seq range the sequencer took
    from it (a frame's accepted events are one contiguous run of one producer). Segments
    are only ever appended to, so a reader in another process follows them without
    locks; the reader deletes the ones it has passed. ``unread_bytes`` is what the reader
    has not committed yet (``advanced`` tells this end where it is).
    """

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self.read = load_position(directory)
        self.end, self.events = self._scan()
        self._fd: int | None = None
        self._start = 0

    def _scan(self) -> tuple[int, int]:
        """The log's end and how many events it holds in all, counting what a killed collector left."""
        starts = _segments(self.directory)
        end, events = self.read.at, self.read.events
        for start, following in zip(starts, [*starts[1:], None]):
            path = _path(self.directory, start)
            size = path.stat().st_size - len(MAGIC)
            if following is not None and following <= self.read.at:
                continue
            with path.open("rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    log.error("%s is not a frame log segment; left alone", path)
                    continue
                offset = max(0, self.read.at - start)
                f.seek(len(MAGIC) + offset)
                events += sum(last - first + 1 for _, first, last in _records(f))
            end = max(end, start + size)
        return end, events

    @property
    def unread_bytes(self) -> int:
        return self.end - self.read.at

    @property
    def unread_events(self) -> int:
        return self.events - self.read.events

    def has_room(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes fits (an empty log takes any frame)."""
        return not self.unread_bytes or self.unread_bytes + RECORD.size + size <= self.max_bytes

    def append(self, frame: bytes, first: int, last: int) -> None:
        """One frame, and the run of seqs ``first..last`` the collector took from it."""
        if self._fd is None or self.end - self._start >= self.segment_bytes:
            self._rotate()
        assert self._fd is not None
        os.write(self._fd, RECORD.pack(len(frame), first, last) + frame)
        self.end += RECORD.size + len(frame)
        self.events += last - first + 1

    def advanced(self, position: Position) -> None:
        """The reader committed ``position``."""
        self.read = position

    def _rotate(self) -> None:
        """Close the segment (whole before the next exists: the reader relies on it), start one at the end."""
        self.close()
        path = _path(self.directory, self.end)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if os.fstat(self._fd).st_size == 0:
            os.write(self._fd, MAGIC)
        self._start = self.end

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FrameLogReader:
    """The sink process's end: ``read`` records from the last committed position, ``commit`` the
    position after what the sink has written (``read.json``, by atomic rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.committed = load_position(directory)
        self._at = self.committed.at
        self._events = self.committed.events
        self._f: BinaryIO | None = None
        self._start = -1

    def read(self, max_records: int) -> list[Record]:
        """Up to ``max_records`` whole records after the last one read; [] when caught up."""
        records: list[Record] = []
        while len(records) < max_records:
            record = self._next()
            if record is None:
                break
            records.append(record)
        return records

    def _next(self) -> Record | None:
        while True:
            f = self._open()
            if f is None:
                return None
            record = self._whole(f)
            if record is not None:
                return record
            following = [s for s in _segments(self.directory) if s > self._start]
            if not following:
                return None  # caught up with the writer
            # The writer closed this segment before it made the next: what is there now is all.
            record = self._whole(f)
            if record is not None:
                return record
            self._close()
            self._at = following[0]

    def _whole(self, f: BinaryIO) -> Record | None:
        at = f.tell()
        head = f.read(RECORD.size)
        if len(head) == RECORD.size:
            length, first, last = RECORD.unpack(head)
            frame = f.read(length)
            if len(frame) == length:
                self._at += RECORD.size + length
                self._events += last - first + 1
                return Record(frame, first, last, Position(self._at, self._events))
        f.seek(at)  # a record still being written (or cut by a killed collector): not yet
        return None

    def _open(self) -> BinaryIO | None:
        if self._f is not None:
            return self._f
        starts = [s for s in _segments(self.directory) if s <= self._at]
        if not starts:
            later = _segments(self.directory)
            if not later:
                return None
            self._at = later[0]  # the segments before it were deleted: begin where the log does
            starts = [later[0]]
        self._start = starts[-1]
        f = _path(self.directory, self._start).open("rb")
        if f.read(len(MAGIC)) != MAGIC:
            f.close()
            raise ValueError(f"{_path(self.directory, self._start)} is not a frame log segment")
        f.seek(len(MAGIC) + self._at - self._start)
        self._f = f
        return f

    def _close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def commit(self, position: Position) -> None:
        """Remember ``position`` (the sink has written everything before it); drop passed segments."""
        self.committed = position
        path = self.directory / POSITION_FILE
        tmp = path.with_name(POSITION_FILE + ".tmp")
        tmp.write_bytes(orjson.dumps({"at": position.at, "events": position.events}))
        os.replace(tmp, path)
        starts = _segments(self.directory)
        for start, following in zip(starts, starts[1:]):
            if following <= position.at:
                _path(self.directory, start).unlink(missing_ok=True)

    def drop_read(self) -> None:
        """Remove every segment wholly committed, the last one too: only once the writer is closed."""
        self._close()
        for start in _segments(self.directory):
            path = _path(self.directory, start)
            if start + path.stat().st_size - len(MAGIC) <= self.committed.at:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        self._close()
