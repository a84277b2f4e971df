"""Gates: which of a trial's results go on, by event time (``every_s``) or by count (``every_n``, ``log``)."""

from __future__ import annotations

import math
from typing import Any

from pipeline.collector.filters import PerTrial
from pipeline.wire.events import Event

__all__ = ["EveryN", "EveryS", "LogGate"]


class EveryS(PerTrial):
    """At most one result per trial per ``seconds`` of event time (Acme's ``TimeFilter``), the first kept."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        if not (isinstance(seconds, (int, float)) and 0 < seconds < math.inf):
            raise ValueError(f"every_s must be a number of seconds > 0, got {seconds!r}")
        self.seconds = seconds

    def __str__(self) -> str:
        return f"every_s={self.seconds:g}"

    def result(self, stream: str, event: Event, metrics: dict[Any, Any]) -> list[Event]:
        last = self.trials.get(stream)
        if last is not None and event.ts - last < self.seconds:
            return []
        self.trials[stream] = event.ts
        return [event]


class _Gate(PerTrial):
    """Keeps a trial's ``t``-th result (from 0) when ``opens(t)`` (Acme's ``GatedFilter``)."""

    def __init__(self, what: str, n: int) -> None:
        super().__init__()
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= self.least):
            raise ValueError(f"{what} must be a whole number >= {self.least}, got {n!r}")
        self.n = n

    least = 1

    def opens(self, t: int) -> bool:
        raise NotImplementedError

    def result(self, stream: str, event: Event, metrics: dict[Any, Any]) -> list[Event]:
        t = self.trials.get(stream, 0)
        self.trials[stream] = t + 1
        return [event] if self.opens(t) else []


class EveryN(_Gate):
    """A trial's results 0, n, 2n, ... (Acme's ``GatedFilter.periodic``)."""

    def __init__(self, n: int) -> None:
        super().__init__("every_n", n)

    def __str__(self) -> str:
        return f"every_n={self.n}"

    def opens(self, t: int) -> bool:
        return t % self.n == 0


class LogGate(_Gate):
    """A trial's results 0..n-1, then every n-th up to n**2, every n**2-th up to n**3, ...

    Acme's ``GatedFilter.logarithmic`` (with n=10: 0, 1, ..., 9, 10, 20, ..., 90, 100,
    200, ...), in exact integer arithmetic.
    """

    least = 2

    def __init__(self, n: int) -> None:
        super().__init__("log", n)

    def __str__(self) -> str:
        return f"log={self.n}"

    def opens(self, t: int) -> bool:
        power = 1
        while power * self.n <= t:
            power *= self.n
        return t % power == 0
