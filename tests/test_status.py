"""The status socket and tunebus status: producers, sinks, drops and quarantine, as table and JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import zmq

from pipeline.collector.assembly import CollectorConfig, build_collector
from pipeline.collector.snapshot import CollectorSnapshot, ProducerSnapshot, ShardSnapshot, SinkSnapshot
from pipeline.collector.status import StatusServer
from pipeline.collector.throughput import RateWindow, ThroughputLog, summary_line
from pipeline.ops.status_client import ask_status
from pipeline.ops.status_table import render_status
from pipeline.testing import (
    EXPERIMENT,
    TRIAL_DIR,
    dealer,
    free_address,
    result_event,
    run_cli,
    run_cli_here,
    running_collector,
    start_collector,
    start_event,
    wait_for,
    wait_until,
)
from pipeline.wire.codec import frame_events


def _status_server(collector: Any) -> StatusServer:
    return next(s for s in collector.services if isinstance(s, StatusServer))


async def test_status_reports_producers_sinks_drops_and_quarantine(tmp_path: Path, address: str) -> None:
    """Events, last seq, producer drops (a base past what came), sink writes and bad frames all show."""
    status_bind = free_address()
    chain = [{"keep": ["loss", "acc"]}, {"smooth": "loss", "coeff": 0.9}]
    async with running_collector(tmp_path, address, sinks=("json", "csv", "tensorboard"),
                                 tensorboard_filters=chain,
                                 status_bind=status_bind) as collector:
        server = _status_server(collector)
        await asyncio.wait_for(server.ready.wait(), 10)
        with dealer(address, "p1") as sock:
            sock.send(frame_events("p1", 0, [start_event("p1", 0), result_event("p1", 1)]))
            # seqs 2..4 were dropped by the producer's full policy: its base moves past them.
            sock.send(frame_events("p1", 5, [result_event("p1", 5), result_event("p1", 6)]))
            sock.send(b"\x00 not msgpack")
            await wait_until(lambda: collector.snapshot().sinks["csv"].lag == 0
                             and collector.snapshot().events == 4
                             and collector.snapshot().quarantined == 1
                             and collector.snapshot().producers["p1"].lag == 0, 20,
                             "all frames handled")
        answer = await asyncio.to_thread(ask_status, server.address, 10.0)
    assert answer.bus == collector.address
    assert answer.producers["p1"] == ProducerSnapshot(events=4, last_seq=6, acked=6, dropped=3, lag=0,
                                                      experiments=("exp",))
    assert answer.dropped == 3 and answer.quarantined == 1
    assert {n: (s.events, s.queued, s.errors) for n, s in answer.sinks.items()} == {
        "json": (4, 0, 0), "csv": (4, 0, 0), "tensorboard": (4, 0, 0)}
    trial = tmp_path / EXPERIMENT / TRIAL_DIR
    assert answer.sinks["json"].bytes == sum(
        (trial / name).stat().st_size for name in ("result.json", "params.json", "params.pkl"))
    assert answer.sinks["csv"].bytes == (trial / "progress.csv").stat().st_size
    assert answer.sinks["tensorboard"].bytes == sum(
        p.stat().st_size for p in trial.glob("events.out.tfevents.*"))
    assert answer.sinks["tensorboard"].filters == ("keep=loss,acc", "smooth=loss coeff=0.9")
    assert answer.sinks["json"].filters == ()
    table = render_status(answer)
    assert "p1" in table and "quarantined frames 1" in table and "dropped events 3" in table
    assert "tensorboard filters: keep=loss,acc | smooth=loss coeff=0.9" in table


@pytest.mark.slow  # and a collector child process that cannot start
async def test_a_busy_status_address_stops_the_collector_with_one_line(tmp_path: Path, address: str) -> None:
    """Another process on the status address: the collector does not serve, and says which address."""
    status_bind = free_address()
    ctx: zmq.Context[Any] = zmq.Context()
    squatter = ctx.socket(zmq.ROUTER)
    squatter.setsockopt(zmq.LINGER, 0)
    squatter.bind(status_bind)
    try:
        collector = build_collector(CollectorConfig(out=tmp_path, bind=address, sinks=("json",),
                                                    status_bind=status_bind))
        with pytest.raises(OSError, match=f"cannot bind the status socket {status_bind}"):
            await asyncio.wait_for(collector.run(asyncio.Event()), 30)
        done = await asyncio.to_thread(run_cli, "collect", "--bind", free_address(),
                                       "--out", str(tmp_path / "cli"), "--status-bind", status_bind)
    finally:
        squatter.close()
        ctx.term()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"tunebus collect: error: cannot bind the status socket {status_bind}")


async def test_the_throughput_log_says_rates_and_lags_and_nothing_while_idle(
        tmp_path: Path, address: str, caplog: pytest.LogCaptureFixture) -> None:
    """With --log-interval-s the collector logs each sink's rate and the lags, and stays quiet while idle."""
    caplog.set_level(logging.INFO, logger="pipeline.collector.throughput")
    async with running_collector(tmp_path, address, sinks=("json", "csv"), status_bind="",
                                 log_interval_s=0.05) as collector:
        ticker = next(s for s in collector.services if isinstance(s, ThroughputLog))
        await wait_until(lambda: ticker.ticks >= 3, 20, "idle intervals")
        assert not [r for r in caplog.records if r.message.startswith("throughput:")]
        with dealer(address, "p1") as sock:
            sock.send(frame_events("p1", 0, [start_event("p1", 0), result_event("p1", 1)]))
            await wait_until(lambda: any(r.message.startswith("throughput:") for r in caplog.records), 20,
                             "a throughput line")
            await wait_until(lambda: all(s.events == 2 for s in collector.snapshot().sinks.values()), 20,
                             "both sinks writing both events")
        ticks = ticker.ticks
        await wait_until(lambda: ticker.ticks >= ticks + 2, 20, "the interval that saw the last writes")
        lines = [r.message for r in caplog.records if r.message.startswith("throughput:")]
        ticks = ticker.ticks
        await wait_until(lambda: ticker.ticks >= ticks + 3, 20, "idle intervals after the writes")
    after = [r.message for r in caplog.records if r.message.startswith("throughput:")]
    assert after == lines  # idle again: not a line more
    assert "json " in lines[0] and "csv " in lines[0] and "lag: sink" in lines[0]


