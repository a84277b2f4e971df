"""What both collector supervisors share: a child that dies with its parent, and restarts with backoff."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RESTARTS", "RestartPolicy", "term_with_parent"]

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """At most ``max_restarts`` restarts of a child that died, the n-th after ``first_delay_s * 2**n``
    (capped at ``max_delay_s``): a crash loop slows down and then gives up instead of spinning."""

    max_restarts: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def exhausted(self, restarts: int) -> bool:
        """Whether a child restarted ``restarts`` times already may not be restarted again."""
        return restarts >= self.max_restarts

    def delay_s(self, restarts: int) -> float:
        """The wait before the restart that follows ``restarts`` earlier ones."""
        return float(min(self.first_delay_s * 2 ** restarts, self.max_delay_s))


RESTARTS = RestartPolicy()
"""The policy ``tunebus collect --shards`` and the Ray actors use."""


def term_with_parent() -> Callable[[], object] | None:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when the thread that started it dies
    (its supervisor killed with -9 too), so a collector never outlives its supervisor; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child only calls it
    return lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
