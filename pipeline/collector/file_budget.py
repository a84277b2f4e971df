"""How many files the collector's sinks may keep open: the process's limit, raised, and shared out."""

from __future__ import annotations

import logging

from sinks.open_files import OpenFiles

__all__ = ["RESERVED_FILES", "open_file_budget", "share"]

log = logging.getLogger(__name__)

RESERVED_FILES = 64
"""Descriptors kept out of the sinks' budget: sockets, ledgers, backlogs, Aim's own files."""
MIN_BUDGET = 8
DEFAULT_MAX = 4_096


def open_file_budget(asked: int | None) -> int:
    """The sinks' budget: ``asked``, or half the soft RLIMIT_NOFILE once raised to the hard limit
    (at most ``DEFAULT_MAX``).

    Never more than the soft limit less ``RESERVED_FILES``, so running out of descriptors
    is the budget's doing (the least recently used file closes), not an error.
    """
    soft = _raised_soft_limit()
    room = max(MIN_BUDGET, soft - RESERVED_FILES) if soft > 0 else 1 << 30
    if asked is None:
        return max(MIN_BUDGET, min(room, DEFAULT_MAX, soft // 2 if soft > 0 else DEFAULT_MAX))
    if asked > room:
        log.warning("--max-open-files %d is past this process's limit of %d open files; using %d",
                    asked, soft, room)
        return room
    return asked


def share(budget: int, sinks: int) -> OpenFiles:
    """One sink's share of ``budget`` among ``sinks``."""
    return OpenFiles(max(1, budget // max(1, sinks)))


def _raised_soft_limit() -> int:
    """The soft RLIMIT_NOFILE after raising it to the hard limit (-1: no limit or no resource module)."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return -1 if soft == resource.RLIM_INFINITY else int(soft)
