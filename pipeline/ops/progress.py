"""A live progress line: the sweep's results, and the collector's writes read from its status socket."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO

from pipeline.collector.snapshot import CollectorSnapshot
from pipeline.ops.status_client import ask_status

__all__ = ["ProgressLine", "bar"]

BAR_WIDTH = 20


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#####.....]`` for ``done`` of ``total``."""
    filled = 0 if total <= 0 else min(width, width * done // total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def progress_text(reported: int, total: int, status: CollectorSnapshot | None) -> str:
    """One line: results the sweep reported, and events the slowest sink has written."""
    sweep = f"sweep {bar(reported, total)} {reported}/{total} results"
    if status is None:
        return f"{sweep} | collector: no answer"
    received = status.events
    written = min((s.events for s in status.sinks.values() if s.durable), default=0)
    return f"{sweep} | collector {bar(written, received)} {written}/{received} events written"


class ProgressLine:
    """A thread printing ``progress_text`` every ``interval_s``: one rewritten line on a TTY."""

    def __init__(self, status_address: str, total: int, reported: Callable[[], int],
                 stream: TextIO = sys.stderr, interval_s: float = 0.5) -> None:
        self.status_address, self.total, self.reported = status_address, total, reported
        self.stream = stream
        self.tty = stream.isatty()
        self.interval_s = interval_s if self.tty else max(interval_s, 2.0)  # plain lines: fewer
        self._stop = threading.Event()
        self._last = ""
        self._thread = threading.Thread(target=self._run, name="tunebus-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Print the final state and end the line; safe to call twice."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
            self._show(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._show()

    def _show(self, final: bool = False) -> None:
        try:
            status: CollectorSnapshot | None = ask_status(self.status_address, timeout_s=1.0)
        except (TimeoutError, ValueError):
            status = None
        text = progress_text(self.reported(), self.total, status)
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self._last)) + ("\n" if final else ""))
        elif text != self._last or final:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last = text
