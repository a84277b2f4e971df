"""TensorBoard's event file format: TFRecords with masked CRC32C, files we create, the last step read back."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import crc32c
from tensorboardX.proto.event_pb2 import Event as TbEvent
from tensorboardX.proto.event_pb2 import SessionLog

from sinks.open_files import OpenFiles, PooledFile

__all__ = ["FILE_SUFFIX", "RESULT_TAG_PREFIX", "EventFile", "last_result_step", "read_records", "record"]

FILE_VERSION = "brain.Event:2"
MAX_NAME_TRIES = 1_000
RESULT_TAG_PREFIX = "ray/tune/"
FILE_SUFFIX = ".tunebus"
"""In every event file's name (tensorboardX's ``filename_suffix``), so no other writer
(Tune's TBXLoggerCallback in the same second on the same host) can pick the same name."""


def _masked_crc(data: bytes) -> int:
    x = crc32c.crc32c(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC32C, the data, its masked CRC32C."""
    head = struct.pack("<Q", len(data))
    return b"".join((head, struct.pack("<I", _masked_crc(head)), data,
                     struct.pack("<I", _masked_crc(data))))


def _create(directory: Path, files: OpenFiles) -> tuple[Path, PooledFile]:
    """A new ``events.out.tfevents.<time>.<host>.tunebus[.<n>]`` file (never reused; sorts in order)."""
    base = f"events.out.tfevents.{str(time.time())[:10]}.{socket.gethostname()}{FILE_SUFFIX}"
    for n in range(MAX_NAME_TRIES):
        path = directory / (base if n == 0 else f"{base}.{n}")
        try:
            return path, files.open(path, "xb")
        except FileExistsError:
            continue
    raise FileExistsError(f"{MAX_NAME_TRIES} event files named {base}* already in {directory}")


class EventFile:
    """One event file: starts with the file_version event; records wait in memory until ``flush``."""

    def __init__(self, directory: Path, files: OpenFiles) -> None:
        self.path, self._file = _create(directory, files)
        self._pending: list[bytes] = []
        self.bytes_written = 0
        self.add(TbEvent(wall_time=time.time(), file_version=FILE_VERSION))

    def add(self, event: TbEvent) -> None:
        self._pending.append(record(event.SerializeToString()))

    def flush(self) -> None:
        if self._pending:
            self.bytes_written += self._file.write(b"".join(self._pending))
            self._pending.clear()
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


def read_records(path: Path) -> Iterator[bytes]:
    """The data of each complete TFRecord in ``path`` (CRCs not checked: these are our own)."""
    with path.open("rb") as f:
        while len(head := f.read(12)) == 12:
            data = f.read(struct.unpack("<Q", head[:8])[0])
            if len(f.read(4)) < 4:
                return
            yield data


def last_result_step(directory: Path) -> int | None:
    """The step of the last result of the lineage in ``directory``'s event files (None: none)."""
    last: int | None = None
    for path in sorted(directory.glob(f"events.out.tfevents.*{FILE_SUFFIX}*")):
        for data in read_records(path):
            event = TbEvent.FromString(data)
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                last = min(last, event.step - 1) if last is not None else None
            elif any(v.tag.startswith(RESULT_TAG_PREFIX) for v in event.summary.value):
                last = max(last or 0, event.step)
    return last
