"""Shards: which collector shard owns a trial, and the hello that asks a bus for its shard map."""

from __future__ import annotations

import zlib
from typing import Any

import msgpack

from pipeline.wire.codec import frame_events

__all__ = ["SHARDS", "WILDCARD_HOSTS", "OwnedTrials", "hello_frame", "read_shard_map", "shard_of",
           "shards_reply"]

SHARDS = "shards"
"""The control kind a collector answers a hello with: ``["shards", [bus address, ...]]``."""
WILDCARD_HOSTS = ("0.0.0.0", "*", "")


def shard_of(trial_id: str, count: int) -> int:
    """The shard that owns ``trial_id`` among ``count``: CRC-32 of its UTF-8 bytes, modulo ``count``.

    Stable across processes, hosts and Python versions (``hash()`` is salted per
    process), so a driver and its workers route a trial to the same shard.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count!r}")
    return zlib.crc32(trial_id.encode()) % count if count > 1 else 0


class OwnedTrials(dict[str, bool]):
    """Whether shard ``index`` of ``count`` owns a trial: ``owned[trial]``, each trial hashed once.

    A collector asks it for every trial event it takes, so the answer is kept per trial
    (a dict lookup) instead of hashing the id again for each event.
    """

    __slots__ = ("index", "count")

    def __init__(self, index: int, count: int) -> None:
        super().__init__()
        if not 0 <= index < count:
            raise ValueError(f"shard index {index!r} is not among {count!r} shards")
        self.index = index
        self.count = count

    def __missing__(self, trial: str) -> bool:
        owned = self[trial] = shard_of(trial, self.count) == self.index
        return owned


def hello_frame(producer: str) -> bytes:
    """A version-1 frame with no events: a collector of this version answers it with ``shards``.

    A collector of an older version takes it as an empty frame and answers nothing.
    """
    return frame_events(producer, 0, [])


def shards_reply(addresses: tuple[str, ...]) -> bytes:
    """The collector's answer to a hello: every shard's bus address in shard order (empty: only this one)."""
    packed: bytes = msgpack.packb([SHARDS, list(addresses)])  # encode_control takes scalars only
    return packed


def read_shard_map(args: list[Any], first_address: str) -> tuple[str, ...]:
    """The bus addresses of a ``shards`` reply's arguments, as a producer connects to them.

    An empty list means one shard, the one asked. A wildcard host (``tcp://0.0.0.0:5556``)
    is replaced by the host of ``first_address``. Raises ValueError on a malformed reply.
    """
    if len(args) != 1 or not isinstance(args[0], list) or not all(isinstance(a, str) and a for a in args[0]):
        raise ValueError(f"a shards reply is [\"shards\", [address, ...]], got {args!r}")
    addresses: list[str] = args[0]
    if not addresses:
        return (first_address,)
    return tuple(_reachable(address, first_address) for address in addresses)


def _reachable(address: str, first_address: str) -> str:
    scheme, _, rest = address.partition("://")
    if scheme != "tcp" or not first_address.startswith("tcp://"):
        return address
    host, _, port = rest.rpartition(":")
    if host.strip("[]") not in WILDCARD_HOSTS:
        return address
    first_host = first_address[len("tcp://"):].rpartition(":")[0]
    return f"tcp://{first_host}:{port}"
