"""Exactly once across collector crashes: kill -9 at random points, restart, compare every row."""

from __future__ import annotations

import csv
import json
import random
import signal
import threading
from pathlib import Path

import pytest
from ray import tune

from pipeline import BusCallback
from pipeline.testing import start_collector, wait_for
from tests.readers import read_tensorboard
from tests.trainables import expected_row, until_told

KILLS = 10


def _rows(trial_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]


def test_kill_9_ten_times_leaves_every_row_exactly_once(ray_session: None, address: str,
                                                        tmp_path: Path) -> None:
    """Ten SIGKILLs mid-sweep: result.json, progress.csv and TensorBoard hold each row once."""
    out = tmp_path / "out"
    stop_file = tmp_path / "stop"
    killed: list[int] = []
    procs = [start_collector(address, out)]
    rng = random.Random(7)

    def killer() -> None:
        wait_for(lambda: any(out.glob("*/*/result.json")), 120, "first rows")
        for _ in range(KILLS):
            threading.Event().wait(rng.uniform(0.2, 1.0))  # a random moment, not a sync point
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(timeout=30)
            killed.append(procs[-1].pid)
            procs.append(start_collector(address, out))
        stop_file.touch()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        grid = tune.Tuner(
            until_told,
            param_space={"k": tune.grid_search([1, 2, 3]), "min_iters": 20,
                         "stop_file": str(stop_file), "sleep_s": 0.002,
                         "pad_bytes": 20_000},
            run_config=tune.RunConfig(name="crash", storage_path=str(out), verbose=0,
                                      callbacks=[BusCallback(address, end_timeout_s=120)]),
        ).fit()
        thread.join(timeout=300)
    finally:
        stop_file.touch()
        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(timeout=60) == 0
    assert len(killed) == KILLS
    for result in grid:
        last = result.metrics["training_iteration"]
        k = result.config["k"]
        trial_dir = Path(result.path)
        rows = _rows(trial_dir)
        assert [r["training_iteration"] for r in rows] == list(range(1, last + 1))
        for i, row in enumerate(rows, start=1):
            assert {key: row[key] for key in expected_row(k, i)} == expected_row(k, i)
        with (trial_dir / "progress.csv").open(newline="") as f:
            table = list(csv.DictReader(f))
        assert [int(r["training_iteration"]) for r in table] == list(range(1, last + 1))
        assert [r["label"] for r in table] == [f"row-{i}" for i in range(1, last + 1)]
        value = read_tensorboard(trial_dir)["scalars"]["ray/tune/value"]
        assert value == [(i, float(k * i)) for i in range(1, last + 1)]  # no step twice or missing
        assert json.loads((trial_dir / "params.json").read_text()) == result.config


@pytest.mark.parametrize("with_rewrite", [False, True])
def test_ledger_cuts_files_back_to_the_last_commit(tmp_path: Path, with_rewrite: bool) -> None:
    """Bytes written after the last commit are cut; a widened CSV keeps its committed lines."""
    from pipeline.collector.ledger import Ledger
    from pipeline.wire.events import Event

    out = tmp_path
    trial = out / "exp" / "t1"
    trial.mkdir(parents=True)
    f = trial / "progress.csv"
    f.write_bytes(b"a,b\r\n1,2\r\n")
    ledger = Ledger(out / "ledger.json", out, ("progress.csv", "extra*"), rewrites_head=True)
    batch = [Event("result", "p", 0, 0.0, "exp", "t1", "t1", {})]
    ledger.before(batch)
    f.write_bytes(b"a,b\r\n1,2\r\n3,4\r\n")
    ledger.after(batch)
    if with_rewrite:
        f.write_bytes(b"a,b,c\r\n1,2,\r\n3,4,\r\n5,6,7\r\n")
    else:
        f.write_bytes(b"a,b\r\n1,2\r\n3,4\r\n5,6\r\n")
    (trial / "extra1").write_text("written after the commit")
    Ledger(out / "ledger.json", out, ("progress.csv", "extra*"), rewrites_head=True).recover()
    want = b"a,b,c\r\n1,2,\r\n3,4,\r\n" if with_rewrite else b"a,b\r\n1,2\r\n3,4\r\n"
    assert f.read_bytes() == want
    assert not (trial / "extra1").exists()
