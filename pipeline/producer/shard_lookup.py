"""The shard map a producer asks its first collector for, once, with a bound on the wait."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import zmq

from pipeline.wire.codec import decode_control
from pipeline.wire.events import SchemaError
from pipeline.wire.shards import SHARDS, hello_frame, read_shard_map
from pipeline.wire.sockets import CurveKeys, producer_socket

__all__ = ["SHARD_LOOKUP_TIMEOUT_S", "lookup_shards"]

log = logging.getLogger(__name__)

SHARD_LOOKUP_TIMEOUT_S = 2.0
"""How long a producer waits for the ``shards`` answer before sending every trial to the address given."""


def lookup_shards(address: str, curve: CurveKeys | None, timeout_s: float) -> tuple[str, ...]:
    """Every shard's bus address in shard order, as the collector at ``address`` answers a hello.

    The hello goes from a throwaway DEALER (routing id ``hello-<uuid>``, linger 0, the
    same Curve keys as the producer's own socket), so the producer's stream is never
    touched. No ``shards`` answer within ``timeout_s`` (an older collector, none running
    yet, keys it refuses) or a malformed one: ``(address,)``, said in one log line.
    """
    if timeout_s <= 0:
        return (address,)
    deadline = time.monotonic() + timeout_s
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        sock = producer_socket(ctx, address, f"hello-{uuid.uuid4().hex}", curve)
        try:
            found = _ask(sock, address, deadline)
        finally:
            sock.close(linger=0)
    except (zmq.ZMQError, ValueError) as exc:
        log.warning("tunebus: could not ask %s for its shards (%s): sending every trial there", address, exc)
        return (address,)
    finally:
        ctx.term()
    if found is None:
        log.warning("tunebus: no collector answered at %s within %g s: sending every trial there",
                    address, timeout_s)
        return (address,)
    if len(found) > 1:
        log.info("tunebus: the collector at %s has %d shards: %s", address, len(found), ", ".join(found))
    return found


def _ask(sock: zmq.Socket[Any], address: str, deadline: float) -> tuple[str, ...] | None:
    """Send the hello (once a connection is up: the socket queues nothing before) and await ``shards``."""
    sock.setsockopt(zmq.SNDTIMEO, _ms_left(deadline))
    try:
        sock.send(hello_frame(sock.getsockopt_string(zmq.ROUTING_ID)))
    except zmq.Again:
        return None
    while (left := _ms_left(deadline)) > 0 and sock.poll(left, zmq.POLLIN):
        try:
            kind, args = decode_control(sock.recv())
        except SchemaError as exc:
            log.warning("tunebus: ignoring a bad control message from %s: %s", address, exc)
            continue
        if kind == SHARDS:
            return read_shard_map(args, address)
    return None


def _ms_left(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))
