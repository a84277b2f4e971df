"""The spool: an append-only file of the events a sender cannot keep in memory, read back in order."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["Spool", "iter_spool", "read_spool", "write_spool"]

MAGIC = b"TBSPOOL1"
RECORD = struct.Struct(">IQ")  # data length, seq
Item = tuple[int, bytes]
COPY_CHUNK = 1 << 20


def _header(producer: str) -> bytes:
    name = producer.encode()
    return MAGIC + struct.pack(">H", len(name)) + name


class Spool:
    """Events in seq order on disk: ``append`` at the end, ``read`` from the front.

    The file holds a header naming the producer, then ``[length, seq, event]``
    records. Once everything written has been read back the file is emptied;
    when the end of the file would pass ``max_bytes`` the unread records are
    moved to the front. ``append`` refuses a record that would take the unread
    bytes past ``max_bytes``.
    """

    def __init__(self, path: Path, producer: str, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes!r}")
        self.path = path
        self.producer = producer
        self.max_bytes = max_bytes
        self._header = _header(producer)
        self._f: BinaryIO | None = None
        self._at_end = False
        self._read_at = self._write_at = len(self._header)
        self.unread = 0

    def __len__(self) -> int:
        return self.unread

    @property
    def used_bytes(self) -> int:
        return self._write_at - self._read_at

    def append(self, seq: int, data: bytes) -> bool:
        """Write one event at the end; False if it does not fit in ``max_bytes``."""
        size = RECORD.size + len(data)
        if len(self._header) + self.used_bytes + size > self.max_bytes:
            return False
        f = self._open()
        if self._write_at + size > self.max_bytes:
            self._compact(f)
        if not self._at_end:  # a seek flushes the write buffer: only when a read moved away
            f.seek(self._write_at)
            self._at_end = True
        f.write(RECORD.pack(len(data), seq))
        f.write(data)
        self._write_at += RECORD.size + len(data)
        self.unread += 1
        return True

    def read(self, max_events: int) -> list[Item]:
        """Up to ``max_events`` from the front; the file is emptied once all are read."""
        if not self.unread:
            return []
        f = self._open()
        f.flush()
        self._at_end = False
        f.seek(self._read_at)
        items = []
        for _ in range(min(max_events, self.unread)):
            length, seq = RECORD.unpack(f.read(RECORD.size))
            items.append((seq, f.read(length)))
        self._read_at = f.tell()
        self.unread -= len(items)
        if not self.unread:
            self._reset()
        return items

    def sync(self) -> None:
        """Hand what was appended to the operating system (survives the driver being killed)."""
        if self._f is not None:
            self._f.flush()

    def drop_oldest(self) -> bool:
        """Skip the oldest unread event; False if there is none."""
        return bool(self.read(1))

    def close(self) -> None:
        """Close the file and remove it if nothing in it is left unread."""
        if self._f is not None:
            self._f.close()
            self._f = None
            self._at_end = False
            if not self.unread:
                self.path.unlink(missing_ok=True)

    def _open(self) -> BinaryIO:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f: BinaryIO = self.path.open("w+b")
            f.write(self._header)
            self._f = f
        return self._f

    def _compact(self, f: BinaryIO) -> None:
        """Move the unread records to the front of the file, a chunk at a time."""
        src, dst = self._read_at, len(self._header)
        while src < self._write_at:
            self._at_end = False
            f.seek(src)
            chunk = f.read(min(COPY_CHUNK, self._write_at - src))
            f.seek(dst)
            f.write(chunk)
            src += len(chunk)
            dst += len(chunk)
        f.truncate(dst)
        self._read_at, self._write_at = len(self._header), dst

    def peek_seq(self) -> int | None:
        """The seq of the oldest unread event, if any."""
        if not self.unread:
            return None
        f = self._open()
        f.flush()
        self._at_end = False
        f.seek(self._read_at)
        return int(RECORD.unpack(f.read(RECORD.size))[1])

    def _reset(self) -> None:
        assert self._f is not None
        self._f.truncate(len(self._header))
        self._read_at = self._write_at = len(self._header)

    def remaining(self) -> Iterator[Item]:
        """The unread events, without consuming them."""
        if not self.unread:
            return iter(())
        f = self._open()
        f.flush()
        self._at_end = False
        f.seek(self._read_at)
        return (_read_record(f) for _ in range(self.unread))


def _read_record(f: BinaryIO) -> Item:
    length, seq = RECORD.unpack(f.read(RECORD.size))
    return seq, f.read(length)


def write_spool(path: Path, producer: str, items: Iterable[Item]) -> int:
    """Write ``items`` as a spool file a later ``tunebus replay`` can deliver; returns the count."""
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with tmp.open("wb") as f:
        f.write(_header(producer))
        for seq, data in items:
            f.write(RECORD.pack(len(data), seq))
            f.write(data)
            count += 1
    os.replace(tmp, path)
    return count


def read_spool(path: Path) -> tuple[str, list[Item]]:
    """The producer and the events of a spool file; raises ValueError if it is not one."""
    with path.open("rb") as f:
        producer = _read_header(f, path)
        return producer, list(_records(f))


def iter_spool(path: Path) -> Iterator[Item]:
    """The events of a spool file one at a time, without holding them all in memory."""
    with path.open("rb") as f:
        _read_header(f, path)
        yield from _records(f)


def _read_header(f: BinaryIO, path: Path) -> str:
    if f.read(len(MAGIC)) != MAGIC:
        raise ValueError(f"{path} is not a tunebus spool file")
    (name_length,) = struct.unpack(">H", f.read(2))
    return f.read(name_length).decode()


def _records(f: BinaryIO) -> Iterator[Item]:
    while header := f.read(RECORD.size):
        if len(header) < RECORD.size:
            return  # a record cut short by a killed process: everything before it is whole
        length, seq = RECORD.unpack(header)
        data = f.read(length)
        if len(data) < length:
            return
        yield seq, data
