"""The driver's lines when acknowledgements stop and resume: once each, with the address and what to check."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from pipeline.producer.ack_watch import AckWatch
from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import running_collector, submit_results, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_silence_is_said_once_and_its_end_once() -> None:
    """Past the threshold one line; more silence says nothing; the next ack says it answers again."""
    clock = Clock()
    watch = AckWatch("tcp://head:5555", 10.0, clock)
    assert watch.held(5, heard_before=True) is None
    clock.now += 9.9
    assert watch.held(5, heard_before=True) is None
    clock.now += 0.2
    line = watch.held(7, heard_before=True)
    assert line is not None and "tcp://head:5555 has acknowledged nothing for 10s (7 events waiting" in line
    clock.now += 60
    assert watch.held(9, heard_before=True) is None
    assert watch.acked(2) == "tunebus: the collector at tcp://head:5555 acknowledges again (2 events waiting)"
    assert watch.acked(0) is None


def test_a_collector_never_heard_gets_the_checklist() -> None:
    """With no collector ever answering, the line says to check the address and the Curve keys."""
    clock = Clock()
    watch = AckWatch("tcp://head:5555", 1.0, clock)
    watch.held(1, heard_before=False)
    clock.now += 2
    line = watch.held(1, heard_before=False)
    assert line is not None and "no collector at tcp://head:5555 has answered" in line
    assert "curve_server_key" in line and "--curve-clients" in line


def test_an_idle_sender_starts_timing_afresh() -> None:
    """Time spent holding nothing never counts as silence."""
    clock = Clock()
    watch = AckWatch("tcp://x:1", 5.0, clock)
    watch.held(1, heard_before=True)
    watch.idle()
    clock.now += 100
    assert watch.held(1, heard_before=True) is None


def test_an_ack_starts_the_silence_afresh() -> None:
    """Progress restarts the clock: 9 s, an ack, 9 s more is no silence of 10 s."""
    clock = Clock()
    watch = AckWatch("tcp://x:1", 10.0, clock)
    watch.held(3, heard_before=True)
    clock.now += 9
    watch.acked(2)
    clock.now += 9
    assert watch.held(2, heard_before=True) is None


def test_the_threshold_must_be_positive() -> None:
    """A zero threshold is refused with its value."""
    with pytest.raises(ValueError, match="silent_after_s must be positive, got 0"):
        AckWatch("tcp://x:1", 0)


async def test_the_sender_says_when_nobody_answers_and_when_a_collector_does(
        tmp_path: Path, address: str, caplog: pytest.LogCaptureFixture) -> None:
    """A sender with nobody listening logs the checklist once, then that acks resume once a collector runs."""
    caplog.set_level(logging.WARNING, logger="pipeline.producer.sender")
    sender = Sender(address, "p1", SenderConfig(spool_dir=str(tmp_path / "spool"), ack_silence_s=0.2))
    submit_results(sender, 20)

    def lines(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    await asyncio.to_thread(wait_for, lambda: lines("has answered for"), 20, "the silence line")
    async with running_collector(tmp_path / "out", address, sinks=("json",)):
        await asyncio.to_thread(wait_for, lambda: lines("acknowledges again"), 20, "the resume line")
        assert await asyncio.to_thread(sender.flush, 20)
    sender.close()
    assert len(lines("has answered for")) == 1 and address in lines("has answered for")[0]
    assert len(lines("acknowledges again")) == 1
