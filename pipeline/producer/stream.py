"""ProducerStream: one producer's events, encoded, numbered and handed to a sender per collector shard."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.producer.sender import FullPolicy, Sender, SenderConfig
from pipeline.wire.codec import encode_event
from pipeline.wire.shards import shard_of
from pipeline.wire.sockets import CurveKeys

__all__ = ["BLOCK_LOG_INTERVAL_S", "UNHEARD_END_TIMEOUT_S", "Emit", "Encode", "ProducerStream"]

log = logging.getLogger(__name__)

BLOCK_LOG_INTERVAL_S = 10.0
"""How often a producer blocked by ``when_full=block`` says so."""
UNHEARD_END_TIMEOUT_S = 2.0
"""How long the end of a run waits for a shard whose collector has acknowledged nothing yet."""

Encode = Callable[[str, str, int, float, str, str, str, dict[str, Any]], bytes]
"""``encode_event``'s signature: kind, producer, seq, ts, experiment, trial, trial_dir, payload."""
Emit = Callable[[str, tuple[str, str, str], dict[str, Any]], None]
"""``ProducerStream.emit``: kind, (experiment, trial, trial_dir), payload."""


class _Lane:
    """One shard's part of the stream: its address, stream id, sender (started lazily) and next seq."""

    __slots__ = ("address", "stream", "sender", "seq")

    def __init__(self, address: str, stream: str) -> None:
        self.address = address
        self.stream = stream
        self.sender: Sender | None = None
        self.seq = 0


