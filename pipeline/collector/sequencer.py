"""Each producer's events in sequence, each once: what a frame adds, and what to answer its producer."""

from __future__ import annotations

import collections
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.wire.events import Event

__all__ = ["Reply", "Sequenced", "Sequencer"]

_TRIAL = operator.attrgetter("trial")

Reply = tuple[str, int]
"""A control message for the producer: ``("ack", seq)`` or ``("nack", seq)``."""


@dataclass(frozen=True, slots=True)
class Sequenced:
    """The events of a frame that continue its producer's stream, and the replies it calls for."""

    events: list[Event]
    replies: tuple[Reply, ...] = ()
    foreign: Event | None = None
    """The event the stream stopped at because another shard owns its trial (not taken)."""


class Sequencer:
    """Takes each producer's events strictly in sequence; no sockets, no clocks.

    A repeat is dropped and answered with the last acknowledgement again (the
    producer may have missed it); a gap is answered with ``nack`` at the first
    missing seq, so the producer resends from there. A frame whose base skips
    past the expected seq means the producer gave those events up (its full
    policy): they are counted as dropped, not waited for. ``restored`` (the
    ledger's marks, producer to last written seq) continues each producer after
    what is already written.

    ``owns`` (a shard's ``OwnedTrials``; None when not sharded) keeps another shard's
    trials out: the stream stops before the first event of a trial this shard does not
    own (experiment events, with no trial, are everyone's), which is neither taken nor
    acknowledged, so its producer keeps it and resends it; that producer is ``held``.
    """

    def __init__(self, restored: Mapping[str, int] | None = None,
                 owns: Mapping[str, bool] | None = None) -> None:
        restored = restored or {}
        self._owns = owns
        self.held: dict[str, Event] = {}
        """Producers whose stream waits at a trial another shard owns: the event it waits at."""
        self.expected: dict[str, int] = {p: seq + 1 for p, seq in restored.items()}
        self.acked: dict[str, int] = dict(restored)
        self.duplicates = 0
        self.gaps = 0
        self.per_producer: collections.Counter[str] = collections.Counter()
        """Events accepted from each producer."""
        self.dropped: collections.Counter[str] = collections.Counter()
        """Events each producer gave up: its frame's base skipped past them."""

    def accept(self, producer: str, base: int, events: Sequence[Event]) -> Sequenced:
        """The frame's events that continue ``producer``'s stream, each exactly once, and the replies."""
        if not events:
            return Sequenced([])
        # Everything below the producer's base is already written: never expect less.
        known = self.expected.get(producer, base)
        if base > known:
            self.dropped[producer] += base - known
        expected = max(known, base)
        accepted: list[Event] = []
        replies: list[Reply] = []
        # Another shard's trials in this frame: usually none, so each event costs one truth test.
        owns = self._owns
        theirs = [t for t in set(map(_TRIAL, events)) if t and not owns[t]] if owns is not None else None
        foreign: Event | None = None
        for event in events:
            if event.seq < expected:
                self.duplicates += 1
                continue
            if event.seq > expected:
                self.gaps += 1
                replies.append(("nack", expected))
                break
            if theirs and event.trial in theirs:
                foreign = event
                break
            accepted.append(event)
            expected += 1
        self.expected[producer] = expected
        if foreign is not None:
            self.held[producer] = foreign
        elif accepted and producer in self.held:
            del self.held[producer]
        self.per_producer[producer] += len(accepted)
        if len(accepted) < len(events) and producer in self.acked:
            replies.append(("ack", self.acked[producer]))
        return Sequenced(accepted, tuple(replies), foreign)

    def acks_due(self, written_mark: Callable[[str], int]) -> list[tuple[str, int]]:
        """Producers whose ``written_mark`` passed their last ack, with the new mark (now acked)."""
        due: list[tuple[str, int]] = []
        for producer in self.expected:
            mark = written_mark(producer)
            if mark > self.acked.get(producer, -1):
                self.acked[producer] = mark
                due.append((producer, mark))
        return due
