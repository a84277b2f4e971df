"""A lagging sink's backlog: past its queue, events wait on disk in order; put waits only when it is full."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.collector.backlog import SinkBacklog
from pipeline.collector.sink_queue import EventQueue
from pipeline.testing import result_events as _results
from pipeline.testing import wait_until
from pipeline.wire.events import Event, Fallback


def test_events_come_back_from_disk_as_they_went_in(tmp_path: Path) -> None:
    """Every field and odd value (arrays, numpy scalars, NaN, tuples, fallbacks) survives the backlog."""
    payload = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.int16(-3), "n": math.nan,
               "t": (1, "x"), "f": Fallback('"<obj>"', "<obj>"), "nest": {"k": [1, 2.5]}}
    event = Event("result", "prod", 7, 2.5, "exp", "tid", "tdir", payload)
    backlog = SinkBacklog(tmp_path / "b.spool", 1 << 20)
    assert backlog.push([event]) == 1 and len(backlog) == 1
    [back] = backlog.pop(10)
    assert back[:7] == event[:7] and len(backlog) == 0
    assert back.payload["a"].dtype == np.float32 and back.payload["a"].tolist() == payload["a"].tolist()
    assert type(back.payload["s"]) is np.int16 and back.payload["s"] == -3
    assert math.isnan(back.payload["n"]) and back.payload["t"] == (1, "x")
    assert back.payload["f"] == payload["f"] and back.payload["nest"] == {"k": [1, 2.5]}


def test_push_stops_at_the_bound_and_says_it_is_full(tmp_path: Path) -> None:
    """push takes events until max_bytes, reports how many, and is full until something is read."""
    backlog = SinkBacklog(tmp_path / "b.spool", 400)
    taken = backlog.push(_results(100))
    assert 0 < taken < 100 and backlog.full and backlog.used_bytes <= 400
    assert [e.seq for e in backlog.pop(3)] == [0, 1, 2] and not backlog.full
    backlog.close()
    assert (tmp_path / "b.spool").exists()  # unread events stay on disk until read


async def test_a_queue_with_a_backlog_never_waits_and_keeps_the_order(tmp_path: Path) -> None:
    """Past max_events a put goes to disk at once; batches come out in seq order from memory, then disk."""
    queue = EventQueue(max_events=10, backlog=SinkBacklog(tmp_path / "b.spool", 1 << 20))
    await asyncio.wait_for(queue.put(_results(8)), 1)
    await asyncio.wait_for(queue.put(_results(50, first=8)), 1)
    await asyncio.wait_for(queue.put(_results(5, first=58)), 1)
    assert len(queue) == 63 and len(queue.backlog or ()) == 53  # memory filled to 10 first
    seqs: list[int] = []
    while len(queue):
        seqs += [e.seq for e in await queue.get_batch(7, 0)]
    assert seqs == list(range(63))


async def test_a_full_backlog_pushes_back_until_the_sink_reads(tmp_path: Path) -> None:
    """With memory and backlog both full, put waits; a get_batch lets it finish; nothing is lost."""
    queue = EventQueue(max_events=5, backlog=SinkBacklog(tmp_path / "b.spool", 300))
    await queue.put(_results(5))
    blocked = asyncio.create_task(queue.put(_results(40, first=5)))
    await wait_until(lambda: queue.backlog is not None and queue.backlog.full, 10, "the backlog to fill")
    assert not blocked.done() and len(queue) < 45
    seqs: list[int] = []
    while not blocked.done() or len(queue):
        seqs += [e.seq for e in await asyncio.wait_for(queue.get_batch(5, 0), 5)]
    assert seqs == list(range(45))


def test_a_bad_bound_is_refused_with_its_value(tmp_path: Path) -> None:
    """A backlog of no bytes is a configuration error that names the value."""
    with pytest.raises(ValueError, match="max_bytes must be at least 1, got 0"):
        SinkBacklog(tmp_path / "b.spool", 0)


def test_a_killed_collectors_backlog_is_resumed_in_order(tmp_path: Path) -> None:
    """What reached the backlog file before a kill comes back at the next start; a torn tail is cut."""
    path = tmp_path / "backlog-aim.spool"
    first = SinkBacklog(path, 1 << 20)
    assert first.push(_results(30)) == 30
    assert [e.seq for e in first.pop(5)] == [0, 1, 2, 3, 4]
    with path.open("ab") as f:
        f.write(b"\x00\x00\x01")  # the start of a record the kill cut short
    again = SinkBacklog(path, 1 << 20)  # the old object is never closed: as after kill -9
    assert again.resumed == 25 == len(again)
    assert [e.seq for e in again.pop(100)] == list(range(5, 30))
    again.close()
    assert not path.exists() and not path.with_name(path.name + ".left").exists()