class ProducerStream:
    """Encodes each event, numbers it per shard and submits it to that shard's ``Sender``.

    With one address the stream id is ``stream``; with several, shard ``k`` travels as
    ``<stream>.s<k>`` with its own sequence numbers, sender thread, memory window and
    spool file, so a shard that is down spills only its own events. A trial's events
    go to ``shard_of(trial, count)``; experiment-level events (no trial) go to every
    shard. A sender starts at its shard's first event, in the calling process.

    ``emit`` never waits on I/O: when a sender's hand-over queue is full the event is
    dropped and counted (``dropped``, said once), unless ``may_block`` and the sender's
    ``when_full`` is ``block``. A sender whose thread has failed drops the same way.
    Not picklable in use: its owners leave it out of their pickled state.
    """

    def __init__(self, stream: str, addresses: Sequence[str], config: SenderConfig,
                 curve: CurveKeys | None = None, *, encode: Encode = encode_event,
                 may_block: bool = False, dropping: str = "events are dropped") -> None:
        if not addresses:
            raise ValueError("a producer stream needs at least one address")
        self.stream = stream
        self.addresses = tuple(addresses)
        self.config = config
        self.curve = curve
        self.dropped = 0
        """Events given up: a sender behind by ``max_handoff_events``, or failed."""
        self._encode = encode
        self._may_block = may_block
        self._dropping = dropping
        several = len(self.addresses) > 1
        self._lanes = tuple(_Lane(a, f"{stream}.s{k}" if several else stream)
                            for k, a in enumerate(self.addresses))
        self._lane = self._lanes[0]
        self._routes: dict[str, _Lane] = {}
        self.emit: Emit = self._emit_routed if several else self._emit_one
        """Encode one event and hand it to its shard's sender (every shard's, without a trial):
        ``emit(kind, (experiment, trial, trial_dir), payload)``."""

    @property
    def streams(self) -> tuple[str, ...]:
        """The producer id on the bus of each shard's part, in shard order."""
        return tuple(lane.stream for lane in self._lanes)

    @property
    def senders(self) -> tuple[Sender, ...]:
        """The senders started so far (none before the first event, none after ``close``)."""
        return tuple(lane.sender for lane in self._lanes if lane.sender is not None)

    def _emit_one(self, kind: str, head: tuple[str, str, str], payload: dict[str, Any]) -> None:
        """``emit`` with one shard: ``_submit`` inline, one call less on the driver's hot path."""
        lane = self._lane
        sender = lane.sender or self._start(lane)
        if not sender.accepting() and not self._wait_or_drop(sender):
            return
        seq = lane.seq
        try:  # a sender whose thread failed (bad keys, an unwritable spool) raises: never the caller's loop
            sender.submit(seq, self._encode(kind, lane.stream, seq, time.time(), *head, payload))
        except RuntimeError as exc:
            self._drop(str(exc))
            return
        lane.seq = seq + 1

    def _emit_routed(self, kind: str, head: tuple[str, str, str], payload: dict[str, Any]) -> None:
        """``emit`` with several shards: to the trial's shard, or to every shard without a trial."""
        trial = head[1]
        if trial:
            self._submit(self._routes.get(trial) or self._route(trial), kind, head, payload)
            return
        for lane in self._lanes:
            self._submit(lane, kind, head, payload)

    def heard_from_collector(self) -> bool:
        """Whether any shard's collector has acknowledged anything."""
        return any(sender.heard_from_collector() for sender in self.senders)

    def unheard(self) -> tuple[str, ...]:
        """The addresses of started senders whose collector has acknowledged nothing yet."""
        return tuple(lane.address for lane in self._lanes
                     if lane.sender is not None and not lane.sender.heard_from_collector())

    def pending(self) -> dict[str, int]:
        """Events not yet confirmed, by shard address (only shards holding some)."""
        held = {}
        for lane in self._lanes:
            if lane.sender is not None:
                stats = lane.sender.stats()
                if stats.in_memory + stats.spooled:
                    held[lane.address] = stats.in_memory + stats.spooled
        return held

    def flush(self, timeout_s: float, *, unheard_timeout_s: float | None = None) -> bool:
        """Wait until every shard confirms every event so far, all within ``timeout_s``; False on timeout.

        A shard whose collector has acknowledged nothing yet is waited for at most
        ``unheard_timeout_s`` (when given) of that.
        """
        now = time.monotonic()
        deadline = now + timeout_s
        unheard_deadline = deadline if unheard_timeout_s is None else now + min(timeout_s, unheard_timeout_s)
        delivered = True
        for sender in self.senders:
            until = deadline if sender.heard_from_collector() else unheard_deadline
            delivered = sender.flush(max(0.0, until - time.monotonic())) and delivered
        return delivered

    def close(self, timeout_s: float = 0.0, *, unheard_timeout_s: float | None = None) -> bool:
        """Flush (as ``flush``) and stop every sender; undelivered events go to each shard's spool file.

        Safe to call twice. A later ``emit`` starts the shard's sender again, numbering on.
        Returns whether everything was delivered.
        """
        delivered = self.flush(timeout_s, unheard_timeout_s=unheard_timeout_s)
        for lane in self._lanes:
            sender, lane.sender = lane.sender, None
            if sender is not None:
                delivered = sender.close() and delivered
        return delivered

    def _route(self, trial: str) -> _Lane:
        lane = self._routes[trial] = self._lanes[shard_of(trial, len(self._lanes))]
        return lane

    def _submit(self, lane: _Lane, kind: str, head: tuple[str, str, str], payload: dict[str, Any]) -> None:
        """One event to one shard's sender (``_emit_one`` holds the same inline)."""
        sender = lane.sender or self._start(lane)
        if not sender.accepting() and not self._wait_or_drop(sender):
            return
        seq = lane.seq
        try:
            sender.submit(seq, self._encode(kind, lane.stream, seq, time.time(), *head, payload))
        except RuntimeError as exc:
            self._drop(str(exc))
            return
        lane.seq = seq + 1

    def _start(self, lane: _Lane) -> Sender:
        lane.sender = Sender(lane.address, lane.stream, self.config, self.curve)
        return lane.sender

    def _wait_or_drop(self, sender: Sender) -> bool:
        """The sender thread is behind by ``max_handoff_events``: block (if allowed and asked to) or drop."""
        if self._may_block and sender.config.when_full is FullPolicy.BLOCK:
            while not sender.wait_for_room(BLOCK_LOG_INTERVAL_S):
                if not sender.running:  # its thread failed: nothing will make room
                    break
                log.warning("tunebus: blocked on a full sender for %s (when_full=block)", sender.address)
            else:
                return True
        self._drop(f"the sender thread for {sender.address} is {sender.config.max_handoff_events} "
                   f"events behind")
        return False

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if self.dropped == 1:
            log.warning("tunebus: %s; %s", why, self._dropping)
