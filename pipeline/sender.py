"""The sender: one background thread that owns the driver's socket and its unacknowledged events."""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq

from pipeline.bus import producer_socket
from pipeline.codec import decode_control, frame_events
from pipeline.events import SchemaError

__all__ = ["Sender", "SenderConfig", "SenderStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """How much the sender may hold, and how often it sends and resends."""

    max_buffer_events: int = 1_000_000
    max_buffer_bytes: int = 512 * 1024 * 1024
    max_frame_events: int = 2_000
    max_frame_bytes: int = 4 * 1024 * 1024
    send_interval_s: float = 0.005
    resend_after_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_buffer_events", "max_buffer_bytes", "max_frame_events", "max_frame_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("send_interval_s", "resend_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class SenderStats:
    """A snapshot of what the sender has done."""

    submitted: int
    acked: int
    buffered: int
    buffered_bytes: int
    resent: int
    frames_sent: int


class Sender:
    """Sends encoded events in order, keeps each until the collector acknowledges it.

    ``submit`` is called by one thread (Tune's driver loop) and costs a deque
    append. The background thread frames what is queued, sends without ever
    blocking, and resends from the last acknowledgement after a ``nack`` or
    when nothing has been acknowledged for ``resend_after_s``.
    """

    def __init__(self, address: str, producer: str, config: SenderConfig | None = None) -> None:
        self.address = address
        self.producer = producer
        self.config = config or SenderConfig()
        self._incoming: collections.deque[tuple[int, bytes]] = collections.deque()
        self._queued: collections.deque[tuple[int, bytes]] = collections.deque()
        self._inflight: collections.deque[tuple[int, bytes]] = collections.deque()
        # Each counter has one writer: the submitting thread or the sender thread.
        self._submitted = 0
        self._submitted_bytes = 0
        self._released = 0
        self._released_bytes = 0
        self._last_seq = -1
        self._acked_seq = -1
        self._resent = 0
        self._frames_sent = 0
        self._acked = threading.Condition()
        self._closing = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"tunebus-sender-{producer}", daemon=True)
        self._thread.start()

    def has_room(self, nbytes: int = 0) -> bool:
        """Whether one more event of ``nbytes`` fits in the buffer's bounds."""
        return (
            self._submitted - self._released < self.config.max_buffer_events
            and self._submitted_bytes - self._released_bytes + nbytes <= self.config.max_buffer_bytes
        )

    def submit(self, seq: int, encoded: bytes) -> None:
        """Hand over one encoded event; seqs must be submitted in increasing order."""
        self._raise_if_failed()
        self._incoming.append((seq, encoded))
        self._submitted += 1
        self._submitted_bytes += len(encoded)
        self._last_seq = seq

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything submitted so far is acknowledged; False on timeout."""
        target = self._last_seq
        deadline = time.monotonic() + timeout_s
        with self._acked:
            while self._acked_seq < target and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._acked.wait(remaining)
        self._raise_if_failed()
        return self._acked_seq >= target

    def close(self, timeout_s: float = 0.0) -> bool:
        """Flush for up to ``timeout_s``, then stop the thread; safe to call twice."""
        delivered = self.flush(timeout_s) if timeout_s > 0 and self._thread.is_alive() else False
        self._closing.set()
        self._thread.join(timeout=max(1.0, 10 * self.config.send_interval_s))
        return delivered or self._acked_seq >= self._last_seq

    def stats(self) -> SenderStats:
        return SenderStats(
            submitted=self._submitted,
            acked=self._released,
            buffered=self._submitted - self._released,
            buffered_bytes=self._submitted_bytes - self._released_bytes,
            resent=self._resent,
            frames_sent=self._frames_sent,
        )

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"tunebus sender for {self.address} failed") from self._error

    def _run(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        try:
            sock = producer_socket(ctx, self.address, self.producer)
            try:
                self._loop(sock)
            finally:
                sock.close(linger=0)
        except BaseException as exc:  # noqa: BLE001 - stored and re-raised in the caller
            self._error = exc
            log.error("tunebus sender stopped: %s", exc)
        finally:
            ctx.term()
            with self._acked:
                self._acked.notify_all()

    def _loop(self, sock: zmq.Socket[Any]) -> None:
        interval_ms = int(self.config.send_interval_s * 1000) or 1
        last_progress = time.monotonic()
        while not self._closing.is_set():
            while self._incoming:
                self._queued.append(self._incoming.popleft())
            self._send_queued(sock)
            if sock.poll(interval_ms, zmq.POLLIN):
                if self._read_control(sock):
                    last_progress = time.monotonic()
            if self._inflight and time.monotonic() - last_progress > self.config.resend_after_s:
                log.info("tunebus: no acknowledgement for %.1fs, resending %d events",
                         self.config.resend_after_s, len(self._inflight))
                self._rewind(self._inflight[0][0])
                last_progress = time.monotonic()

    def _send_queued(self, sock: zmq.Socket[Any]) -> None:
        cfg = self.config
        while self._queued:
            batch: list[tuple[int, bytes]] = []
            size = 0
            while self._queued and len(batch) < cfg.max_frame_events and size < cfg.max_frame_bytes:
                item = self._queued.popleft()
                batch.append(item)
                size += len(item[1])
            try:
                frame = frame_events(self.producer, self._acked_seq + 1, [data for _, data in batch])
                sock.send(frame, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self._queued.extendleft(reversed(batch))
                return
            self._inflight.extend(batch)
            self._frames_sent += 1

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

    def _release(self, acked_seq: int) -> bool:
        released = released_bytes = 0
        while self._inflight and self._inflight[0][0] <= acked_seq:
            released += 1
            released_bytes += len(self._inflight.popleft()[1])
        self._released += released
        self._released_bytes += released_bytes
        if acked_seq <= self._acked_seq:
            return False
        with self._acked:
            self._acked_seq = acked_seq
            self._acked.notify_all()
        return True

    def _rewind(self, from_seq: int) -> None:
        """Queue every in-flight event from ``from_seq`` on for sending again."""
        again: list[tuple[int, bytes]] = []
        while self._inflight and self._inflight[-1][0] >= from_seq:
            again.append(self._inflight.pop())
        self._queued.extendleft(again)
        self._resent += len(again)
