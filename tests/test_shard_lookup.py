"""lookup_shards: the hello from a throwaway socket, the map read back, one shard when nobody answers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.producer.shard_lookup import lookup_shards
from pipeline.testing import curve_pair, free_address, running_collector
from tests.shard_routers import ShardRouter

SAID = "pipeline.producer.shard_lookup"


def test_the_map_a_shard_answers_is_returned_in_shard_order() -> None:
    """A hello from a 'hello-<uuid>' socket gets the shards' addresses, in the order the collector gave."""
    other = free_address()
    with ShardRouter() as router:
        router.shards = (router.address, other)
        assert lookup_shards(router.address, None, 10.0) == (router.address, other)
    assert len(router.hellos) == 1 and router.hellos[0].startswith("hello-") and not router.events


def test_an_empty_map_and_a_wildcard_host_read_as_reachable_addresses() -> None:
    """[] is one shard, the one asked; a shard bound on 0.0.0.0 is reached on the first address's host."""
    with ShardRouter(()) as router:
        assert lookup_shards(router.address, None, 10.0) == (router.address,)
        router.shards = (router.address, "tcp://0.0.0.0:7002")
        assert lookup_shards(router.address, None, 10.0) == (router.address, "tcp://127.0.0.1:7002")


@pytest.mark.parametrize("listening", [True, False], ids=["older-collector", "nobody"])
def test_no_answer_is_one_shard_said_once_within_the_timeout(listening: bool,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A collector ignoring the hello, or none at all: (address,) once the timeout is over, said once."""
    caplog.set_level(logging.INFO, logger=SAID)
    with ShardRouter(None) as router:
        address = router.address if listening else free_address()
        assert lookup_shards(address, None, 0.5) == (address,)  # the fallback: every trial to the address
    said = [r.getMessage() for r in caplog.records if r.name == SAID]
    assert said == [f"tunebus: no collector answered at {address} within 0.5 s: sending every trial there"]


def test_a_zero_timeout_asks_nobody() -> None:
    """shard_lookup_timeout_s=0 sends no hello: every trial goes to the address given."""
    with ShardRouter() as router:
        assert lookup_shards(router.address, None, 0.0) == (router.address,)
    assert router.hellos == []


async def test_real_collectors_answer_plain_and_sharded(tmp_path: Path, address: str) -> None:
    """A plain collector answers 'one shard'; shard 0 of two answers both addresses at once."""
    import asyncio

    async with running_collector(tmp_path / "plain", address):
        assert await asyncio.to_thread(lookup_shards, address, None, 10.0) == (address,)
    shards = (free_address(), free_address())
    async with running_collector(tmp_path / "sharded", shards[0], shard_index=0, shard_addresses=shards):
        assert await asyncio.to_thread(lookup_shards, shards[0], None, 10.0) == shards


async def test_the_hello_carries_the_producers_curve_keys(tmp_path: Path, address: str) -> None:
    """A Curve collector admits the hello with the driver's keys; without keys nothing answers."""
    import asyncio

    pair = curve_pair(tmp_path)
    shards = (address, free_address())
    async with running_collector(tmp_path / "out", address, shard_index=0, shard_addresses=shards,
                                 **pair.collector_options()):
        assert await asyncio.to_thread(lookup_shards, address, pair.driver, 10.0) == shards
        assert await asyncio.to_thread(lookup_shards, address, None, 0.5) == (address,)
