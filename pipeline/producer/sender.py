"""The sender: one background thread that owns the driver's socket and every undelivered event."""

from __future__ import annotations

import collections
import enum
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from pipeline.wire.codec import decode_control, decode_event, encode_stored, frame_events
from pipeline.wire.events import SchemaError
from pipeline.wire.sockets import CurveKeys, producer_socket
from pipeline.wire.spool import Spool, write_spool

__all__ = ["FullPolicy", "Sender", "SenderConfig", "SenderStats", "default_spool_dir"]

log = logging.getLogger(__name__)

Item = tuple[int, bytes]
MAX_RETRY_MS = 100
"""The longest wait between tries to send while the collector is away."""


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
        for name in ("send_interval_s", "resend_after_s", "idle_poll_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.spool_max_bytes < 0:
            raise ValueError(f"spool_max_bytes must be >= 0, got {self.spool_max_bytes!r}")
        object.__setattr__(self, "when_full", FullPolicy(self.when_full))

    def spool_directory(self) -> Path:
        return Path(self.spool_dir).expanduser() if self.spool_dir else default_spool_dir()


@dataclass(frozen=True, slots=True)
class SenderStats:
    """A snapshot of what the sender holds and has done."""

    submitted: int
    acked_seq: int
    in_memory: int
    spooled: int
    dropped: int
    resent: int
    frames_sent: int
    polls: int
    """Times the thread woke up: from a submit, an ack, a timeout or close."""


class Sender:
    """Sends encoded events in order and keeps each until the collector acknowledges it.

    ``submit`` is called by one thread (Tune's driver loop) and costs a deque
    append. The background thread keeps up to ``max_buffer_events`` in memory
    and spills the rest, in order, to a spool file it reads back as memory
    frees up. It resends from the first unacknowledged event after a ``nack``
    or when nothing was acknowledged for ``resend_after_s``. What is still
    undelivered when it stops is saved to a spool file for ``tunebus replay``.
    """

    def __init__(self, address: str, producer: str, config: SenderConfig | None = None,
                 curve: CurveKeys | None = None, spool_file: Path | None = None) -> None:
        self.address = address
        self.producer = producer
        self.config = config or SenderConfig()
        self.curve = curve
        self.spool_file = spool_file or self.config.spool_directory() / f"{producer}.spool"
        """Where what is undelivered at close is saved (``tunebus replay`` passes the file it replays)."""
        self._incoming: collections.deque[Item] = collections.deque()
        self._queued: collections.deque[Item] = collections.deque()
        self._inflight: collections.deque[Item] = collections.deque()
        self._spool = Spool(self.config.spool_directory() / f"{producer}.live", producer,
                            self.config.spool_max_bytes)
        self._memory_bytes = 0
        self._submitted = 0
        self._last_seq = -1
        self._moved_seq = -1
        self._settled_seq = -1
        self._acked_seq = -1
        self.dropped = 0
        self._resent = 0
        self._frames_sent = 0
        self._polls = 0
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._wakeup = threading.Event()
        self._asleep = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"tunebus-sender-{producer}", daemon=True)
        self._thread.start()

    def accepting(self) -> bool:
        """Whether the hand-over queue to the sender thread has room for one more event."""
        return len(self._incoming) < self.config.max_handoff_events

    def wait_for_room(self, timeout_s: float) -> bool:
        """Wait until ``accepting()``; False on timeout (used by the ``block`` policy)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not self.accepting() and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return self.accepting()

    def submit(self, seq: int, encoded: bytes) -> None:
        """Hand over one encoded event; seqs must be submitted in increasing order."""
        if self._error is not None:
            raise RuntimeError(f"tunebus sender for {self.address} failed") from self._error
        self._incoming.append((seq, encoded))
        self._submitted += 1
        self._last_seq = seq
        if self._asleep:
            self._wakeup.set()  # no system call while holding the GIL: the driver goes straight on

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything submitted so far is acknowledged (or dropped); False on timeout."""
        target = self._last_seq
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._settled_seq < target and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return self._settled_seq >= target

    def close(self, timeout_s: float = 0.0) -> bool:
        """Flush for up to ``timeout_s``, then stop; undelivered events go to the spool file.

        Safe to call twice. Returns whether everything was delivered.
        """
        delivered = self.flush(timeout_s) if timeout_s > 0 else self._settled_seq >= self._last_seq
        if self._closing.is_set():
            return delivered
        self._closing.set()
        self._wakeup.set()
        self._thread.join(timeout=30)
        return delivered

    def heard_from_collector(self) -> bool:
        """Whether any collector has acknowledged anything this sender sent."""
        return self._acked_seq >= 0

    def stats(self) -> SenderStats:
        return SenderStats(
            submitted=self._submitted, acked_seq=self._acked_seq,
            in_memory=len(self._queued) + len(self._inflight) + len(self._incoming),
            spooled=len(self._spool), dropped=self.dropped, resent=self._resent,
            frames_sent=self._frames_sent, polls=self._polls,
        )

    def _run(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        try:
            sock = producer_socket(ctx, self.address, self.producer, self.curve)
            try:
                self._loop(sock)
            finally:
                sock.close(linger=0)
        except BaseException as exc:  # noqa: BLE001 - stored and re-raised in the caller
            self._error = exc
            log.error("tunebus sender stopped: %s", exc)
        finally:
            ctx.term()
            self._save_undelivered()
            with self._changed:
                self._changed.notify_all()

    def _loop(self, sock: zmq.Socket[Any]) -> None:
        interval_ms = max(1, int(self.config.send_interval_s * 1000))
        retry_ms = interval_ms
        last_progress = time.monotonic()
        while not self._closing.is_set():
            self._take_incoming()
            self._refill_from_spool()
            sent = self._send_queued(sock)
            retry_ms = interval_ms if sent else min(MAX_RETRY_MS, retry_ms * 2)
            self._spool.sync()
            if self._idle():
                self._sleep_until_woken()
                continue
            if sock.poll(retry_ms if self._queued else interval_ms, zmq.POLLIN) and self._read_control(sock):
                last_progress = time.monotonic()
            self._polls += 1
            if not self._inflight:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self.config.resend_after_s:
                log.info("tunebus: no acknowledgement for %.1fs, resending %d events",
                         self.config.resend_after_s, len(self._inflight))
                self._rewind(self._inflight[0][0])
                last_progress = time.monotonic()
            self._settle()

    def _idle(self) -> bool:
        """Nothing to send and nothing waiting for an ack: no reason to watch the socket."""
        return not (self._incoming or self._queued or self._inflight or self._spool.unread)

    def _sleep_until_woken(self) -> None:
        """Sleep until a submit (or close) sets the flag, then linger so a batch gathers."""
        self._settle()
        self._wakeup.clear()
        self._asleep = True
        if not self._incoming:  # a submit that came before the flag was up is not missed
            self._wakeup.wait(self.config.idle_poll_s)
        self._asleep = False
        self._polls += 1
        if self._incoming and not self._closing.is_set():
            time.sleep(self.config.send_interval_s)

    def _memory_has_room(self, nbytes: int) -> bool:
        cfg = self.config
        return (len(self._queued) + len(self._inflight) < cfg.max_buffer_events
                and self._memory_bytes + nbytes <= cfg.max_buffer_bytes)

    def _take_incoming(self) -> None:
        """Move handed-over events into memory or, past its bounds, onto the spool."""
        while self._incoming:
            seq, data = item = self._incoming[0]
            if len(data) > self.config.max_event_bytes:
                self._incoming[0] = item = (seq, _shrunk(data, self.config.max_event_bytes))
                data = item[1]
            if not self._spool.unread and self._memory_has_room(len(data)):
                self._queued.append(item)
                self._memory_bytes += len(data)
            elif not self._spool.append(seq, data) and not self._spool_full(item):
                return
            self._incoming.popleft()
            self._moved_seq = seq

    def _spool_full(self, item: Item) -> bool:
        """Apply the full policy to ``item``; False leaves it waiting (``block``)."""
        policy = self.config.when_full
        if policy is FullPolicy.BLOCK:
            return False
        if policy is FullPolicy.DROP_OLDEST:
            while self._spool.drop_oldest():
                self._count_drop()
                if self._spool.append(*item):
                    return True
        self._count_drop()
        return True

    def _count_drop(self) -> None:
        self.dropped += 1
        if self.dropped == 1:
            log.warning("tunebus: memory and spool (%d bytes) full, dropping %s events",
                        self.config.spool_max_bytes, self.config.when_full.value.split("-")[1])

    def _refill_from_spool(self) -> None:
        room = self.config.max_buffer_events - len(self._queued) - len(self._inflight)
        if self._spool.unread and room > 0 and len(self._queued) < self.config.max_frame_events:
            for item in self._spool.read(min(room, self.config.max_frame_events)):
                self._queued.append(item)
                self._memory_bytes += len(item[1])

    def _send_queued(self, sock: zmq.Socket[Any]) -> bool:
        """Send what is queued, a frame at a time; False if the socket took not all of it."""
        cfg = self.config
        while self._queued:
            batch: list[Item] = []
            size = 0
            while self._queued and len(batch) < cfg.max_frame_events and size < cfg.max_frame_bytes:
                item = self._queued.popleft()
                batch.append(item)
                size += len(item[1])
            base = self._inflight[0][0] if self._inflight else batch[0][0]
            try:
                sock.send(frame_events(self.producer, base, [d for _, d in batch]), zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self._queued.extendleft(reversed(batch))
                return False
            self._inflight.extend(batch)
            self._frames_sent += 1
        return True

    def _read_control(self, sock: zmq.Socket[Any]) -> bool:
        progressed = False
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return progressed
            try:
                kind, args = decode_control(frame)
            except SchemaError as exc:
                log.warning("tunebus: ignoring a bad control message: %s", exc)
                continue
            if kind == "ack" and args and isinstance(args[0], int):
                progressed = self._release(args[0]) or progressed
            elif kind == "nack" and args and isinstance(args[0], int):
                self._rewind(args[0])
            elif kind == "warn" and args and isinstance(args[0], str):
                log.warning("tunebus: the collector at %s says: %s", self.address, args[0])

    def _release(self, acked_seq: int) -> bool:
        while self._inflight and self._inflight[0][0] <= acked_seq:
            self._memory_bytes -= len(self._inflight.popleft()[1])
        if acked_seq <= self._acked_seq:
            return False
        self._acked_seq = acked_seq
        return True

    def _rewind(self, from_seq: int) -> None:
        """Queue every in-flight event from ``from_seq`` on for sending again."""
        again: list[Item] = []
        while self._inflight and self._inflight[-1][0] >= from_seq:
            again.append(self._inflight.pop())
        self._queued.extendleft(again)
        self._resent += len(again)

    def _settle(self) -> None:
        """Publish the highest seq below which nothing is held any more, and wake waiters."""
        held = self._inflight or self._queued
        if held:
            settled = held[0][0] - 1
        elif self._spool.unread:
            settled = (self._spool.peek_seq() or 0) - 1
        else:
            settled = self._moved_seq
        if settled != self._settled_seq:
            with self._changed:
                self._settled_seq = settled
                self._changed.notify_all()

    def _save_undelivered(self) -> None:
        items = [*self._inflight, *self._queued, *self._spool.remaining(), *self._incoming]
        self._spool.close()
        self._spool.path.unlink(missing_ok=True)
        if not items:
            return
        count = write_spool(self.spool_file, self.producer, items)
        log.warning("tunebus: %d events were not delivered to %s; saved to %s. Deliver them with: "
                    "tunebus replay %s --to %s", count, self.address, self.spool_file,
                    self.spool_file, self.address)


def _shrunk(data: bytes, max_bytes: int) -> bytes:
    """An encoded event over ``max_bytes`` encoded again with its bulkiest values noted.

    Done here, in the sender's thread, where each event's size is known anyway, so
    the driver never pays for the check.
    """
    shrunk = encode_stored(decode_event(data), max_bytes)
    log.warning("tunebus: an event of %d bytes is over max_event_bytes; sending it as %d bytes "
                "with its largest values noted", len(data), len(shrunk))
    return shrunk
