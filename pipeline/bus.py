"""The bus itself: the two ZeroMQ sockets and the options both ends rely on."""

from __future__ import annotations

from typing import Any

import zmq

__all__ = ["DEFAULT_ADDRESS", "collector_socket", "producer_socket"]

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
SEND_HWM_FRAMES = 1_000
RECEIVE_HWM_FRAMES = 1_000


def producer_socket(ctx: zmq.Context[Any], address: str, producer: str) -> zmq.Socket[Any]:
    """A DEALER that queues nothing for an absent collector and never hangs at exit.

    IMMEDIATE keeps frames out of ZeroMQ's pipes until a connection is up, so
    everything not yet delivered stays in the sender's own (bounded) buffer.
    The routing id is the producer id, so acknowledgements find the producer
    again after it reconnects.
    """
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.SNDHWM, SEND_HWM_FRAMES)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2_000)
    sock.setsockopt(zmq.ROUTING_ID, producer.encode())
    sock.connect(address)
    return sock


def collector_socket(
    ctx: zmq.Context[Any], address: str, max_message_bytes: int
) -> zmq.Socket[Any]:
    """A ROUTER that lets a reconnecting producer take over its routing id."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.RCVHWM, RECEIVE_HWM_FRAMES)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    try:
        sock.bind(address)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise OSError(f"cannot bind {address}: {exc}") from exc
    return sock