def test_rate_window_takes_rates_over_the_window_only() -> None:
    """Rates are increase per second between the oldest kept and newest sample."""
    window = RateWindow(window_s=10)
    assert window.rates() == {}
    for t, n in [(0, 0), (10, 1000), (20, 1500), (30, 4500)]:
        window.add(t, {"events": n})
    assert window.rates() == {"events": pytest.approx((4500 - 1500) / 10)}


def test_summary_line_names_the_worst_sink_lag() -> None:
    """The log line carries the rate of each sink and which sink lags most."""
    snap = CollectorSnapshot(events=10, queue_depth=7, quarantined=1, dropped=2,
                             sinks={"json": SinkSnapshot(events=10, lag=0),
                                    "aim": SinkSnapshot(events=3, lag=7)},
                             producers={"p": ProducerSnapshot(lag=4)})
    line = summary_line(snap, {"events": 5.0, "sinks.json": 5.0, "sinks.aim": 1.0})
    assert "5 events/s in" in line and "aim 1/s" in line
    assert "sink 7 events (aim)" in line and "producer 4 unacked" in line and "dropped 2" in line
    assert line.startswith("throughput: ")


def test_a_shards_summary_line_says_which_shard_it_is() -> None:
    """N shards log to one terminal: each line starts with its shard's place."""
    snap = CollectorSnapshot(shard=ShardSnapshot(1, 2, ()))
    assert summary_line(snap, {}).startswith("shard 1 of 2 throughput: 0 events/s in")


@pytest.mark.slow  # a collector child process and three CLI processes
def test_status_command_prints_a_table_and_json(tmp_path: Path, address: str) -> None:
    """tunebus status against a collector process: the table names the sinks, --json parses."""
    status_bind = free_address()
    proc = start_collector(address, tmp_path, "--sinks", "json,csv", "--status-bind", status_bind)
    try:
        wait_for(lambda: run_cli("status", status_bind, "--timeout-s", "1").returncode == 0, 30,
                 "the collector's status socket")
        table = run_cli("status", status_bind).stdout
        answer = json.loads(run_cli("status", status_bind, "--json").stdout)
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    assert ", up " in table and "json" in table and "csv" in table and "queued" in table
    assert answer["bus"] == address and set(answer["sinks"]) == {"json", "csv"}


def test_status_without_a_collector_is_one_line_and_exit_1() -> None:
    """Nobody answering: one error line naming the address and the timeout, exit status 1."""
    nobody = free_address()
    done = run_cli_here("status", nobody, "--timeout-s", "0.2")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"tunebus status: error: no answer from {nobody} within 0.2s"]


def test_progress_text_shows_the_sweep_and_the_slowest_durable_sink() -> None:
    """The demo's line: results reported of the total, and what the slowest durable sink wrote."""
    from pipeline.ops.progress import progress_text

    status = CollectorSnapshot(events=10, sinks={"json": SinkSnapshot(events=10),
                                                 "csv": SinkSnapshot(events=5),
                                                 "aim": SinkSnapshot(events=0, durable=False)})
    line = progress_text(4, 8, status)
    assert line == ("sweep [##########..........] 4/8 results | "
                    "collector [##########..........] 5/10 events written")
    assert progress_text(0, 8, None).endswith("collector: no answer")


def test_progress_line_prints_plain_lines_off_a_tty_and_a_final_one() -> None:
    """Without a TTY the line is printed whole (no carriage return), and stop prints the final state."""
    import io

    from pipeline.ops.progress import ProgressLine

    stream = io.StringIO()
    progress = ProgressLine(free_address(), 3, lambda: 3, stream=stream, interval_s=0.01)
    progress.start()
    progress.stop()
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines()[-1].startswith("sweep [####################] 3/3 results")


class _FailsOnceReady:
    """A service that starts, says it is ready, then fails."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()

    async def __call__(self, collector: Any) -> None:
        self.ready.set()
        raise RuntimeError("the service broke after it started")


async def test_a_service_failing_after_its_start_leaves_the_collector_collecting(
        tmp_path: Path, address: str, caplog: pytest.LogCaptureFixture) -> None:
    """Only a service that cannot start stops the collector; a later failure is said once and survived."""
    collector = build_collector(CollectorConfig(out=tmp_path, bind=address, sinks=("json",), status_bind=""))
    collector.services.append(_FailsOnceReady())
    stop = asyncio.Event()
    running = asyncio.create_task(collector.run(stop))
    await wait_until(lambda: any("collecting goes on without it" in r.getMessage() for r in caplog.records),
                     20, "the service's failure")
    with dealer(address, "p1") as sock:
        sock.send(frame_events("p1", 0, [start_event("p1", 0), result_event("p1", 1)]))
        await wait_until(lambda: collector.snapshot().sinks["json"].events == 2, 20, "the writes")
    stop.set()
    await asyncio.wait_for(running, 30)
