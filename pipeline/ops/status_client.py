"""Asking a running collector's control socket for its counters (``tunebus status``)."""

from __future__ import annotations

import zmq

from pipeline.collector.snapshot import CollectorSnapshot

__all__ = ["ask_status"]


def ask_status(address: str, timeout_s: float = 5.0) -> CollectorSnapshot:
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
        answer = sock.recv()
        try:
            return CollectorSnapshot.from_json(answer)
        except ValueError as exc:  # JSONDecodeError too: not a collector's status socket
            raise ValueError(f"{address} answered, but not with a collector's status: {exc}") from exc
    finally:
        sock.close(linger=0)
        ctx.term()
