"""A budget of open files for one sink: the least recently used one is closed to open another."""

from __future__ import annotations

import errno
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

__all__ = ["DEFAULT_LIMIT", "OpenFiles", "PooledFile"]

DEFAULT_LIMIT = 256
"""A sink's budget until the collector hands it its share of ``--max-open-files``."""
OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})


class PooledFile:
    """A file its pool may close between two uses: reopened for append, so its bytes are as if never closed.

    Opened at once with ``mode`` (``"xb"`` creates, ``"a"`` appends...); every reopening appends.
    """

    def __init__(self, pool: OpenFiles, path: Path, mode: str, newline: str | None) -> None:
        self.path = path
        self.closed = False
        self._pool = pool
        self._newline = newline
        self._reopen = "a" + ("b" if "b" in mode else "")
        self.file: IO[Any] | None = pool.opened(self, mode)

    def _open(self) -> IO[Any]:
        if self.file is None:
            self.file = self._pool.opened(self, self._reopen)
            self._pool.reopened += 1
        else:
            self._pool.used(self)
        return self.file

    def open_with(self, mode: str) -> IO[Any]:
        """The file itself, opened with ``mode`` (called by the pool)."""
        return self.path.open(mode, newline=self._newline) if "b" not in mode else self.path.open(mode)

    def write(self, data: Any) -> int:
        """Write ``data``, reopening the file first if the pool closed it."""
        return self._open().write(data)

    def tell(self) -> int:
        """The position (the end: every mode here appends or starts a new file)."""
        return self._open().tell()

    def flush(self) -> None:
        """Flush if open (a file the pool closed was flushed then)."""
        if self.file is not None:
            self.file.flush()

    def shut(self) -> None:
        """Close the file itself (the pool needs the room); the next write reopens it."""
        if self.file is not None:
            self.file.close()
            self.file = None

    def close(self) -> None:
        """Close for good; safe to call twice."""
        self._pool.forget(self)
        self.shut()
        self.closed = True


class OpenFiles:
    """At most ``limit`` files open at once, for one thread (a sink's worker).

    Running out of descriptors anyway (EMFILE, ENFILE: the process's other files) is
    back-pressure too: the least recently used file is closed and the open retried.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self.limit = limit
        self._open: OrderedDict[PooledFile, None] = OrderedDict()
        self.reopened = 0

    def open(self, path: Path, mode: str, newline: str | None = None) -> PooledFile:
        """``path`` opened with ``mode`` (text modes take ``newline``), within the budget."""
        return PooledFile(self, path, mode, newline)

    def opened(self, handle: PooledFile, mode: str) -> IO[Any]:
        """Open ``handle``'s file with ``mode``, closing the least recently used to make room."""
        while len(self._open) >= self.limit:
            self._close_oldest()
        while True:
            try:
                file = handle.open_with(mode)
                break
            except OSError as exc:
                if exc.errno not in OUT_OF_FILES or not self._open:
                    raise
                self._close_oldest()
        self._open[handle] = None
        return file

    def used(self, handle: PooledFile) -> None:
        """``handle`` was just used: the last to be closed."""
        self._open.move_to_end(handle)

    def forget(self, handle: PooledFile) -> None:
        """``handle`` is closed for good."""
        self._open.pop(handle, None)

    def _close_oldest(self) -> None:
        handle, _ = self._open.popitem(last=False)
        handle.shut()

    def __len__(self) -> int:
        return len(self._open)
