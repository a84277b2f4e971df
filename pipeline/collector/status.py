"""The collector's control socket: it answers a request with its counters, as JSON, or stops on ``stop``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING

import zmq
import zmq.asyncio

from pipeline.collector.snapshot import Rates
from pipeline.collector.throughput import RateWindow, counters
from pipeline.wire.sockets import DEFAULT_STATUS_ADDRESS

if TYPE_CHECKING:
    from pipeline.collector.receiver import Collector

__all__ = ["STOP_REQUEST", "STOPPING", "StatusServer"]

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 1.0
RATE_WINDOW_S = 10.0
STOP_REQUEST = b"stop"
STOPPING = b'{"stopping": true}'


class StatusServer:
    """A collector service: a ROUTER on its own address answering with the snapshot and rates.

    A ROUTER (not a REP) never gets stuck on a client that asked and went away.
    A request of ``stop`` (``tunebus stop``) is answered ``{"stopping": true}`` and
    stops the collector as SIGTERM does: whoever can reach this socket can stop
    the collector, which is why it binds loopback unless told otherwise.
    It answers until the collector has written everything and closes.
    When its address cannot be bound (another collector on this machine has it), the
    collector does not start: ``tunebus status`` would otherwise answer for the other one.
    """

    def __init__(self, bind: str = DEFAULT_STATUS_ADDRESS) -> None:
        self.bind = bind
        self.address = ""
        self.ready = asyncio.Event()
        self.rates = RateWindow(RATE_WINDOW_S)

    async def __call__(self, collector: Collector) -> None:
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(self.bind)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            ctx.term()
            raise OSError(f"cannot bind the status socket {self.bind}: {exc} (another collector's? "
                          f"--status-bind '' runs without one)") from exc
        self.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.ready.set()
        log.info("status on %s (tunebus status %s)", self.address, self.address)
        try:
            await self._serve(sock, collector)
        finally:
            sock.close(linger=0)
            ctx.term()

    async def _serve(self, sock: zmq.asyncio.Socket, collector: Collector) -> None:
        sampled = 0.0
        while True:
            now = time.monotonic()
            if now - sampled >= SAMPLE_INTERVAL_S:
                self.rates.add(now, counters(collector.snapshot()))
                sampled = now
            if not await sock.poll(int(SAMPLE_INTERVAL_S * 1000)):
                continue
            parts = await sock.recv_multipart()
            if len(parts) < 2:
                continue
            if parts[-1] == STOP_REQUEST:
                answer = STOPPING
                collector.request_stop("asked to stop on the status socket")
            else:
                self.rates.add(time.monotonic(), counters(collector.snapshot()))
                answer = self.answer(collector)
            # Echo the envelope (routing id, REQ's empty delimiter), then the answer.
            await sock.send_multipart([*parts[:-1], answer], zmq.NOBLOCK)

    def answer(self, collector: Collector) -> bytes:
        """The snapshot with recent per-second rates, as JSON."""
        snapshot = collector.snapshot()
        rates = self.rates.rates()
        sinks = {n: rates.get(f"sinks.{n}", 0.0) for n in snapshot.sinks}
        return dataclasses.replace(snapshot, rates=Rates(rates.get("events", 0.0), sinks)).to_json().encode()
