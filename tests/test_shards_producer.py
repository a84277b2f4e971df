"""A real Tuner sweep with BusCallback against two collector shards: each trial once, on its own shard."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from pipeline import BusCallback, SenderConfig
from pipeline.producer.replay import replay
from pipeline.producer.shard_lookup import lookup_shards
from pipeline.testing import free_address, start_collector, wait_for
from pipeline.wire.shards import shard_of

TRIALS = 8
ITERATIONS = 4


def trainable(config: dict[str, Any]) -> None:
    """ITERATIONS results numbered by Tune."""
    for i in range(ITERATIONS):
        tune.report({"value": config["k"] * i})


def _sweep(storage: Path, callback: BusCallback) -> tune.ResultGrid:
    tuner = tune.Tuner(trainable, param_space={"k": tune.grid_search(list(range(TRIALS)))},
                       run_config=tune.RunConfig(name="exp", storage_path=str(storage), verbose=0,
                                                 callbacks=[callback]))
    return tuner.fit()


@contextmanager
def _shard(out: Path, shards: tuple[str, str], index: int) -> Iterator[subprocess.Popen[bytes]]:
    """Shard ``index`` of ``shards`` as a ``tunebus collect`` child, answering hellos; drained after."""
    child = start_collector(shards[index], out, "--sinks", "json", "--log-interval-s", "0",
                            "--shard-index", str(index), "--shard-addresses", ",".join(shards))
    try:
        wait_for(lambda: lookup_shards(shards[index], None, 0.5) == shards, 60, f"shard {index} to answer")
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0


def _iterations(*outs: Path) -> dict[str, list[int]]:
    """Each trial's training_iteration column in the collectors' ``outs``, by trial id (a list per file)."""
    found: dict[str, list[int]] = {}
    for out in outs:
        for path in (out / "exp").glob("*/result.json"):
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            assert rows[0]["trial_id"] not in found, f"{rows[0]['trial_id']} written twice"
            found[rows[0]["trial_id"]] = [r["training_iteration"] for r in rows]
    return found


def _complete(ids: set[str]) -> dict[str, list[int]]:
    return {t: list(range(1, ITERATIONS + 1)) for t in ids}


@pytest.mark.slow  # a Tuner sweep and two collector child processes
def test_a_sweep_over_two_shards_writes_each_trial_once_on_its_shard(ray_session: None,
                                                                    tmp_path: Path) -> None:
    """Every trial's rows land once; shard k (its own --out here, to tell them apart) has the trials
    shard_of gives k."""
    shards, outs = (free_address(), free_address()), (tmp_path / "shard0", tmp_path / "shard1")
    callback = BusCallback(shards[0], sender=SenderConfig(spool_dir=str(tmp_path / "spool")))
    with _shard(outs[0], shards, 0), _shard(outs[1], shards, 1):
        grid = _sweep(tmp_path / "tune", callback)
    assert not grid.errors
    ids = {r.metrics["trial_id"] for r in grid}
    for k in (0, 1):
        assert _iterations(outs[k]) == _complete({t for t in ids if shard_of(t, 2) == k})
    assert _iterations(*outs) == _complete(ids)
    assert not list((tmp_path / "spool").glob("*"))  # everything acknowledged by its shard


@pytest.mark.slow
def test_a_shard_that_is_down_spills_its_stream_while_the_other_writes(
        ray_session: None, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Shard 1 not started: shard 0's trials are written and acknowledged; shard 1's go to their own
    spool file, whose replay to shard 1 (the address the hint names) writes them once."""
    caplog.set_level(logging.WARNING, logger="pipeline.producer.sender")
    shards, outs = (free_address(), free_address()), (tmp_path / "shard0", tmp_path / "shard1")
    spool_dir = tmp_path / "spool"
    callback = BusCallback(shards[0], end_timeout_s=60, sender=SenderConfig(spool_dir=str(spool_dir)))
    with _shard(outs[0], shards, 0):
        grid = _sweep(tmp_path / "tune", callback)
    ids = {r.metrics["trial_id"] for r in grid}
    mine = {k: {t for t in ids if shard_of(t, 2) == k} for k in (0, 1)}
    assert not grid.errors and _iterations(outs[0]) == _complete(mine[0])
    (spool,) = spool_dir.glob("*.spool")  # shard 0's stream was acknowledged: nothing of it kept
    assert spool.name.endswith(".s1.spool")
    [hint] = [r.getMessage() for r in caplog.records if "Deliver them with" in r.getMessage()]
    assert hint.endswith(f"tunebus replay {spool} --to {shards[1]}")
    with _shard(outs[1], shards, 1):
        delivered, count = replay(spool, shards[1], 60.0)
    assert delivered and count == 2 + len(mine[1]) * (ITERATIONS + 2)  # setup, end; start, rows, complete
    assert _iterations(outs[1]) == _complete(mine[1]) and _iterations(*outs) == _complete(ids)
