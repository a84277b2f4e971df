"""Asking a running collector's control socket for its counters (``tunebus status``) or to stop."""

from __future__ import annotations

import json
import time
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from pipeline.collector.snapshot import CollectorSnapshot
from pipeline.collector.status import STOP_REQUEST

__all__ = ["ask_status", "ask_stop"]


def ask_status(address: str, timeout_s: float = 5.0) -> CollectorSnapshot:
    """Ask the collector whose status socket is at ``address``; TimeoutError after ``timeout_s``."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        _connect(sock, address)
        sock.send(b"status")
        answer = _answer(sock, address, timeout_s)
        try:
            return CollectorSnapshot.from_json(answer)
        except ValueError as exc:  # JSONDecodeError too: not a collector's status socket
            raise ValueError(f"{address} answered, but not with a collector's status: {exc}") from exc
    finally:
        sock.close(linger=0)
        ctx.term()


ANSWER_TIMEOUT_S = 5.0
"""How long ``ask_stop`` waits for a collector to take the request (not to finish draining)."""


def ask_stop(address: str, timeout_s: float = 60.0) -> bool:
    """Stop the collector at ``address`` and wait until it has drained and closed its status socket.

    False if it agreed to stop but still held the socket open after ``timeout_s``;
    TimeoutError if nobody answered the request within ``ANSWER_TIMEOUT_S`` (or ``timeout_s``).
    """
    deadline = time.monotonic() + timeout_s
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, -1)  # once it is gone, it is gone: no reconnect to watch
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        _connect(sock, address)
        sock.send(STOP_REQUEST)
        answer = _answer(sock, address, min(timeout_s, ANSWER_TIMEOUT_S))  # the drain gets the rest
        try:
            stopping = json.loads(answer).get("stopping") is True
        except (ValueError, AttributeError):
            stopping = False
        if not stopping:
            raise ValueError(f"{address} answered, but not as a collector that stops: {answer[:80]!r}")
        # The status socket closes only once everything received is written and the files closed.
        while (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
            if monitor.poll(left_ms) and recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED:
                return True
        return False
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
        ctx.term()


def _connect(sock: zmq.Socket[Any], address: str) -> None:
    try:
        sock.connect(address)
    except zmq.ZMQError as exc:
        raise ValueError(f"cannot connect to {address!r}: {exc}") from exc


def _answer(sock: zmq.Socket[Any], address: str, timeout_s: float) -> bytes:
    if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
        raise TimeoutError(f"no answer from {address} within {timeout_s:g}s")
    return sock.recv()
