"""The ledger forgets a producer a while after its run ended, and never one whose run goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.collector.ledger import Ledger
from pipeline.testing import event
from pipeline.wire.events import Event

DAY_S = 24 * 3600.0


class Clock:
    """Wall time that a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _event(kind: str, producer: str, seq: int) -> Event:
    return event(kind, seq=seq, producer=producer, trial_dir="t1")


def test_an_ended_producer_is_forgotten_after_the_ttl_and_a_running_one_never(tmp_path: Path) -> None:
    """Marks of a run that ended over ended_ttl_s ago leave the ledger, on disk too; others stay."""
    clock = Clock()
    ledger = Ledger(tmp_path / "ledger.json", tmp_path, (), ended_ttl_s=DAY_S, clock=clock)
    ledger.after([_event("result", "done", 0), _event("experiment_end", "done", 1),
                  _event("result", "running", 0)])
    clock.now += DAY_S / 2
    ledger.after([_event("result", "running", 1)])
    assert ledger.marks == {"done": 1, "running": 1}  # within the ttl: a late replay is still deduped
    clock.now += DAY_S
    ledger.after([_event("result", "running", 2)])
    assert ledger.marks == {"running": 2} and "done" not in ledger.ended
    again = Ledger(tmp_path / "ledger.json", tmp_path, ())
    assert again.marks == {"running": 2} and again.ended == {}


def test_a_zero_ttl_keeps_every_producer_and_a_negative_one_is_refused(tmp_path: Path) -> None:
    """ended_ttl_s=0 remembers every ended run however old; a negative ttl is a ValueError."""
    clock = Clock()
    ledger = Ledger(tmp_path / "ledger.json", tmp_path, (), clock=clock)
    ledger.after([_event("experiment_end", "done", 0)])
    clock.now += 365 * DAY_S
    ledger.after([_event("result", "other", 0)])
    assert ledger.marks == {"done": 0, "other": 0}
    with pytest.raises(ValueError, match="-1"):
        Ledger(tmp_path / "other.json", tmp_path, (), ended_ttl_s=-1)
