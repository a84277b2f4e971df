"""The sender's buffer: every undelivered event in seq order, in memory up to a bound, then spooled."""

from __future__ import annotations

import bisect
import collections
import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.producer.sender_config import FullPolicy, SenderConfig
from pipeline.wire.codec import decode_event, encode_stored
from pipeline.wire.spool import Spool

__all__ = ["Item", "OutgoingFrame", "SendBuffer", "shrink_event"]

Item = tuple[int, bytes]
"""A seq and its encoded event."""
Shrink = Callable[[bytes, int], bytes]
_data = operator.itemgetter(1)


def _pop_left(items: collections.deque[Item], count: int) -> list[Item]:
    """The first ``count`` items of ``items``, taken off it in C (no Python loop per event)."""
    return list(itertools.starmap(items.popleft, itertools.repeat((), count)))


def shrink_event(data: bytes, max_bytes: int) -> bytes:
    """An encoded event over ``max_bytes`` encoded again with its bulkiest values noted."""
    return encode_stored(decode_event(data), max_bytes)


@dataclass(frozen=True, slots=True)
class OutgoingFrame:
    """The next events to send, and the frame's base: the first seq the producer still holds."""

    base: int
    items: list[Item]

    @property
    def events(self) -> list[bytes]:
        return list(map(_data, self.items))


