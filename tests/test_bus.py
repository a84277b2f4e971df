"""Sender and collector over real ZeroMQ sockets: buffering, spill, replay, faults, CurveZMQ."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import msgpack
import pytest

from pipeline.collector.quarantine import read_quarantine
from pipeline.producer.replay import replay
from pipeline.producer.sender import FullPolicy, Sender, SenderConfig
from pipeline.testing import (
    dealer,
    result_event,
    running_collector,
    start_event,
    submit_results,
    wait_until,
    written,
)
from pipeline.wire.codec import encode_event, frame_events
from pipeline.wire.sockets import CurveKeys, make_keys
from pipeline.wire.spool import read_spool

COUNT = 300


def _sender(address: str, tmp_path: Path, name: str = "p1", **config: object) -> Sender:
    return Sender(address, name, SenderConfig(spool_dir=str(tmp_path / "spool"), **config))  # type: ignore[arg-type]


async def test_events_wait_for_a_collector_that_appears_later(tmp_path: Path, address: str) -> None:
    """With no collector the sender keeps everything; a collector started later gets it all once."""
    sender = _sender(address, tmp_path)
    submit_results(sender, COUNT)
    await _tried(sender, 3)
    assert sender.stats().in_memory == COUNT + 1 and not sender.heard_from_collector()
    assert not sender.flush(0)
    async with running_collector(tmp_path / "out", address):
        assert await asyncio.to_thread(sender.flush, 30)
    sender.close()
    assert written(tmp_path / "out") == list(range(1, COUNT + 1))


@pytest.mark.slow  # waits out a flush timeout with 300 events on disk
async def test_events_past_memory_spill_to_disk_and_drain_in_order(tmp_path: Path, address: str) -> None:
    """Past max_buffer_events the rest go to the spool file, then arrive in order."""
    sender = _sender(address, tmp_path, max_buffer_events=10)
    submit_results(sender, COUNT)
    await wait_until(lambda: sender.stats().spooled == COUNT + 1 - 10, 30, "all but 10 events spooled")
    assert (tmp_path / "spool" / "p1.live").stat().st_size > 0
    async with running_collector(tmp_path / "out", address):
        assert await asyncio.to_thread(sender.flush, 30)
    sender.close()
    assert written(tmp_path / "out") == list(range(1, COUNT + 1))
    assert not (tmp_path / "spool" / "p1.live").exists()


@pytest.mark.parametrize("policy", [FullPolicy.DROP_NEWEST, FullPolicy.DROP_OLDEST])
async def test_full_spool_drops_by_policy_and_counts(tmp_path: Path, address: str,
                                                     policy: FullPolicy) -> None:
    """With memory and spool full, drop-newest keeps the first events, drop-oldest the last."""
    one = len(result_event("p1", 1)) + 12
    sender = _sender(address, tmp_path, max_buffer_events=5, spool_max_bytes=30 + 50 * one,
                     when_full=policy)
    submit_results(sender, COUNT)
    await wait_until(lambda: sender.stats().in_memory == 5, 30,
                     "the hand-over queue drained into memory, spool and drops")
    assert sender.dropped > 0
    async with running_collector(tmp_path / "out", address):
        assert await asyncio.to_thread(sender.flush, 30)
    sender.close()
    rows = written(tmp_path / "out")
    assert len(rows) + sender.dropped == COUNT
    assert rows == sorted(rows)
    if policy is FullPolicy.DROP_OLDEST:
        assert rows[-1] == COUNT
    else:
        assert rows[-1] < COUNT


@pytest.mark.slow  # pushes back until a collector appears: about 4 s
async def test_block_holds_the_driver_back_and_drops_nothing(tmp_path: Path, address: str) -> None:
    """With memory and spool full, block leaves the hand-over queue full (no room) and loses nothing."""
    one = len(result_event("p1", 1)) + 12
    sender = _sender(address, tmp_path, max_buffer_events=5, spool_max_bytes=30 + 20 * one,
                     max_handoff_events=50, when_full=FullPolicy.BLOCK)
    submit_results(sender, 100)
    await wait_until(lambda: sender.stats().spooled == 20, 30, "the spool filled up")
    await _tried(sender, 3)
    assert sender.stats().in_memory == 5 + 76, "full, the thread took nothing more"
    assert not sender.accepting() and not sender.wait_for_room(0) and sender.dropped == 0
    async with running_collector(tmp_path / "out", address):
        assert await asyncio.to_thread(sender.wait_for_room, 30)
        submit_results_from(sender, 101, COUNT)
        assert await asyncio.to_thread(sender.flush, 30)
    sender.close()
    assert written(tmp_path / "out") == list(range(1, COUNT + 1)) and sender.dropped == 0


def submit_results_from(sender: Sender, first: int, last: int) -> None:
    for seq in range(first, last + 1):
        sender.submit(seq, result_event(sender.producer, seq))


async def test_undelivered_events_are_saved_and_replayed_once(tmp_path: Path, address: str) -> None:
    """Closing without a collector saves a spool; replaying it twice writes every event once."""
    sender = _sender(address, tmp_path)
    submit_results(sender, COUNT)
    assert not sender.close()
    spool = tmp_path / "spool" / "p1.spool"
    producer, items = read_spool(spool)
    assert producer == "p1" and [seq for seq, _ in items] == list(range(COUNT + 1))
    async with running_collector(tmp_path / "out", address):
        assert (await asyncio.to_thread(replay, spool, address, 30, keep=True)) == (True, COUNT + 1)
        assert (await asyncio.to_thread(replay, spool, address, 30)) == (True, COUNT + 1)
    assert not spool.exists()
    assert written(tmp_path / "out") == list(range(1, COUNT + 1))


async def test_a_gap_is_answered_with_nack_and_filled(tmp_path: Path, address: str) -> None:
    """A frame that skips seqs is refused with nack; the producer resends from the gap."""
    async with running_collector(tmp_path / "out", address) as collector:
        with dealer(address, "raw", asynchronous=True) as sock:
            await sock.send(frame_events("raw", 0, [start_event("raw", 0), result_event("raw", 1)]))
            await sock.send(frame_events("raw", 0, [result_event("raw", 3)]))
            replies = [msgpack.unpackb(await asyncio.wait_for(sock.recv(), 10)) for _ in range(2)]
            assert ["nack", 2] in replies
            await sock.send(frame_events("raw", 0, [result_event("raw", 2), result_event("raw", 3)]))
            while ["ack", 3] not in replies:
                replies.append(msgpack.unpackb(await asyncio.wait_for(sock.recv(), 10)))
        assert collector.sequencer.gaps == 1
    assert written(tmp_path / "out") == [1, 2, 3]


async def _tried(sender: Sender, times: int) -> None:
    """Wait until the sender thread has gone round its loop ``times`` more times (each a try to send)."""
    polls = sender.stats().polls
    await wait_until(lambda: sender.stats().polls >= polls + times, 30, f"{times} more tries to send")


def _garbage(rng: random.Random) -> list[bytes]:
    good = result_event("evil", 1)
    return [
        rng.randbytes(200),
        good[: len(good) // 2],
        msgpack.packb([2, "evil", 0, []]),
        msgpack.packb([1, "evil", 0, [[9, "result"]]]),
        msgpack.packb([1, "evil", 0, [[1, "nonsense", "evil", 1, 0.0, "e", "t", "d", {}]]]),
        frame_events("evil", 0, [encode_event("result", "evil", 1, 0.0, "exp", "t", "../../x", {})]),
        frame_events("evil", 0, [encode_event("result", "evil", 1, 0.0, "/abs", "t", "d", {})]),
        frame_events("evil", 0, [encode_event("result", "evil", 1, 0.0, "e", "t", "a\x00b", {})]),
        msgpack.packb([1, "someone-else", 0, []]),
        msgpack.packb({"a": "b" * 100_000}),
        b"",
    ]


async def test_garbage_is_quarantined_and_the_collector_goes_on(tmp_path: Path, address: str) -> None:
    """Malformed frames are counted and kept byte for byte; valid traffic still gets written."""
    out = tmp_path / "out"
    frames = _garbage(random.Random(1))
    async with running_collector(out, address) as collector:
        with dealer(address, "evil", asynchronous=True, linger_ms=5_000) as sock:
            for frame in frames:
                await sock.send(frame)
            await sock.send_multipart([b"two", b"parts"])
            # One connection keeps its order: once the event sent behind the garbage is
            # acknowledged, the receive loop has been through every garbage frame.
            await sock.send(frame_events("evil", 0, [encode_event("trial_start", "evil", 0, 0.0, "exp", "te",
                                                                  "te_dir", {"config": {}})]))
            while msgpack.unpackb(await asyncio.wait_for(sock.recv(), 10)) != ["ack", 0]:
                pass
            assert collector.quarantine.frames == len(frames) + 1
        sender = _sender(address, tmp_path)
        submit_results(sender, 10)
        assert await asyncio.to_thread(sender.flush, 30)
        sender.close()
    assert written(out) == list(range(1, 11))
    records = read_quarantine(out / ".tunebus" / "quarantine.msgpack")
    assert [r[3] for r in records[: len(frames)]] == frames
    assert not (tmp_path / "x").exists()
    assert {"bad-msgpack", "unknown-version", "bad-shape", "unknown-kind", "bad-name",
            "producer-mismatch"} <= set(collector.quarantine.faults)


async def test_curve_admits_only_known_clients(tmp_path: Path, address: str) -> None:
    """With CurveZMQ on, an unknown client delivers nothing and a known one delivers all."""
    keys, clients = tmp_path / "keys", tmp_path / "clients"
    make_keys(keys, "server")
    make_keys(keys, "stranger")
    public, _ = make_keys(clients, "driver")
    os.replace(clients / "driver.key_secret", keys / "driver.key_secret")
    options = {"curve_secret_key": keys / "server.key_secret", "curve_clients": clients}
    async with running_collector(tmp_path / "out", address, **options) as collector:
        plain = _sender(address, tmp_path, name="plain")
        stranger = Sender(address, "stranger", SenderConfig(spool_dir=str(tmp_path / "s")),
                          CurveKeys.load(keys / "stranger.key_secret", keys / "server.key"))
        known = Sender(address, "known", SenderConfig(spool_dir=str(tmp_path / "k")),
                       CurveKeys.load(keys / "driver.key_secret", keys / "server.key"))
        for sender in (plain, stranger, known):
            submit_results(sender, 5)
        assert await asyncio.to_thread(known.flush, 30)
        for sender in (stranger, plain):  # the known one got through; these had that long and 5 tries more
            await _tried(sender, 5)
            assert not sender.heard_from_collector() and not sender.flush(0)
        assert set(collector.sequencer.per_producer) == {"known"}
        for sender in (plain, stranger, known):
            sender.close()
    assert written(tmp_path / "out") == [1, 2, 3, 4, 5]


async def test_an_event_a_sink_refuses_is_quarantined_as_a_bad_frame_is(tmp_path: Path, address: str) -> None:
    """The collector hands each sink's poison events to the quarantine, re-encoded, with the sink's error."""
    from pipeline.wire.codec import decode_frame
    from pipeline.wire.events import Event

    event = Event("result", "p1", 4, 1.0, "exp", "t1", "t1_dir", {"i": 4})
    async with running_collector(tmp_path / "out", address) as collector:
        worker = collector.fanout.workers[0]
        worker.on_poison(worker.name, event, ValueError("cannot write this value"))
        assert collector.snapshot().faults == {"sink-refused": 1}
    [record] = read_quarantine(tmp_path / "out" / ".tunebus" / "quarantine.msgpack")
    assert record[1] == b"p1" and "json: ValueError: cannot write this value" in record[2][0]
    [back] = decode_frame(frame_events("p1", 4, [record[3]])).events
    assert back == event
