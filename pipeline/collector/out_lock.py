"""One collector per ``--out``: an OS lock on ``<out>/.tunebus/collector.lock``, held for its life."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_FILE", "OutLock", "OutLocked"]

LOCK_FILE = "collector.lock"


class OutLocked(OSError):
    """Another live collector writes into this ``--out``."""


class OutLock:
    """An exclusive ``flock`` on the state directory's lock file, naming its holder inside.

    Exactly-once rests on one writer per ``--out`` (two collectors would cut each
    other's files back to their own ledgers). The kernel drops the lock when the
    holder dies, however it dies, so a killed collector never blocks a restart.
    The file holds ``pid`` and bind address as text, for the refusal message.

    Args:
        state_dir: ``<out>/.tunebus``; created (with ``<out>``) if missing.
        bind: the address the collector binds, written into the lock file.

    Raises:
        OutLocked: another process holds the lock.
    """

    def __init__(self, state_dir: Path, bind: str) -> None:
        self.path = state_dir / LOCK_FILE
        self.created = _missing_dirs(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = self._acquire()
        self.note(bind)

    def _acquire(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 1024, 0).decode(errors="replace").split()
                os.close(fd)
                pid, bind = (holder + ["?", "?"])[:2]
                raise OutLocked(f"{self.path.parent.parent} is in use by another collector "
                                f"(pid {pid}, bind {bind}); one collector per --out") from None
            # A holder that gave up may have unlinked the file we opened: lock the file at the path.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            os.close(fd)

    def note(self, bind: str) -> None:
        """Write this process's pid and ``bind`` (once known, the bound address) into the file."""
        if self._fd is not None:
            text = f"{os.getpid()} {bind}\n".encode()
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)

    def release(self, discard: bool = False) -> None:
        """Let the next collector in; ``discard``: also remove the directories this lock created
        (a start that failed leaves no fresh ``.tunebus`` behind). Safe to call twice."""
        if self._fd is None:
            return
        if discard and self.created:
            self.path.unlink(missing_ok=True)
            for directory in self.created:
                with contextlib.suppress(OSError):  # not empty: something else lives there
                    directory.rmdir()
        os.close(self._fd)
        self._fd = None


def _missing_dirs(directory: Path) -> list[Path]:
    """``directory`` and those of its parents that do not exist, deepest first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing
