"""The collector: receives frames, orders and dedupes each producer's events, feeds the sinks."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import zmq
import zmq.asyncio

from pipeline.collector.fanout import Fanout
from pipeline.collector.out_lock import OutLock
from pipeline.collector.quarantine import Quarantine
from pipeline.collector.refusals import Refusals
from pipeline.collector.runs import NOTED_KINDS, Run, RunBook
from pipeline.collector.sequencer import Sequencer
from pipeline.collector.snapshot import CollectorSnapshot, ProducerSnapshot, ShardSnapshot
from pipeline.wire.codec import decode_frame, encode_control
from pipeline.wire.events import Event, SchemaError
from pipeline.wire.shards import OwnedTrials, shard_of, shards_reply
from pipeline.wire.sockets import CurveKeys, collector_socket, start_authenticator, watch_handshakes

__all__ = ["Collector", "CollectorStats", "CurveServer", "ShardPlace"]

log = logging.getLogger(__name__)

Service = Callable[["Collector"], Coroutine[Any, Any, None]]
"""A coroutine that runs beside the collector (status server, metrics, progress log) until cancelled."""

FINAL_ACK_LINGER_MS = 1_000


@dataclass(frozen=True, slots=True)
class CurveServer:
    """The collector's CurveZMQ keys and the directory of client public keys it admits."""

    keys: CurveKeys
    clients_dir: Path


@dataclass(frozen=True, slots=True)
class ShardPlace:
    """Where this collector stands among its shards: its index, every shard's bus and status address."""

    index: int = 0
    addresses: tuple[str, ...] = ()
    """Every shard's bus address in shard order, as producers reach them; empty: not sharded."""
    status_addresses: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return max(1, len(self.addresses))


@dataclass(slots=True)
class CollectorStats:
    """What the collector has received (what it made of each producer's stream: ``Sequencer``)."""

    frames: int = 0
    events: int = 0


