"""A lagging sink's backlog: the events its queue has no room for, on disk, in order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import orjson

from pipeline.wire.codec import decode_event, encode_stored
from pipeline.wire.events import Event, SchemaError
from pipeline.wire.spool import Spool, iter_spool

__all__ = ["SinkBacklog"]

log = logging.getLogger(__name__)


class SinkBacklog:
    """Events a non-durable sink cannot hold in memory, appended to a file and read back in order.

    Acknowledgements never wait for such a sink, so without this its full queue
    would stall the collector's receive loop and every other sink with it. The
    events are re-encoded with the wire codec (never pickled) and decoded again
    as the sink catches up. ``push`` stops at the first event past ``max_bytes``:
    the caller then waits, which is backpressure, never loss.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes!r}")
        self._spool = Spool(path, path.stem, max_bytes)
        self._marks_path = path.with_name(path.name + ".read")
        self._marks: dict[str, int] = {}
        self.full = False
        self._said = False
        self.unreadable = 0
        self.resumed = self._resume(path)

    def _resume(self, path: Path) -> int:
        """Take back what a collector that was killed left on disk: those events were acknowledged."""
        if not path.exists():
            return 0
        left = path.with_name(path.name + ".left")
        path.replace(left)
        done = self._load_marks()
        try:
            kept = [self._spool.append(seq, data) for seq, data in iter_spool(left)
                    if not _already_read(data, done)]
        except ValueError as exc:
            log.error("sink backlog %s is unreadable, left as %s: %s", path, left, exc)
            return 0
        left.unlink()
        self._spool.sync()
        if kept:
            log.warning("resuming %d events a stopped collector left in %s (%d past max_bytes dropped)",
                        sum(kept), path, kept.count(False))
        return sum(kept)

    def __len__(self) -> int:
        return len(self._spool)

    @property
    def used_bytes(self) -> int:
        return self._spool.used_bytes

    def push(self, events: Sequence[Event]) -> int:
        """Append events in order until one does not fit; returns how many were taken."""
        if not self._said:
            self._said = True
            log.info("a sink's queue is full: its backlog goes to %s", self._spool.path)
        for taken, event in enumerate(events):
            if not self._spool.append(event.seq, encode_stored(event)):
                self.full = True
                self._spool.sync()
                return taken
        self._spool.sync()  # on disk before the next frame: a killed collector resumes from here
        return len(events)

    def pop(self, max_events: int) -> list[Event]:
        """Up to ``max_events`` of the oldest events, decoded again."""
        items = self._spool.read(max_events)
        if items:
            self.full = False
        events = []
        for _, data in items:
            try:
                events.append(decode_event(data))
            except SchemaError as exc:  # a file damaged on disk: skip the record, keep the sink going
                self.unreadable += 1
                if self.unreadable == 1:
                    log.error("sink backlog %s: skipping unreadable events (counted in status): %s",
                              self._spool.path, exc)
        if events:
            self._save_marks(events)
        return events

    def _save_marks(self, events: list[Event]) -> None:
        """Each producer's last event read, so a restart does not hand the sink those again."""
        self._marks.update((e.producer, e.seq) for e in events)
        tmp = self._marks_path.with_name(self._marks_path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(self._marks))
        tmp.replace(self._marks_path)

    def _load_marks(self) -> dict[str, int]:
        try:
            marks = orjson.loads(self._marks_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return {str(k): v for k, v in marks.items() if type(v) is int} if isinstance(marks, dict) else {}

    def close(self) -> None:
        """Close the file; it is removed when nothing is left in it, else resumed at the next start."""
        self._spool.close()
        if not self._spool.path.exists():
            self._marks_path.unlink(missing_ok=True)


def _already_read(data: bytes, done: dict[str, int]) -> bool:
    try:
        event = decode_event(data)
    except SchemaError:
        return False  # counted and skipped when it is read
    return event.seq <= done.get(event.producer, -1)
