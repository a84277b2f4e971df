"""The collector's run book: each driver's start and end said once, and a wrong --out named on both sides."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import pytest

from pipeline.collector.runs import SHOWN_AFTER_END_S, RunBook
from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import event, running_collector, wait_for
from pipeline.wire.codec import encode_event
from pipeline.wire.events import Event


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _event(kind: str, payload: dict[str, object], experiment: str = "exp", trial: str = "t1") -> Event:
    return event(kind, payload, producer="drv.1", experiment=experiment, trial=trial)


def test_a_run_is_said_at_start_and_end_and_forgotten_an_hour_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Start and end are one line each; an ended run leaves the book's shown runs after an hour."""
    clock = Clock()
    book = RunBook(tmp_path, clock)
    caplog.set_level(logging.INFO, logger="pipeline.collector.runs")
    book.note(_event("setup", {"host": "gpu7", "pid": 4242}))
    book.note(_event("trial_start", {"path": str(tmp_path / "exp" / "t1_dir")}))
    book.note(_event("experiment_end", {"trials": {"t1": "TERMINATED", "t2": "ERROR"}}))
    assert [r.getMessage() for r in caplog.records] == [
        "driver drv.1 started a run (host gpu7, pid 4242)",
        "driver drv.1 ended experiment exp: 1 ERROR, 1 TERMINATED"]
    run = book.shown()["drv.1"]
    assert (run.host, run.pid, run.experiments) == ("gpu7", 4242, {"exp"})
    clock.now = SHOWN_AFTER_END_S + 1
    assert book.shown() == {}


def test_a_trial_stored_elsewhere_is_named_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Tune's trial path outside --out gives one warning and one notice for the driver, per driver."""
    book = RunBook(tmp_path / "out")
    book.note(_event("trial_start", {"path": str(tmp_path / "out" / "exp" / "t1_dir")}))
    assert book.notices == [] and not caplog.records
    book.note(_event("trial_start", {"path": "/elsewhere/exp/t2_dir"}, trial="t2"))
    book.note(_event("trial_start", {"path": "/elsewhere/exp/t3_dir"}, trial="t3"))
    [(producer, text)] = book.notices
    assert producer == "drv.1" and "under /elsewhere" in text and "--out /elsewhere" in text
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


async def test_the_driver_hears_of_a_wrong_out_from_the_collector(
        tmp_path: Path, address: str, caplog: pytest.LogCaptureFixture) -> None:
    """A sender whose trials Tune stores elsewhere logs the collector's warning on the driver's side."""
    caplog.set_level(logging.WARNING, logger="pipeline.producer.sender")
    start = encode_event("trial_start", "p1", 0, time.time(), "exp", "t1", "t1_dir",
                         {"config": {}, "path": str(tmp_path / "elsewhere" / "exp" / "t1_dir")})
    async with running_collector(tmp_path / "out", address, sinks=("json",)):
        sender = Sender(address, "p1", SenderConfig(spool_dir=str(tmp_path / "spool")))
        sender.submit(0, start)
        await asyncio.to_thread(wait_for, lambda: any("says:" in r.getMessage() for r in caplog.records),
                                20, "the driver's warning")
        assert await asyncio.to_thread(sender.close, 10)
    [message] = [r.getMessage() for r in caplog.records if "says:" in r.getMessage()]
    assert f"the collector at {address} says: Tune stores this run's trials under" in message


async def test_the_start_line_says_where_and_how_and_warns_of_an_open_bus(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The start line names --out, Curve and how to stop; an open bus without Curve gets a warning."""
    caplog.set_level(logging.INFO, logger="pipeline.collector.receiver")
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    async with running_collector(tmp_path, f"tcp://0.0.0.0:{port}", sinks=("json",), status_bind=""):
        pass
    messages = [r.getMessage() for r in caplog.records]
    start = next(m for m in messages if m.startswith("collecting on"))
    assert f"into {tmp_path}" in start and "CurveZMQ off" in start and "SIGTERM" in start
    assert any("without CurveZMQ: anyone who can reach it" in m for m in messages)
