"""The driver's one line when acknowledgements stop, and one when they resume: no sockets, no threads."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["AckWatch"]


class AckWatch:
    """Watches for a collector that stopped (or never started) acknowledging what the sender holds.

    The sender calls ``held`` on every turn while it holds events and ``acked`` on
    progress; each returns a line to log, at most once per silence.
    """

    def __init__(self, address: str, silent_after_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not silent_after_s > 0:
            raise ValueError(f"silent_after_s must be positive, got {silent_after_s!r}")
        self.address = address
        self.silent_after_s = silent_after_s
        self.clock = clock
        self._since: float | None = None
        self._said = False

    def held(self, waiting: int, heard_before: bool) -> str | None:
        """Events are held: the line to log if no ack came for ``silent_after_s``, else None."""
        now = self.clock()
        if self._since is None:
            self._since = now
        if self._said or now - self._since < self.silent_after_s:
            return None
        self._said = True
        silent = f"{now - self._since:.0f}s"
        if not heard_before:
            return (f"tunebus: no collector at {self.address} has answered for {silent} ({waiting} events "
                    f"waiting, kept and spilled to disk): check that tunebus collect runs there, and with "
                    f"CurveZMQ that curve_server_key is its public key and this driver's public key is in "
                    f"its --curve-clients (the collector's log names refused clients)")
        return (f"tunebus: the collector at {self.address} has acknowledged nothing for {silent} "
                f"({waiting} events waiting, kept and spilled to disk)")

    def acked(self, waiting: int) -> str | None:
        """Progress: the line to log if a silence had been reported, else None."""
        self._since = self.clock() if waiting else None
        if not self._said:
            return None
        self._said = False
        return f"tunebus: the collector at {self.address} acknowledges again ({waiting} events waiting)"

    def idle(self) -> None:
        """Nothing is held: no silence to time."""
        self._since = None
