"""Quarantine: frames that are not valid events, kept byte for byte for a person to look at."""

from __future__ import annotations

import collections
import logging
import time
from pathlib import Path

import msgpack

from pipeline.wire.codec import encode_stored
from pipeline.wire.events import Event, SchemaError

__all__ = ["Quarantine", "read_quarantine"]

log = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.msgpack"


class Quarantine:
    """Appends ``[ts, sender identity, [faults], raw frame]`` records up to ``max_bytes``.

    Each kind of fault is logged once; every one is counted. Past ``max_bytes``
    the frames are counted and no longer kept.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes!r}")
        self.path = directory / QUARANTINE_FILE
        self.max_bytes = max_bytes
        self.faults: collections.Counter[str] = collections.Counter()
        self.frames = 0
        self.kept_bytes = self.path.stat().st_size if self.path.exists() else 0

    def add(self, identity: bytes, frame: bytes, faults: list[SchemaError]) -> None:
        self.frames += 1
        for fault in faults:
            if not self.faults[fault.fault]:
                log.warning("quarantined a frame from %r: %s (said once per kind of fault)",
                            identity[:64], fault)
            self.faults[fault.fault] += 1
        record = msgpack.packb([time.time(), identity, [str(f) for f in faults], frame])
        if self.kept_bytes + len(record) > self.max_bytes:
            self.faults["quarantine-full"] += 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            f.write(record)
        self.kept_bytes += len(record)

    def add_refused(self, sink: str, event: Event, exc: Exception) -> None:
        """An event ``sink`` cannot write because of its data: kept as a bad frame is."""
        fault = SchemaError("sink-refused", f"{sink}: {type(exc).__name__}: {exc}"[:300])
        self.add(event.producer.encode(), encode_stored(event), [fault])


def read_quarantine(path: Path) -> list[list[object]]:
    """Every record of a quarantine file."""
    with path.open("rb") as f:
        return list(msgpack.Unpacker(f, raw=False))