class Collector:
    """Reads the bus until stopped, then drains every sink queue and closes every file.

    Each producer's events are taken strictly in sequence (``Sequencer``): a
    repeat is dropped (and acknowledged again), a gap is answered with ``nack``
    so the producer resends from the first missing event. Acknowledgements
    carry the highest sequence every durable sink has written.
    """

    def __init__(self, bind: str, fanout: Fanout, quarantine: Quarantine, max_message_bytes: int,
                 acks_due: asyncio.Event, services: Sequence[Service] = (),
                 curve: CurveServer | None = None, out: Path | None = None,
                 lock: OutLock | None = None, shard: ShardPlace | None = None) -> None:
        self.bind = bind
        self.shard = shard or ShardPlace()
        self._shards_reply = shards_reply(self.shard.addresses)
        self.lock = lock
        self.fanout = fanout
        self.quarantine = quarantine
        self.max_message_bytes = max_message_bytes
        self.services = list(services)
        self.curve = curve
        self.stats = CollectorStats()
        self.refusals = Refusals()
        self.out = out
        self.runs = RunBook(out)
        self.started = time.monotonic()
        self.address = ""
        self.ready = asyncio.Event()
        self._service_fault: BaseException | None = None
        self._stop: asyncio.Event | None = None
        # Restarted over an old --out: continue every producer after what is written.
        # A shard of several writes only its own trials (each trial hashed once, then cached).
        self.sequencer = Sequencer(fanout.restored(), OwnedTrials(self.shard.index, self.shard.count)
                                   if self.shard.count > 1 else None)
        self._misrouted_told: set[str] = set()
        """Producers told (logged and warned) that their stream waits at another shard's trial."""
        self._acks_due = acks_due
        """Set by the sink workers (wired by ``build_collector``) when a batch is written."""

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; returns once everything received is written.

        A start that cannot bind releases ``--out``'s lock and removes the state
        directory it created; a collector that ran releases the lock when it returns.
        """
        self._stop = stop
        ctx = zmq.asyncio.Context()
        auth = start_authenticator(ctx, self.curve.clients_dir, self.refusals) if self.curve else None
        try:
            sock = cast(zmq.asyncio.Socket, collector_socket(
                ctx, self.bind, self.max_message_bytes, self.curve.keys if self.curve else None))
        except BaseException:
            if auth is not None:
                auth.stop()
            ctx.term()
            if self.lock is not None:
                self.lock.release(discard=True)
            raise
        self.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.lock is not None:
            self.lock.note(self.address)
        workers = [asyncio.create_task(w.run(), name=f"sink-{w.name}") for w in self.fanout.workers]
        acks = asyncio.create_task(self._ack_loop(sock), name="acks")
        receive = asyncio.create_task(self._receive_loop(sock), name="receive")
        extras = [asyncio.create_task(service(self), name="service") for service in self.services]
        for service, task in zip(self.services, extras):  # one that cannot start stops the collector
            task.add_done_callback(functools.partial(self._service_ended, stop, service))
        if self.curve:
            extras.append(asyncio.create_task(watch_handshakes(sock, self.refusals), name="handshakes"))
        self.ready.set()
        log.info("collecting on %s%s into %s (sinks %s); CurveZMQ %s; stop with Ctrl-C or SIGTERM, "
                 "which writes everything received first", self.address,
                 f" as shard {self.shard.index} of {self.shard.count}" if self.shard.count > 1 else "",
                 self.out or "?",
                 ", ".join(w.name for w in self.fanout.workers), "on" if self.curve else "off")
        if self.curve is None and not _local(self.address):
            log.warning("the bus listens on %s without CurveZMQ: anyone who can reach it can write "
                        "into %s; turn on --curve-secret-key/--curve-clients (tunebus keygen)",
                        self.address, self.out or "the output folder")
        try:
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait([stopped, receive, *workers], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if receive.done() and not receive.cancelled() and receive.exception():
                self._service_fault = self._service_fault or receive.exception()
                log.error("receive loop failed: %r; writing what was received, then stopping",
                          receive.exception())
            receive.cancel()
            await asyncio.gather(receive, return_exceptions=True)
            await self.fanout.drain()
            await asyncio.gather(*workers)
            self._send_acks(sock)
            await asyncio.sleep(0)  # let the final acknowledgements leave
        finally:
            for task in (acks, *extras):
                task.cancel()
            await asyncio.gather(acks, *extras, return_exceptions=True)
            for task in workers:
                task.cancel()
            # A cancelled worker waits for its thread's write: only then may another collector
            # take --out and cut the files back to the ledger.
            await asyncio.gather(*workers, return_exceptions=True)
            self._stop = None
            sock.close(linger=FINAL_ACK_LINGER_MS)
            if auth is not None:
                auth.stop()
            ctx.term()
            if self.lock is not None:  # a start stopped by a taken port leaves no fresh .tunebus
                self.lock.release(discard=self._service_fault is not None and not self.stats.events)
        if self._service_fault is not None:
            raise self._service_fault
        log.info("collector stopped: %d events from %d producers",
                 self.stats.events, len(self.sequencer.per_producer))

    def request_stop(self, why: str) -> bool:
        """Stop as SIGTERM does (drain, close the files, return); False before ``run``. On the loop only."""
        stop = self._stop
        if stop is None:
            return False
        if not stop.is_set():
            log.info("stopping: %s; writing everything received first", why)
            stop.set()
        return True

    def _service_ended(self, stop: asyncio.Event, service: Service, task: asyncio.Task[None]) -> None:
        """A service that failed before it was ready (its port taken) stops the collector; one
        that failed later is said and the collector goes on without it."""
        if task.cancelled() or task.exception() is None:
            return
        started = getattr(service, "ready", None)
        if isinstance(started, asyncio.Event) and started.is_set():
            log.error("%s failed: %s; collecting goes on without it", type(service).__name__,
                      task.exception())
            return
        self._service_fault = task.exception()
        log.error("stopping: %s", self._service_fault)
        stop.set()

    async def _receive_loop(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            parts = await sock.recv_multipart()
            self.stats.frames += 1
            if len(parts) != 2:
                self.quarantine.add(parts[0], b"".join(parts[1:]),
                                    [SchemaError("bad-frames", f"{len(parts) - 1} parts")])
                continue
            identity, raw = parts
            frame = decode_frame(raw)
            if frame.producer and frame.producer.encode() != identity:
                frame.faults.append(SchemaError("producer-mismatch", "frame names another producer"))
                frame.events.clear()
            if frame.faults:
                self.quarantine.add(identity, raw, frame.faults)
            elif not frame.events:  # a hello: answer with the shard map (empty: only this collector)
                self._send_raw(sock, identity, self._shards_reply)
                continue
            sequenced = self.sequencer.accept(frame.producer, frame.base, frame.events)
            for kind, seq in sequenced.replies:
                self._send(sock, identity, kind, seq)
            if sequenced.foreign is not None and frame.producer not in self._misrouted_told:
                self._tell_misrouted(sock, identity, frame.producer, sequenced.foreign)
            if sequenced.events:
                self._note_runs(sock, sequenced.events)
                self.stats.events += len(sequenced.events)
                await self.fanout.put(sequenced.events, raw)

    def _note_runs(self, sock: zmq.asyncio.Socket, accepted: list[Event]) -> None:
        for event in accepted:
            if event.kind in NOTED_KINDS:
                self.runs.note(event)
        while self.runs.notices:
            producer, text = self.runs.notices.pop()
            self._send(sock, producer.encode(), "warn", text)

    def _tell_misrouted(self, sock: zmq.asyncio.Socket, identity: bytes, producer: str, event: Event) -> None:
        """Once per producer: its stream waits at another shard's trial. Log it, warn it, send the map."""
        self._misrouted_told.add(producer)
        shard = self.shard
        owner = shard_of(event.trial, shard.count)
        where = f"shard {owner} of {shard.count} at {shard.addresses[owner]}"
        log.warning("producer %s sent trial %s (%s) to shard %d, but %s owns it: nothing of it is "
                    "written here and that producer's stream waits at its event %d (kept in the "
                    "producer's memory and spool). The producer found no shard map when it started "
                    "(this set started after it, or did not answer within shard_lookup_timeout_s): "
                    "start the sharded collector before the sweep; stop that driver and Tuner.restore "
                    "it to route every trial to its shard", producer, event.trial, event.trial_dir,
                    shard.index, where, event.seq)
        self._send(sock, identity, "warn",
                   f"trial {event.trial} belongs to {where}, not to shard {shard.index} at "
                   f"{shard.addresses[shard.index]}: nothing of it is written and this stream waits "
                   f"at its event {event.seq} (kept in memory and the spool). This producer found "
                   f"no shard map when it started: start the sharded collector before the sweep; "
                   f"stop this driver and Tuner.restore it to route every trial to its shard")
        self._send_raw(sock, identity, self._shards_reply)

    async def _ack_loop(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            await self._acks_due.wait()
            self._acks_due.clear()
            self._send_acks(sock)

    def _send_acks(self, sock: zmq.asyncio.Socket) -> None:
        for producer, mark in self.sequencer.acks_due(self.fanout.mark):
            self._send(sock, producer.encode(), "ack", mark)

    def _send(self, sock: zmq.asyncio.Socket, identity: bytes, kind: str, arg: int | str) -> None:
        self._send_raw(sock, identity, encode_control(kind, arg))

    def _send_raw(self, sock: zmq.asyncio.Socket, identity: bytes, message: bytes) -> None:
        # A ROUTER never blocks: a message for a producer that is gone is dropped,
        # and that producer resends when it comes back.
        sent = sock.send_multipart([identity, message], zmq.NOBLOCK)
        cast("asyncio.Future[Any]", sent).add_done_callback(_ignore_send_error)

    def snapshot(self) -> CollectorSnapshot:
        """Counters for status, metrics, the throughput log and tests."""
        shown = self.runs.shown()
        received = self.stats.events
        sequencer = self.sequencer
        return CollectorSnapshot(
            frames=self.stats.frames, events=received, duplicates=sequencer.duplicates,
            gaps=sequencer.gaps, quarantined=self.quarantine.frames, refused=self.refusals.total,
            faults=dict(self.quarantine.faults), queue_depth=self.fanout.depth(),
            sinks={w.name: w.snapshot(received) for w in self.fanout.workers},
            uptime_s=time.monotonic() - self.started, dropped=sum(sequencer.dropped.values()),
            producers={p: self._producer_snapshot(p, n, shown.get(p))
                       for p, n in sequencer.per_producer.items()
                       if p in sequencer.expected and (p in shown or p not in self.runs.runs)},
            bus=self.address, misrouted=len(sequencer.held),
            shard=ShardSnapshot(self.shard.index, self.shard.count, self.shard.status_addresses))

    def _producer_snapshot(self, producer: str, events: int, run: Run | None) -> ProducerSnapshot:
        sequencer = self.sequencer
        last_seq, acked = sequencer.expected[producer] - 1, sequencer.acked.get(producer, -1)
        dropped = sequencer.dropped[producer]
        if run is None:
            return ProducerSnapshot(events, last_seq, acked, dropped, last_seq - acked)
        return ProducerSnapshot(events, last_seq, acked, dropped, last_seq - acked,
                                tuple(sorted(run.experiments)), run.host, run.pid, run.ended_at is not None)


def _ignore_send_error(sent: asyncio.Future[Any]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.debug("an acknowledgement was not sent: %s", sent.exception())


def _local(address: str) -> bool:
    """Whether only this machine can reach ``address``."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return not address.startswith("tcp://") or host.startswith("127.") or host in ("localhost", "::1")

