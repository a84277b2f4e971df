"""A trainable's worker killed outright: what reached its spool is delivered by replay, once."""

from __future__ import annotations

import json
import os
import signal
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ray import tune

import pipeline
from pipeline import BusCallback, SenderConfig
from pipeline.producer.replay import replay
from pipeline.testing import start_collector, wait_for
from pipeline.wire.spool import iter_spool

pytestmark = pytest.mark.slow

CALLS = 500
IN_MEMORY = 50
"""The worker's ``max_buffer_events``: what a SIGKILL can take with it."""


def stuck_trainable(config: dict[str, Any]) -> None:
    """Logs CALLS steps, says its pid, then waits to be killed."""
    for step in range(CALLS):
        pipeline.log({"x": float(step)}, step=step)
    Path(config["pid_file"]).write_text(str(os.getpid()))
    time.sleep(600)


def _spooled(spool_dir: Path) -> int:
    """Events in the worker's live spool file so far (-1 while there is none or it is mid-write)."""
    try:
        (live,) = spool_dir.glob("w*.live")
        return sum(1 for _ in iter_spool(live))
    except (ValueError, OSError, struct.error):
        return -1


def test_a_killed_worker_loses_only_what_it_held_in_memory(ray_session: None, address: str,
                                                           tmp_path: Path) -> None:
    """No collector, kill -9 of the trainable: its replayed spool writes every spilled call once, in order."""
    spool_dir, pid_file = tmp_path / "spool", tmp_path / "pid"
    sender = SenderConfig(spool_dir=str(spool_dir), max_buffer_events=IN_MEMORY)
    tuner = tune.Tuner(
        stuck_trainable, param_space={"pid_file": str(pid_file)},
        run_config=tune.RunConfig(name="killed", storage_path=str(tmp_path), verbose=0,
                                  callbacks=[BusCallback(address, end_timeout_s=1, sender=sender)]),
    )
    fit = threading.Thread(target=tuner.fit, daemon=True)
    fit.start()
    wait_for(pid_file.exists, 120, "the trainable to log every call")
    wait_for(lambda: _spooled(spool_dir) == CALLS - IN_MEMORY, 60,
             "the worker's spool to hold what did not fit in memory")
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    fit.join(timeout=120)
    (spool,) = spool_dir.glob("w*.live")  # the killed worker's stream, left as it was
    collector = start_collector(address, tmp_path)
    try:
        delivered, count = replay(spool, address, 60)
        assert delivered
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=60) == 0
    (log_file,) = tmp_path.glob("killed/*/worker_log.json")
    steps = [json.loads(line)["step"] for line in log_file.read_text().splitlines()]
    assert count == CALLS - IN_MEMORY
    assert steps == list(range(IN_MEMORY, CALLS))  # the first IN_MEMORY were in memory: lost
