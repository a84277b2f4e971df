"""The sender's settings: memory, frame and spool bounds, timings, and what to do when all is full."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FullPolicy", "SenderConfig", "default_spool_dir"]


class FullPolicy(str, enum.Enum):
    """What the sender does when memory and spool are both full."""

    BLOCK = "block"
    DROP_NEWEST = "drop-newest"
    DROP_OLDEST = "drop-oldest"


def default_spool_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "tunebus" / "spool"


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """How much the sender may hold in memory and on disk, and how often it sends and resends."""

    max_buffer_events: int = 200_000
    max_buffer_bytes: int = 256 * 1024 * 1024
    max_handoff_events: int = 100_000
    max_frame_events: int = 2_000
    max_frame_bytes: int = 4 * 1024 * 1024
    max_event_bytes: int = 16 * 1024 * 1024
    """An event larger than this travels with its bulkiest values replaced by a note of their size
    (done by the sender thread); keep it under the collector's ``--max-message-bytes``."""
    send_interval_s: float = 0.005
    resend_after_s: float = 5.0
    ack_silence_s: float = 10.0
    """Log one line when nothing was acknowledged this long while events wait, one when acks resume."""
    idle_poll_s: float = 1.0
    """How long the thread sleeps with nothing to do; a submit, an ack or close wakes it sooner."""
    spool_dir: str | None = None
    spool_max_bytes: int = 1024 * 1024 * 1024
    when_full: FullPolicy = FullPolicy.DROP_OLDEST

    def __post_init__(self) -> None:
        for name in ("max_buffer_events", "max_buffer_bytes", "max_handoff_events",
                     "max_frame_events", "max_frame_bytes", "max_event_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("send_interval_s", "resend_after_s", "ack_silence_s", "idle_poll_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.spool_max_bytes < 0:
            raise ValueError(f"spool_max_bytes must be >= 0, got {self.spool_max_bytes!r}")
        object.__setattr__(self, "when_full", FullPolicy(self.when_full))

    def spool_directory(self) -> Path:
        return Path(self.spool_dir).expanduser() if self.spool_dir else default_spool_dir()
