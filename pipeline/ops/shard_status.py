"""``tunebus status`` and ``stop`` over every shard: follow the first answer's map to the others."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pipeline.collector.snapshot import CollectorSnapshot
from pipeline.ops import status_client
from pipeline.ops.status_client import ask_status, ask_stop
from pipeline.wire.shards import read_shard_map

__all__ = ["ShardAnswer", "ShardStop", "ask_every_shard", "shard_status_addresses", "stop_every_shard"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ShardAnswer:
    """One shard's status answer, or why there is none (it did not answer)."""

    index: int
    address: str
    status: CollectorSnapshot | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class ShardStop:
    """What became of one shard asked to stop: drained, still draining, or no answer."""

    index: int
    address: str
    stopped: bool
    error: str = ""


def shard_status_addresses(address: str, first: CollectorSnapshot) -> tuple[str, ...]:
    """Every shard's status address as ``first`` (the answer at ``address``) names them; just
    ``address`` for a collector alone. A wildcard host is replaced by ``address``'s."""
    named = first.shard.status_addresses
    if first.shard.count <= 1 or not named:
        return (address,)
    found = list(read_shard_map([list(named)], address))
    found[first.shard.index] = address  # the one asked, as the user reached it
    return tuple(found)


def ask_every_shard(address: str, timeout_s: float = 5.0) -> list[ShardAnswer]:
    """Ask ``address``, then every other shard its answer names, each within ``timeout_s``.

    The first must answer (TimeoutError, ValueError otherwise, as ``ask_status``); another
    that does not is an answer with its error, not an error for the rest.
    """
    first = ask_status(address, timeout_s)
    addresses = shard_status_addresses(address, first)
    if len(addresses) == 1:
        return [ShardAnswer(0, address, first)]

    def ask(index: int, at: str) -> ShardAnswer:
        if index == first.shard.index:
            return ShardAnswer(index, address, first)
        return ShardAnswer(index, at, ask_status(at, timeout_s))

    return _each_shard(addresses, ask, lambda index, at, error: ShardAnswer(index, at, None, error))


def stop_every_shard(address: str, timeout_s: float = 60.0) -> list[ShardStop]:
    """Stop the collector at ``address`` and every other shard it names, all at once, each drained.

    The first must answer (TimeoutError, ValueError otherwise); a shard that does not answer
    (already stopped, or down) is reported so and the others are stopped all the same.
    """
    first = ask_status(address, min(timeout_s, status_client.ANSWER_TIMEOUT_S))
    addresses = shard_status_addresses(address, first)

    return _each_shard(addresses, lambda index, at: ShardStop(index, at, ask_stop(at, timeout_s)),
                       lambda index, at, error: ShardStop(index, at, False, error))


def _each_shard(addresses: Sequence[str], call: Callable[[int, str], T],
                failed: Callable[[int, str, str], T]) -> list[T]:
    """``call(index, address)`` for every shard at once, in shard order; ``failed(index, address,
    error)`` for one that does not answer (TimeoutError) or answers nonsense (ValueError)."""

    def one(index: int) -> T:
        try:
            return call(index, addresses[index])
        except (TimeoutError, ValueError) as exc:
            return failed(index, addresses[index], str(exc))

    with concurrent.futures.ThreadPoolExecutor(len(addresses)) as pool:
        return list(pool.map(one, range(len(addresses))))
