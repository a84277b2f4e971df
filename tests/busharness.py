"""A collector running in-process on a real ZeroMQ socket, and helpers to make events for it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pipeline.collector.assembly import CollectorConfig, build_collector
from pipeline.collector.receiver import Collector
from pipeline.producer.sender import Sender
from pipeline.wire.codec import encode_event

EXPERIMENT = "exp"
TRIAL = "t1"
TRIAL_DIR = "t1_dir"


@asynccontextmanager
async def running_collector(out: Path, address: str, **options: Any) -> AsyncIterator[Collector]:
    """A collector served on ``address`` for the block, stopped (drained) when it ends."""
    options.setdefault("status_bind", "")  # the default port is one per machine: ask for one explicitly
    collector = build_collector(CollectorConfig(out=out, bind=address, **options))
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    await asyncio.wait_for(collector.ready.wait(), 10)
    try:
        yield collector
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def start_event(producer: str, seq: int = 0) -> bytes:
    return encode_event("trial_start", producer, seq, time.time(), EXPERIMENT, TRIAL, TRIAL_DIR,
                        {"config": {"lr": 0.1}, "params_pkl": b"\x80\x04N."})


def result_event(producer: str, seq: int) -> bytes:
    return encode_event("result", producer, seq, time.time(), EXPERIMENT, TRIAL, TRIAL_DIR,
                        {"i": seq, "training_iteration": seq})


def submit_results(sender: Sender, count: int) -> None:
    """A trial start (seq 0) and ``count`` results (seq 1..count)."""
    sender.submit(0, start_event(sender.producer))
    for seq in range(1, count + 1):
        sender.submit(seq, result_event(sender.producer, seq))


def written(out: Path) -> list[int]:
    """The ``i`` of every row in the test trial's result.json, in file order."""
    path = out / EXPERIMENT / TRIAL_DIR / "result.json"
    if not path.exists():
        return []
    return [json.loads(line)["i"] for line in path.read_text().splitlines()]
