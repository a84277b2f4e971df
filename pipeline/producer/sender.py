"""The sender: one background thread that owns the driver's socket and every undelivered event."""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from pipeline.producer.ack_watch import AckWatch
from pipeline.producer.send_buffer import Item, SendBuffer, shrink_event
from pipeline.producer.sender_config import FullPolicy, SenderConfig, default_spool_dir
from pipeline.wire.codec import decode_control, frame_events
from pipeline.wire.events import SchemaError
from pipeline.wire.shards import SHARDS
from pipeline.wire.sockets import CurveKeys, producer_socket
from pipeline.wire.spool import Spool, write_spool

__all__ = ["FullPolicy", "Sender", "SenderConfig", "SenderStats", "default_spool_dir"]

log = logging.getLogger(__name__)

MAX_RETRY_MS = 100
"""The longest wait between tries to send while the collector is away."""


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
    append. The background thread owns the socket and a ``SendBuffer``: it keeps
    up to ``max_buffer_events`` in memory and spills the rest, in order, to a
    spool file it reads back as memory frees up. It resends from the first
    unacknowledged event after a ``nack`` or when nothing was acknowledged for
    ``resend_after_s``. What is still undelivered when it stops is saved to a
    spool file for ``tunebus replay``.
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
        self._spool = Spool(self.config.spool_directory() / f"{producer}.live", producer,
                            self.config.spool_max_bytes)
        self._buffer = SendBuffer(self.config, self._spool, _shrunk)
        self._submitted = 0
        self._last_seq = -1
        self._settled_seq = -1
        self._frames_sent = 0
        self._polls = 0
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._wakeup = threading.Event()
        self._asleep = False
        self._told_misrouted = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"tunebus-sender-{producer}", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Events given up by the full policy (memory and spool full)."""
        return self._buffer.dropped

    @property
    def asleep(self) -> bool:
        """Whether the thread is waiting for a submit, an ack or close, with nothing to do."""
        return self._asleep

    @property
    def running(self) -> bool:
        """Whether the sender thread still runs: until ``close`` stops it or a fault ends it."""
        return self._thread.is_alive()

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
        return self._buffer.acked_seq >= 0

    def stats(self) -> SenderStats:
        buffer = self._buffer
        return SenderStats(
            submitted=self._submitted, acked_seq=buffer.acked_seq,
            in_memory=buffer.in_memory + len(self._incoming),
            spooled=len(self._spool), dropped=buffer.dropped, resent=buffer.resent,
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
        buffer = self._buffer
        interval_s = self.config.send_interval_s
        full_frame = self.config.max_frame_events
        retry_s = interval_s
        send_at = last_progress = time.monotonic()
        watch = AckWatch(self.address, self.config.ack_silence_s)
        while not self._closing.is_set():
            # Sends at most once per interval, however often acks wake the thread: one turn
            # (take, frame, send) costs the producer's GIL about the same for 1 event as for 100.
            now = time.monotonic()
            if now >= send_at or len(self._incoming) >= full_frame:
                self._take_incoming()
                buffer.refill()
                sent = self._send_queued(sock)
                retry_s = interval_s if sent else min(MAX_RETRY_MS / 1000, retry_s * 2)
                send_at = now + retry_s
                self._spool.sync()
            if self._idle():
                watch.idle()
                self._sleep_until_woken()
                send_at = 0.0
                continue
            wait_ms = max(1, math.ceil((send_at - time.monotonic()) * 1000))
            if sock.poll(wait_ms, zmq.POLLIN) and self._read_control(sock):
                last_progress = time.monotonic()
                _say(watch.acked(buffer.in_memory + len(self._spool)))
            else:
                _say(watch.held(buffer.in_memory + len(self._spool), self.heard_from_collector()))
            self._polls += 1
            if not buffer.inflight:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self.config.resend_after_s:
                log.info("tunebus: no acknowledgement for %.1fs, resending %d events",
                         self.config.resend_after_s, len(buffer.inflight))
                buffer.rewind_all()
                last_progress = time.monotonic()
            self._settle()

    def _idle(self) -> bool:
        """Nothing to send and nothing waiting for an ack: no reason to watch the socket."""
        return not (self._incoming or self._buffer.holding)

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

    def _take_incoming(self) -> None:
        """Move handed-over events into the buffer; say so the first time the full policy drops."""
        dropped = self._buffer.dropped
        self._buffer.take(self._incoming)
        if not dropped and self._buffer.dropped:
            log.warning("tunebus: memory and spool (%d bytes) full, dropping %s events",
                        self.config.spool_max_bytes, self.config.when_full.value.split("-")[1])

    def _send_queued(self, sock: zmq.Socket[Any]) -> bool:
        """Send what is queued, a frame at a time; False if the socket took not all of it."""
        buffer = self._buffer
        while (frame := buffer.next_frame()) is not None:
            try:
                sock.send(frame_events(self.producer, frame.base, frame.events), zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            buffer.sent(frame)
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
                progressed = self._buffer.release(args[0]) or progressed
            elif kind == "nack" and args and isinstance(args[0], int):
                self._buffer.rewind(args[0])
            elif kind == "warn" and args and isinstance(args[0], str):
                log.warning("tunebus: the collector at %s says: %s", self.address, args[0])
            elif kind == SHARDS and args and isinstance(args[0], list) and len(args[0]) > 1:
                self._misrouted(args[0])

    def _misrouted(self, addresses: list[Any]) -> None:
        """A shard refused one of our trials and sent its map: we assumed one shard. Said once."""
        if self._told_misrouted:
            return
        self._told_misrouted = True
        log.warning("tunebus: %s is shard of a set of %d (%s) that writes only its own trials, but "
                    "this producer found no shard map when it started and sends every trial there: "
                    "its stream waits at the first trial another shard owns; those events and the "
                    "ones after are kept in memory and the spool (saved to %s when it ends). Start "
                    "the sharded collector before the sweep; stop this driver and Tuner.restore it "
                    "to route every trial to its shard", self.address, len(addresses),
                    ", ".join(map(str, addresses)), self.spool_file)

    def _settle(self) -> None:
        """Publish the highest seq below which nothing is held any more, and wake waiters."""
        settled = self._buffer.settled_seq
        if settled != self._settled_seq:
            with self._changed:
                self._settled_seq = settled
                self._changed.notify_all()

    def _save_undelivered(self) -> None:
        items = [*self._buffer.undelivered(), *self._incoming]
        self._spool.close()
        if items:  # the .live spill goes only once what it held is safe in the saved file
            count = write_spool(self.spool_file, self.producer, items)
        self._spool.path.unlink(missing_ok=True)
        if not items:
            return
        log.warning("tunebus: %d events were not delivered to %s; saved to %s. Deliver them with: "
                    "tunebus replay %s --to %s", count, self.address, self.spool_file,
                    self.spool_file, self.address)


def _shrunk(data: bytes, max_bytes: int) -> bytes:
    """An encoded event over ``max_bytes`` encoded again with its bulkiest values noted.

    Done in the sender's thread, where each event's size is known anyway, so the
    driver never pays for the check.
    """
    shrunk = shrink_event(data, max_bytes)
    log.warning("tunebus: an event of %d bytes is over max_event_bytes; sending it as %d bytes "
                "with its largest values noted", len(data), len(shrunk))
    return shrunk


def _say(line: str | None) -> None:
    if line is not None:
        log.warning("%s", line)
