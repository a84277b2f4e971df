"""tunebus stop on a daemon: asked on its status socket, it drains, closes its files and exits 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.entry.cli import main
from pipeline.ops.status_client import ask_status
from pipeline.testing import (
    EXPERIMENT,
    TRIAL_DIR,
    dealer,
    free_address,
    result_event,
    start_collector,
    start_event,
    wait_for,
)
from pipeline.wire.codec import frame_events

RESULTS = 200


def _received(status: str, events: int) -> bool:
    try:
        return ask_status(status, timeout_s=0.5).events >= events
    except TimeoutError:
        return False


def test_tunebus_stop_drains_a_daemon_by_its_status_address(
        tmp_path: Path, address: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Events received before the stop are all written; the CLI and the collector both exit 0."""
    status = free_address()
    collector = start_collector(address, tmp_path, "--status-bind", status, "--sinks", "json,csv")
    try:
        with dealer(address, "p1") as sock:
            sock.send(frame_events("p1", 0, [start_event("p1", 0),
                                             *(result_event("p1", i) for i in range(1, RESULTS + 1))]))
            wait_for(lambda: _received(status, RESULTS + 1), 30, "the collector to receive every event")
        assert main(["stop", status, "--timeout-s", "30"]) == 0
        assert collector.wait(30) == 0
    finally:
        collector.kill()
        collector.wait()
    assert capsys.readouterr().out == f"tunebus stop: the collector at {status} wrote everything it held " \
                                      "and stopped\n"
    trial = tmp_path / EXPERIMENT / TRIAL_DIR
    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [row["i"] for row in rows] == list(range(1, RESULTS + 1))
    assert len((trial / "progress.csv").read_text().splitlines()) == RESULTS + 1


def test_tunebus_stop_with_nobody_answering_says_so_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    """No collector on the status address: exit 1, one line naming the address."""
    status = free_address()
    assert main(["stop", status, "--timeout-s", "0.2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tunebus stop: error: no answer from {status} within 0.2s"]


def test_nobody_answering_is_told_after_the_answer_wait_not_the_drain_timeout(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default 60 s drain timeout, no answer is reported after the short answer wait."""
    from pipeline.ops import status_client

    monkeypatch.setattr(status_client, "ANSWER_TIMEOUT_S", 0.2)
    status = free_address()
    assert main(["stop", status]) == 1
    assert capsys.readouterr().err.strip() == f"tunebus stop: error: no answer from {status} within 0.2s"


def test_tunebus_stop_refuses_an_address_and_ray_together(capsys: pytest.CaptureFixture[str]) -> None:
    """A status address and --ray name two different collectors: exit 2, one line."""
    assert main(["stop", free_address(), "--ray", "x"]) == 2
    assert "not both" in capsys.readouterr().err
