"""A non-durable sink in its own niced process: fed from the frame log, restarted if killed, not awaited."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from pipeline.collector.backlog import SinkBacklog
from pipeline.collector.config import CollectorConfig
from pipeline.collector.frame_log import FrameLog, FrameLogReader
from pipeline.collector.receiver import Collector
from pipeline.collector.sink_child import accepted
from pipeline.collector.sink_process import take_backlog
from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import (
    EXPERIMENT,
    TRIAL,
    TRIAL_DIR,
    event,
    running_collector,
    start_event,
    submit_results,
    wait_until,
)
from pipeline.wire.codec import encode_event, encode_stored, frame_events
from sinks import register_sink, unregister_sink
from tests.gated_sink import GATE
from tests.readers import read_aim

TIMEOUT_S = 120.0


def _frame(seqs: list[int], producer: str = "p") -> bytes:
    return frame_events(producer, seqs[0], [encode_stored(event("result", {"i": s}, seq=s, producer=producer))
                                            for s in seqs])


def _sink_children(collector_pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(collector_pid).children()
            if "pipeline.collector.sink_child" in " ".join(p.cmdline())]


def _sender(address: str, tmp_path: Path) -> Sender:
    return Sender(address, "p1", SenderConfig(spool_dir=str(tmp_path / "spool")))


def _written(collector: Collector, sink: str) -> int:
    return collector.snapshot().sinks[sink].events


def test_the_log_is_read_back_across_segments_and_resumed_from_the_last_commit(tmp_path: Path) -> None:
    """Frames come back whole and in order over segment files; a new reader starts at the last commit."""
    log = FrameLog(tmp_path, 1 << 30, segment_bytes=200)
    for first in range(0, 50, 5):
        log.append(_frame(list(range(first, first + 5))), first, first + 4)
    reader = FrameLogReader(tmp_path)
    records = reader.read(4)
    assert [(r.first, r.last) for r in records] == [(0, 4), (5, 9), (10, 14), (15, 19)]
    reader.commit(records[1].after)
    again = FrameLogReader(tmp_path)  # the sink's process killed and started again
    rest = again.read(100)
    assert [r.first for r in rest] == list(range(10, 50, 5))
    assert [e.seq for e in accepted(rest[0])] == list(range(10, 15))
    again.commit(rest[-1].after)
    log.close()
    assert FrameLog(tmp_path, 1 << 30).unread_events == 0
    assert len(list(tmp_path.glob("*.seg"))) == 1  # the passed segments are gone


def test_a_restarted_collector_counts_what_its_sink_has_not_read(tmp_path: Path) -> None:
    """The log's end and its unread events survive the collector: its lag is right after a restart."""
    log = FrameLog(tmp_path, 1 << 30)
    log.append(_frame([0, 1, 2]), 0, 2)
    log.append(_frame([3, 4]), 3, 4)
    log.close()
    reader = FrameLogReader(tmp_path)
    reader.commit(reader.read(1)[0].after)
    again = FrameLog(tmp_path, 1 << 30)
    assert (again.unread_events, again.events) == (2, 5)
    again.append(_frame([5]), 5, 5)
    assert [r.first for r in FrameLogReader(tmp_path).read(10)] == [3, 5]


def test_only_the_run_the_sequencer_took_from_a_frame_is_written(tmp_path: Path) -> None:
    """A record's events are its first..last run: repeats and what follows a gap are left out."""
    log = FrameLog(tmp_path, 1 << 30)
    log.append(_frame([3, 4, 4, 5, 7, 8]), 4, 5)
    log.close()
    [record] = FrameLogReader(tmp_path).read(1)
    assert [e.seq for e in accepted(record)] == [4, 5]


def test_a_backlog_left_by_an_in_process_sink_moves_into_the_frame_log(tmp_path: Path) -> None:
    """Switching aim to its own process: what its in-process backlog held is read next, in order."""
    backlog = SinkBacklog(tmp_path / "backlog-aim.spool", 1 << 30)
    backlog.push([event("result", {"i": s}, seq=s) for s in range(5)])
    backlog.close()
    log = FrameLog(tmp_path / "sink-aim", 1 << 30)
    assert take_backlog(log, tmp_path / "backlog-aim.spool", 1 << 30) == 5
    log.close()
    records = FrameLogReader(tmp_path / "sink-aim").read(10)
    assert [e.seq for r in records for e in accepted(r)] == list(range(5))
    assert not (tmp_path / "backlog-aim.spool").exists()


