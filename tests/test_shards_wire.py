"""The shard map's pure parts: routing by trial, the hello frame and the shards reply."""

from __future__ import annotations

import pytest

from pipeline.wire.codec import decode_control, decode_frame
from pipeline.wire.shards import SHARDS, hello_frame, read_shard_map, shard_of, shards_reply


def test_a_trial_goes_to_the_same_shard_in_every_process() -> None:
    """CRC-32 routing is fixed: these values hold on any host and Python version."""
    assert [shard_of(t, 2) for t in ("a", "b", "c", "d")] == [1, 1, 1, 0]
    assert shard_of("anything", 1) == 0


def test_trials_spread_over_the_shards() -> None:
    """A thousand trial ids fall on every one of four shards, none with less than a fifth."""
    counts = [0] * 4
    for i in range(1000):
        counts[shard_of(f"{i:05x}_{i}", 4)] += 1
    assert min(counts) > 200


def test_no_shards_is_refused() -> None:
    """A count below one is a ValueError quoting it."""
    with pytest.raises(ValueError, match="count must be >= 1, got 0"):
        shard_of("t", 0)


def test_a_hello_is_a_valid_frame_without_events() -> None:
    """The hello decodes as a version-1 frame of its producer with no events and no faults."""
    frame = decode_frame(hello_frame("hello-1"))
    assert (frame.producer, frame.base, frame.events, frame.faults) == ("hello-1", 0, [], [])


def test_the_reply_reads_back_with_wildcard_hosts_made_reachable() -> None:
    """A wildcard host takes the first address's host; an empty map is the first address alone."""
    kind, args = decode_control(shards_reply(("tcp://0.0.0.0:5555", "tcp://10.0.0.2:5556")))
    assert kind == SHARDS
    assert read_shard_map(args, "tcp://10.0.0.1:5555") == ("tcp://10.0.0.1:5555", "tcp://10.0.0.2:5556")
    assert read_shard_map([[]], "ipc:///tmp/bus") == ("ipc:///tmp/bus",)


def test_a_malformed_reply_is_refused() -> None:
    """A reply whose argument is not a list of addresses is a ValueError."""
    with pytest.raises(ValueError, match="a shards reply is"):
        read_shard_map([5], "tcp://h:1")
