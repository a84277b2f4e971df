"""Delivery around a real Tuner sweep: a late collector, a restarted collector, a killed driver."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ray import tune

from pipeline import BusCallback
from pipeline.producer.replay import replay
from pipeline.producer.sender import SenderConfig
from pipeline.testing import start_collector, wait_for
from tests.conftest import REPO
from tests.trainables import until_told


def _iterations(trial_dir: Path) -> list[int]:
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line)["training_iteration"] for line in lines]


def _sweep(storage: Path, name: str, callback: BusCallback, stop_file: Path, trials: int = 2,
           min_iters: int = 30) -> tune.ResultGrid:
    return tune.Tuner(
        until_told,
        param_space={"k": tune.grid_search(list(range(1, trials + 1))), "min_iters": min_iters,
                     "stop_file": str(stop_file), "sleep_s": 0.01},
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                  callbacks=[callback]),
    ).fit()


def _assert_complete(grid: tune.ResultGrid) -> None:
    for result in grid:
        last = result.metrics["training_iteration"]
        assert _iterations(Path(result.path)) == list(range(1, last + 1))
        assert len(result.metrics_dataframe) == last


def test_a_sweep_that_starts_20s_before_its_collector_loses_nothing(
        ray_session: None, address: str, tmp_path: Path) -> None:
    """The driver runs on without a collector; the one that appears 20 s later writes it all."""
    stop_file = tmp_path / "stop"
    stop_file.touch()
    procs: list[subprocess.Popen[bytes]] = []
    late = threading.Timer(20.0, lambda: procs.append(start_collector(address, tmp_path)))
    late.start()
    try:  # 2,500 iterations of 10 ms: the collector comes while the trials still run
        grid = _sweep(tmp_path, "late", BusCallback(address, end_timeout_s=120), stop_file,
                      min_iters=2_500)
        assert procs, "the sweep ended before the collector started"
    finally:
        late.cancel()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
    _assert_complete(grid)


def test_sigterm_mid_sweep_then_a_restart_loses_and_doubles_nothing(
        ray_session: None, address: str, tmp_path: Path) -> None:
    """SIGTERM drains and exits 0 with events in flight; a new collector takes over the rest."""
    stop_file = tmp_path / "stop"
    procs = [start_collector(address, tmp_path)]

    def restart() -> None:
        wait_for(lambda: sum(1 for _ in tmp_path.glob("restart/*/result.json")) == 2, 120, "rows")
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=60) == 0
        procs.append(start_collector(address, tmp_path))
        stop_file.touch()

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    try:
        grid = _sweep(tmp_path, "restart", BusCallback(address, end_timeout_s=120), stop_file)
        thread.join(timeout=120)
    finally:
        stop_file.touch()
        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(timeout=60) == 0
    assert len(procs) == 2
    _assert_complete(grid)


def _replay_to_a_new_collector(spool: Path, address: str, out: Path) -> tuple[bool, int]:
    """``tunebus replay`` of ``spool`` into a collector started for it, stopped (drained) after."""
    collector = start_collector(address, out)
    try:
        return replay(spool, address, 60)
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=60) == 0


def test_with_no_collector_at_all_fit_does_not_wait_and_a_replay_delivers(
        ray_session: None, address: str, tmp_path: Path) -> None:
    """No collector ever answers: fit() ends without its 600 s wait; the spool replayed writes every row."""
    stop_file, spool_dir = tmp_path / "stop", tmp_path / "spool"
    stop_file.touch()
    callback = BusCallback(address, end_timeout_s=600, sender=SenderConfig(spool_dir=str(spool_dir)))
    _sweep(tmp_path, "alone", callback, stop_file)  # would pass pytest's 300 s timeout if it waited
    (spool,) = spool_dir.glob("*.spool")
    delivered, _ = _replay_to_a_new_collector(spool, address, tmp_path)
    assert delivered
    trial_dirs = [p.parent for p in tmp_path.glob("alone/*/result.json")]
    assert len(trial_dirs) == 2 and all(_iterations(d) == list(range(1, 31)) for d in trial_dirs)


@pytest.mark.ray  # a Tune driver in a child process
def test_the_spool_of_a_killed_driver_is_delivered_by_replay(address: str, tmp_path: Path) -> None:
    """kill -9 of a driver with no collector: `tunebus replay` of its spool writes its rows once."""
    spool_dir, stop_file = tmp_path / "spool", tmp_path / "stop"
    env = dict(os.environ, PYTHONPATH=REPO)
    driver = subprocess.Popen([sys.executable, "-m", "tests.driver_script", address, str(tmp_path),
                               str(spool_dir), str(stop_file)], env=env, cwd=REPO)
    try:
        wait_for(lambda: any(p.stat().st_size > 20_000 for p in spool_dir.glob("*.live")), 180,
                 "the spool to fill")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    (spool,) = spool_dir.glob("*.live")
    delivered, count = _replay_to_a_new_collector(spool, address, tmp_path)
    assert delivered and count > 20
    (trial_dir,) = [p.parent for p in tmp_path.glob("killed/*/result.json")]
    rows = _iterations(trial_dir)
    assert len(rows) >= count - 3 and rows == sorted(set(rows))
    assert rows[-1] - rows[0] == len(rows) - 1  # one contiguous run: nothing lost in between


def test_the_callback_pickles_without_its_thread_and_keeps_its_identity(tmp_path: Path) -> None:
    """tuner.pkl can hold it (no socket, thread or lock); get/set_state keep the producer id."""
    callback = BusCallback("tcp://127.0.0.1:9", sender=SenderConfig(spool_dir=str(tmp_path)))
    callback.setup()
    try:
        copy = pickle.loads(pickle.dumps(callback))
        assert copy.producer == callback.producer and copy.stream == ""
        fresh = BusCallback("tcp://127.0.0.1:9")
        fresh.set_state(callback.get_state())
        assert fresh.producer == callback.producer
    finally:
        callback.close()
    assert any(tmp_path.glob(f"{callback.producer}.*.spool"))  # the setup event, kept for replay
