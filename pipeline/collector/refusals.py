"""Clients the bus refused (CurveZMQ/ZAP): counted, and each client and reason logged once."""

from __future__ import annotations

import collections
import logging

__all__ = ["Refusals"]

log = logging.getLogger(__name__)

MAX_REMEMBERED = 1_000
"""Distinct (address, reason) pairs remembered for logging once; past it, refusals are only counted."""


class Refusals:
    """A ``Refused`` callback: ``refusals(address, why)`` for every refused handshake."""

    def __init__(self) -> None:
        self.total = 0
        self.by_reason: collections.Counter[str] = collections.Counter()
        self._said: set[tuple[str, str]] = set()

    def __call__(self, address: str, why: str) -> None:
        self.total += 1
        self.by_reason[why.split(":")[0]] += 1
        if (address, why) not in self._said and len(self._said) < MAX_REMEMBERED:
            self._said.add((address, why))
            log.warning("refused a client at %s: %s", address, why)
