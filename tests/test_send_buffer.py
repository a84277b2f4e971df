"""The sender's buffer alone: memory window, spill and refill, full policies, acks, nacks, frames."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.producer.send_buffer import Item, SendBuffer, shrink_event
from pipeline.producer.sender_config import FullPolicy, SenderConfig
from pipeline.wire.codec import decode_event, encode_event
from pipeline.wire.spool import Spool

SIZE = 20
"""Bytes of every test event: the buffer never looks inside an event that is not oversized."""
RECORD = 12 + SIZE
"""Bytes one test event takes on the spool: a length and seq header, then the event."""
HEADER = 8 + 2 + 1
"""Bytes of the spool file's header for producer ``p``."""


def _data(seq: int) -> bytes:
    return b"%04d" % seq + b"." * (SIZE - 4)


def _incoming(seqs: Iterable[int]) -> collections.deque[Item]:
    return collections.deque((seq, _data(seq)) for seq in seqs)


@pytest.fixture
def spools(tmp_path: Path) -> Iterator[list[Spool]]:
    made: list[Spool] = []
    yield made
    for spool in made:
        spool.close()


@pytest.fixture
def make(tmp_path: Path, spools: list[Spool]) -> Any:
    def build(spool_events: int = 1_000, **config: Any) -> SendBuffer:
        config.setdefault("spool_max_bytes", HEADER + spool_events * RECORD)
        spool = Spool(tmp_path / f"p{len(spools)}.live", "p", config["spool_max_bytes"])
        spools.append(spool)
        return SendBuffer(SenderConfig(**config), spool)

    return build


def _seqs(items: Iterable[Item]) -> list[int]:
    return [seq for seq, _ in items]


def _send_all(buffer: SendBuffer) -> list[list[int]]:
    """Move everything queued in flight a frame at a time, as an always-ready socket would."""
    frames = []
    while (frame := buffer.next_frame()) is not None:
        buffer.sent(frame)
        frames.append(_seqs(frame.items))
    return frames


def _deliver(buffer: SendBuffer, incoming: collections.deque[Item] | None = None) -> list[int]:
    """Run the sender's loop against a collector that acknowledges every frame at once."""
    delivered: list[int] = []
    while True:
        if incoming is not None:
            buffer.take(incoming)
        buffer.refill()
        frames = _send_all(buffer)
        if not frames:
            return delivered
        delivered += [seq for frame in frames for seq in frame]
        buffer.release(delivered[-1])


def test_events_past_the_memory_window_spill_to_the_spool_in_order(make: Any) -> None:
    """The first max_buffer_events stay in memory; the rest go to the spool, in order, and nothing waits."""
    buffer = make(max_buffer_events=3)
    incoming = _incoming(range(10))
    buffer.take(incoming)
    assert not incoming
    assert _seqs(buffer.queued) == [0, 1, 2] and buffer.memory_bytes == 3 * SIZE
    assert _seqs(buffer.spool.remaining()) == list(range(3, 10))


