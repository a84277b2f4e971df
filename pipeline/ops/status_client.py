"""Asking a running collector's control socket for its counters (``tunebus status``)."""

from __future__ import annotations

import json
from typing import Any

import zmq

__all__ = ["ask_status"]


def ask_status(address: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """Ask the collector whose status socket is at ``address``; TimeoutError after ``timeout_s``."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        try:
            sock.connect(address)
        except zmq.ZMQError as exc:
            raise ValueError(f"cannot connect to {address!r}: {exc}") from exc
        sock.send(b"status")
        if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise TimeoutError(f"no answer from {address} within {timeout_s:g}s")
        answer: dict[str, Any] = json.loads(sock.recv())
        return answer
    finally:
        sock.close(linger=0)
        ctx.term()