def test_a_durable_sink_asking_for_its_own_process_is_refused() -> None:
    """--aim-process on with --aim-durable is one line naming both; aim alone runs apart by default."""
    with pytest.raises(ValueError, match=r"^--aim-process: the aim sink is durable"):
        CollectorConfig.from_flat(sinks=("json", "aim"), aim_durable=True, aim_process=True)
    config = CollectorConfig.from_flat(sinks=("json", "aim"))
    assert config.own_process("aim") and not config.own_process("json")
    assert not CollectorConfig.from_flat(sinks=("aim",), aim_process="off").own_process("aim")
    assert not CollectorConfig.from_flat(sinks=("aim",), aim_durable=True).own_process("aim")


@pytest.mark.slow  # Aim in a child process, read back with Aim's own CLI
async def test_events_reach_aim_through_its_own_niced_process(tmp_path: Path, address: str) -> None:
    """The aim sink runs in a child of the collector at nice 19; every point is in the repo after a drain."""
    out = tmp_path / "out"
    async with running_collector(out, address, sinks=("json", "aim")) as collector:
        sender = _sender(address, tmp_path)
        submit_results(sender, 200)
        assert await asyncio.to_thread(sender.flush, 30)
        sender.close()
        [child] = _sink_children(os.getpid())
        assert child.nice() == min(19, psutil.Process().nice() + 19)
        await wait_until(lambda: _written(collector, "aim") == 201, TIMEOUT_S, "aim caught up")
        assert collector.snapshot().sinks["aim"].lag == 0
    [run] = read_aim(out / EXPERIMENT)
    assert run["metrics"]["ray/tune/i|{}"]["steps"] == list(range(1, 201))


@pytest.mark.slow  # Aim in a child process, killed, read back with Aim's own CLI
async def test_a_killed_sink_process_is_restarted_and_every_point_arrives(
        tmp_path: Path, address: str) -> None:
    """SIGKILL of the aim process mid-stream: it is started again, resumes, and Aim gets every point."""
    out, count = tmp_path / "out", 3000
    async with running_collector(out, address, sinks=("json", "aim"), batch_max_events=50) as collector:
        sender = _sender(address, tmp_path)
        sender.submit(0, start_event(sender.producer))
        for seq in range(1, count + 1):  # 20 values a result: seconds of Aim's Run.track
            sender.submit(seq, encode_event("result", sender.producer, seq, 0.0, EXPERIMENT, TRIAL, TRIAL_DIR,
                                            {"i": seq, "training_iteration": seq,
                                             **{f"v{k}": k * seq for k in range(20)}}))
        await wait_until(lambda: _written(collector, "aim") > 0, TIMEOUT_S, "aim wrote a batch")
        [child] = _sink_children(os.getpid())
        assert _written(collector, "aim") < count  # mid-stream
        child.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(sender.flush, 30)
        sender.close()
        await wait_until(lambda: collector.snapshot().sinks["aim"].lag == 0, TIMEOUT_S, "aim caught up")
        [again] = _sink_children(os.getpid())
        assert again.pid != child.pid
    [run] = read_aim(out / EXPERIMENT)
    steps = run["metrics"]["ray/tune/i|{}"]["steps"]
    assert sorted(set(steps)) == list(range(1, count + 1))  # at least once


@pytest.mark.slow  # a sink child process
async def test_acks_do_not_wait_for_a_sink_in_its_own_process(tmp_path: Path, address: str) -> None:
    """A non-durable sink held back in its process: JSON is written and acknowledged; the drain then
    waits for it to write everything."""
    register_sink("gated", "tests.gated_sink:FileGatedSink")  # for this test only: others list the sinks
    try:
        await _gated_run(tmp_path, address)
    finally:
        unregister_sink("gated")


async def _gated_run(tmp_path: Path, address: str) -> None:
    out = tmp_path / "out"
    async with running_collector(out, address, sinks=("json", "gated"), gated_process=True) as collector:
        sender = _sender(address, tmp_path)
        submit_results(sender, 300)
        assert await asyncio.to_thread(sender.flush, 30)  # acknowledged: JSON wrote it all
        assert len((out / EXPERIMENT / TRIAL_DIR / "result.json").read_text().splitlines()) == 300
        assert _written(collector, "gated") == 0 and collector.snapshot().sinks["gated"].lag == 301
        sender.close()
        (out / GATE).touch()  # and stop at once: the drain waits for the sink's process to write it all
    assert _written(collector, "gated") == 301 and collector.snapshot().sinks["gated"].lag == 0
    rows = (out / ".gated" / EXPERIMENT / TRIAL_DIR / "result.json").read_text().splitlines()
    assert [json.loads(r)["i"] for r in rows] == list(range(1, 301))