class SendBuffer:
    """What a sender holds until acknowledged: in flight, then queued, then spooled, in seq order.

    ``take`` moves handed-over events into memory while it has room
    (``max_buffer_events``, ``max_buffer_bytes``) and spills the rest, in order,
    to ``spool``; with the spool full too, ``when_full`` blocks (the event waits
    in the hand-over queue), drops the newest or drops the oldest, and counts
    each drop. ``refill`` reads the spool back as memory frees. ``next_frame``
    and ``sent`` move queued events in flight a frame at a time; ``release``
    frees what an ack covers and ``rewind`` queues in-flight events again after
    a nack or a resend timeout. No sockets, no threads, no clocks.
    """

    def __init__(self, config: SenderConfig, spool: Spool, shrink: Shrink = shrink_event) -> None:
        self.config = config
        self.spool = spool
        self._shrink = shrink
        self.queued: collections.deque[Item] = collections.deque()
        self.inflight: collections.deque[Item] = collections.deque()
        self.memory_bytes = 0
        self.dropped = 0
        self.resent = 0
        self.acked_seq = -1
        self.moved_seq = -1
        """The last seq taken from the hand-over queue (held, spooled or dropped)."""

    @property
    def in_memory(self) -> int:
        return len(self.queued) + len(self.inflight)

    @property
    def holding(self) -> bool:
        """Whether anything waits to be sent or acknowledged."""
        return bool(self.queued or self.inflight or self.spool.unread)

    @property
    def settled_seq(self) -> int:
        """The highest seq below which nothing is held any more (delivered or dropped)."""
        held = self.inflight or self.queued
        if held:
            return held[0][0] - 1
        if self.spool.unread:
            return (self.spool.peek_seq() or 0) - 1
        return self.moved_seq

    def take(self, incoming: collections.deque[Item]) -> None:
        """Move handed-over events into memory or, past its bounds, onto the spool.

        Stops early, leaving the rest in ``incoming``, when all is full and the
        policy is ``block``.
        """
        if self._take_all(incoming):
            return
        max_event_bytes = self.config.max_event_bytes
        while incoming:
            seq, data = item = incoming[0]
            if len(data) > max_event_bytes:
                incoming[0] = item = (seq, self._shrink(data, max_event_bytes))
                data = item[1]
            if not self.spool.unread and self._memory_has_room(len(data)):
                self.queued.append(item)
                self.memory_bytes += len(data)
            elif not self.spool.append(seq, data) and not self._when_full(item):
                return
            incoming.popleft()
            self.moved_seq = seq

    def _take_all(self, incoming: collections.deque[Item]) -> bool:
        """The common case in one pass: no spool to queue behind, room for all, none oversized."""
        count = len(incoming)  # the producer may append more meanwhile: those wait for the next take
        cfg = self.config
        if not count or self.spool.unread or self.in_memory + count > cfg.max_buffer_events:
            return False
        # Read in C under the GIL (no Python code runs between): the producer cannot append midway.
        sizes = list(map(len, map(_data, itertools.islice(incoming, count))))
        nbytes = sum(sizes)
        if max(sizes) > cfg.max_event_bytes or self.memory_bytes + nbytes > cfg.max_buffer_bytes:
            return False
        items = _pop_left(incoming, count)
        self.queued.extend(items)
        self.memory_bytes += nbytes
        self.moved_seq = items[-1][0]
        return True

    def refill(self) -> None:
        """Read spooled events back into memory, a frame's worth at most, as room allows."""
        cfg = self.config
        room = cfg.max_buffer_events - self.in_memory
        if self.spool.unread and room > 0 and len(self.queued) < cfg.max_frame_events:
            for item in self.spool.read(min(room, cfg.max_frame_events)):
                self.queued.append(item)
                self.memory_bytes += len(item[1])

    def next_frame(self) -> OutgoingFrame | None:
        """The queued events the next frame carries (still queued until ``sent``); None if none."""
        if not self.queued:
            return None
        cfg = self.config
        items = list(itertools.islice(self.queued, cfg.max_frame_events))
        # An event joins while the ones before it are under max_frame_bytes: the first always does.
        before = list(itertools.accumulate(map(len, map(_data, items[:-1]))))
        del items[1 + bisect.bisect_left(before, cfg.max_frame_bytes):]
        base = self.inflight[0][0] if self.inflight else items[0][0]
        return OutgoingFrame(base, items)

    def sent(self, frame: OutgoingFrame) -> None:
        """The socket took ``frame``: its events are in flight until acknowledged."""
        _pop_left(self.queued, len(frame.items))
        self.inflight.extend(frame.items)

    def release(self, acked_seq: int) -> bool:
        """Free every in-flight event up to ``acked_seq``; False if the ack brought no news."""
        inflight = self.inflight
        if inflight and inflight[-1][0] <= acked_seq:  # the usual ack: all of it, in one pass
            self.memory_bytes -= sum(map(len, map(_data, inflight)))
            inflight.clear()
        while inflight and inflight[0][0] <= acked_seq:
            self.memory_bytes -= len(inflight.popleft()[1])
        if acked_seq <= self.acked_seq:
            return False
        self.acked_seq = acked_seq
        return True

    def rewind(self, from_seq: int) -> int:
        """Queue every in-flight event from ``from_seq`` on for sending again; returns how many."""
        again: list[Item] = []
        while self.inflight and self.inflight[-1][0] >= from_seq:
            again.append(self.inflight.pop())
        self.queued.extendleft(again)
        self.resent += len(again)
        return len(again)

    def rewind_all(self) -> int:
        """Queue everything in flight again (nothing was acknowledged for too long)."""
        return self.rewind(self.inflight[0][0]) if self.inflight else 0

    def undelivered(self) -> list[Item]:
        """Everything held, in seq order, for the spool file a later replay delivers."""
        return [*self.inflight, *self.queued, *self.spool.remaining()]

    def _memory_has_room(self, nbytes: int) -> bool:
        cfg = self.config
        return (len(self.queued) + len(self.inflight) < cfg.max_buffer_events
                and self.memory_bytes + nbytes <= cfg.max_buffer_bytes)

    def _when_full(self, item: Item) -> bool:
        """Apply the full policy to ``item``; False leaves it waiting (``block``)."""
        policy = self.config.when_full
        if policy is FullPolicy.BLOCK:
            return False
        if policy is FullPolicy.DROP_OLDEST:
            while self.spool.drop_oldest():
                self.dropped += 1
                if self.spool.append(*item):
                    return True
        self.dropped += 1
        return True
