"""A fake collector shard on a real ROUTER: answers hellos with a shard map, records and acks events."""

from __future__ import annotations

import threading
from typing import Any

import zmq

from pipeline.wire.codec import decode_frame, encode_control
from pipeline.wire.events import Event
from pipeline.wire.shards import shards_reply

__all__ = ["ShardRouter"]

POLL_MS = 20


class ShardRouter(threading.Thread):
    """A ROUTER on a random loopback port, served by a thread until ``stop``.

    ``shards`` is the map a hello gets (None: hellos go unanswered, as by an older
    collector); every event-less frame's routing id is kept in ``hellos``, every event in
    ``events``, and each frame is acknowledged up to its last event.
    """

    def __init__(self, shards: tuple[str, ...] | None = ()) -> None:
        super().__init__(daemon=True)
        self.shards = shards
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.address = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"
        self.events: list[Event] = []
        self.hellos: list[str] = []
        self._done = threading.Event()

    def __enter__(self) -> ShardRouter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)

    def run(self) -> None:
        try:
            while not self._done.is_set():
                if self.sock.poll(POLL_MS):
                    self._answer(*self.sock.recv_multipart())
        finally:
            self.sock.close(linger=0)
            self.ctx.term()

    def _answer(self, identity: bytes, raw: bytes) -> None:
        frame = decode_frame(raw)
        if not frame.events:
            self.hellos.append(identity.decode())
            if self.shards is not None:
                self.sock.send_multipart([identity, shards_reply(self.shards)])
            return
        self.events.extend(frame.events)
        self.sock.send_multipart([identity, encode_control("ack", frame.events[-1].seq)])