def test_the_memory_bound_in_bytes_spills_too(make: Any) -> None:
    """An event that would take memory past max_buffer_bytes goes to the spool, and so does all after it."""
    buffer = make(max_buffer_bytes=2 * SIZE + SIZE // 2)
    buffer.take(_incoming(range(4)))
    assert _seqs(buffer.queued) == [0, 1] and _seqs(buffer.spool.remaining()) == [2, 3]


def test_the_spool_is_read_back_in_order_as_acks_free_memory(make: Any) -> None:
    """Delivered by a collector that acks everything, spilled events arrive once each, in order."""
    buffer = make(max_buffer_events=3, max_frame_events=2)
    assert _deliver(buffer, _incoming(range(10))) == list(range(10))
    assert buffer.spool.unread == 0 and buffer.memory_bytes == 0


def test_new_events_queue_behind_the_spool_even_when_memory_has_room(make: Any) -> None:
    """Once anything is spooled, later events are spooled behind it, so none overtakes another."""
    buffer = make(max_buffer_events=3)
    buffer.take(_incoming(range(5)))
    _send_all(buffer)
    buffer.release(2)
    buffer.take(_incoming(range(5, 7)))
    assert not buffer.queued and _seqs(buffer.spool.remaining()) == [3, 4, 5, 6]
    assert _deliver(buffer) == [3, 4, 5, 6]


def test_drop_newest_keeps_the_first_events_and_counts_the_rest(make: Any) -> None:
    """With memory and spool full, drop-newest gives up each new event."""
    buffer = make(max_buffer_events=2, spool_events=3, when_full=FullPolicy.DROP_NEWEST)
    buffer.take(_incoming(range(10)))
    assert buffer.dropped == 5 and buffer.moved_seq == 9
    assert _seqs(buffer.undelivered()) == [0, 1, 2, 3, 4]


def test_drop_oldest_keeps_the_last_events_and_counts_the_rest(make: Any) -> None:
    """With memory and spool full, drop-oldest gives up the oldest spooled event for each new one."""
    buffer = make(max_buffer_events=2, spool_events=3, when_full=FullPolicy.DROP_OLDEST)
    buffer.take(_incoming(range(10)))
    assert buffer.dropped == 5 and buffer.moved_seq == 9
    assert _seqs(buffer.undelivered()) == [0, 1, 7, 8, 9]


def test_block_leaves_events_handed_over_until_room_comes(make: Any) -> None:
    """With memory and spool full, block drops nothing and takes the rest once acks make room."""
    buffer = make(max_buffer_events=2, spool_events=3, when_full=FullPolicy.BLOCK)
    incoming = _incoming(range(10))
    buffer.take(incoming)
    assert _seqs(incoming) == [5, 6, 7, 8, 9] and buffer.dropped == 0 and buffer.moved_seq == 4
    buffer.take(incoming)
    assert len(incoming) == 5, "nothing freed, nothing taken"
    assert _deliver(buffer, incoming) == list(range(10)) and buffer.dropped == 0


def test_an_ack_frees_the_memory_of_what_it_covers(make: Any) -> None:
    """release drops acknowledged events from flight and their bytes from the memory count."""
    buffer = make()
    buffer.take(_incoming(range(3)))
    _send_all(buffer)
    assert buffer.memory_bytes == 3 * SIZE
    assert buffer.release(1) and buffer.acked_seq == 1
    assert _seqs(buffer.inflight) == [2] and buffer.memory_bytes == SIZE
    assert not buffer.release(1) and not buffer.release(0), "an old ack is no news"
    assert buffer.acked_seq == 1 and buffer.memory_bytes == SIZE


def test_a_nack_queues_in_flight_events_again_in_order(make: Any) -> None:
    """rewind puts every in-flight event from the nacked seq back at the front of the queue."""
    buffer = make()
    buffer.take(_incoming(range(5)))
    _send_all(buffer)
    buffer.take(_incoming(range(5, 7)))
    assert buffer.rewind(2) == 3 and buffer.resent == 3
    assert _seqs(buffer.inflight) == [0, 1] and _seqs(buffer.queued) == [2, 3, 4, 5, 6]
    frame = buffer.next_frame()
    assert frame is not None and frame.base == 0 and _seqs(frame.items) == [2, 3, 4, 5, 6]
    assert buffer.memory_bytes == 7 * SIZE


def test_a_resend_timeout_queues_everything_in_flight_again(make: Any) -> None:
    """rewind_all resends from the first unacknowledged event; with nothing in flight it does nothing."""
    buffer = make()
    assert buffer.rewind_all() == 0
    buffer.take(_incoming(range(4)))
    _send_all(buffer)
    buffer.release(0)
    assert buffer.rewind_all() == 3 and _seqs(buffer.queued) == [1, 2, 3] and not buffer.inflight


def test_frames_stop_at_max_frame_events(make: Any) -> None:
    """A frame carries at most max_frame_events; the next one's base is the first event in flight."""
    buffer = make(max_frame_events=3)
    buffer.take(_incoming(range(7)))
    first = buffer.next_frame()
    assert first is not None and first.base == 0 and _seqs(first.items) == [0, 1, 2]
    assert _seqs(buffer.queued) == list(range(7)), "next_frame only looks; sent moves"
    buffer.sent(first)
    second = buffer.next_frame()
    assert second is not None and second.base == 0 and _seqs(second.items) == [3, 4, 5]
    assert second.events == [_data(3), _data(4), _data(5)]
    buffer.sent(second)
    buffer.release(4)
    third = buffer.next_frame()
    assert third is not None and third.base == 5 and _seqs(third.items) == [6]


def test_frames_stop_once_they_reach_max_frame_bytes(make: Any) -> None:
    """A frame takes events until its size reaches max_frame_bytes (the last may pass it)."""
    buffer = make(max_frame_bytes=2 * SIZE + 1)
    buffer.take(_incoming(range(7)))
    assert _send_all(buffer) == [[0, 1, 2], [3, 4, 5], [6]]


def test_the_settled_seq_follows_delivery_across_the_spool(make: Any) -> None:
    """settled_seq is one below the oldest event held, in memory or on the spool, else the last taken."""
    buffer = make(max_buffer_events=3)
    assert buffer.settled_seq == -1
    buffer.take(_incoming(range(10)))
    assert buffer.settled_seq == -1
    _send_all(buffer)
    buffer.release(1)
    assert buffer.settled_seq == 1
    buffer.release(2)
    assert not buffer.queued and not buffer.inflight and buffer.settled_seq == 2, "3.. are spooled"
    buffer.refill()
    assert buffer.settled_seq == 2
    _deliver(buffer)
    assert buffer.settled_seq == 9


def test_dropped_events_count_as_settled(make: Any) -> None:
    """Events the full policy gave up do not hold back the settled seq (a flush would wait forever)."""
    buffer = make(max_buffer_events=2, spool_events=3, when_full=FullPolicy.DROP_NEWEST)
    buffer.take(_incoming(range(10)))
    assert _deliver(buffer) == [0, 1, 2, 3, 4] and buffer.settled_seq == 9


def test_undelivered_is_everything_held_in_seq_order(make: Any) -> None:
    """At close: in flight, queued again, queued and spooled events, each once, in order."""
    buffer = make(max_buffer_events=6, max_frame_events=2)
    buffer.take(_incoming(range(10)))
    for _ in range(2):
        frame = buffer.next_frame()
        assert frame is not None
        buffer.sent(frame)
    buffer.release(0)
    buffer.rewind(3)
    assert _seqs(buffer.inflight) == [1, 2] and _seqs(buffer.queued) == [3, 4, 5]
    undelivered = buffer.undelivered()
    assert _seqs(undelivered) == list(range(1, 10))
    assert [data for _, data in undelivered] == [_data(seq) for seq in range(1, 10)]
    assert buffer.spool.unread == 4, "undelivered only reads the spool"


def test_an_oversized_event_is_shrunk_once_before_it_is_held(tmp_path: Path, spools: list[Spool]) -> None:
    """Only an event over max_event_bytes goes through shrink, and the shrunk bytes are what is held."""
    calls: list[tuple[int, int]] = []

    def shrink(data: bytes, max_bytes: int) -> bytes:
        calls.append((len(data), max_bytes))
        return b"small"

    spool = Spool(tmp_path / "p.live", "p", 1 << 20)
    spools.append(spool)
    buffer = SendBuffer(SenderConfig(max_event_bytes=SIZE), spool, shrink)
    incoming = collections.deque([(0, _data(0)), (1, b"x" * (SIZE + 1)), (2, _data(2))])
    buffer.take(incoming)
    assert calls == [(SIZE + 1, SIZE)]
    assert list(buffer.queued) == [(0, _data(0)), (1, b"small"), (2, _data(2))]
    assert buffer.memory_bytes == 2 * SIZE + len(b"small")


def test_shrink_event_notes_the_bulky_values_and_keeps_the_rest() -> None:
    """The default shrink re-encodes an event under the limit with its array replaced by a note."""
    payload = {"loss": 0.5, "frames": np.zeros(100_000, dtype=np.uint8), "training_iteration": 1}
    data = encode_event("result", "p", 0, 1.0, "e", "t", "d", payload)
    small = shrink_event(data, 1 << 16)
    event = decode_event(small)
    assert len(small) < 1 << 16 and event.payload["loss"] == 0.5
    assert "ndarray of 100" in str(event.payload["frames"])
