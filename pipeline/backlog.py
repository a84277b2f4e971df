"""A lagging sink's backlog: the events its queue has no room for, on disk, in order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pipeline.codec import decode_event, encode_event
from pipeline.events import Event
from pipeline.spool import Spool

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
        path.unlink(missing_ok=True)  # a crashed collector's backlog: its events were acknowledged
        self._spool = Spool(path, path.stem, max_bytes)
        self.full = False
        self.peak_bytes = 0
        self._said = False

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
            data = encode_event(event.kind, event.producer, event.seq, event.ts, event.experiment,
                                event.trial, event.trial_dir, event.payload)
            if not self._spool.append(event.seq, data):
                self.full = True
                return taken
        self.peak_bytes = max(self.peak_bytes, self._spool.used_bytes)
        return len(events)

    def pop(self, max_events: int) -> list[Event]:
        """Up to ``max_events`` of the oldest events, decoded again."""
        items = self._spool.read(max_events)
        if items:
            self.full = False
        return [decode_event(data) for _, data in items]

    def close(self) -> None:
        """Close the file; it is removed when nothing is left in it."""
        self._spool.close()
