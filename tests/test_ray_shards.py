"""Collector shards as Ray actors on a real two-node cluster: placed apart, one map, one key set, drained."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import ray
from ray import tune
from ray.cluster_utils import Cluster

import pipeline
from pipeline import BusCallback
from pipeline.entry.ray_actor import (
    RayCollector,
    find_collector_on_ray,
    start_collector_on_ray,
    status_on_ray,
    stop_collector_on_ray,
)
from pipeline.testing import dealer
from pipeline.wire.codec import decode_control
from pipeline.wire.shards import SHARDS, hello_frame, read_shard_map, shard_of
from tests.conftest import init_local_ray

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TRIALS = 8
"""Enough that both shards get trials in practice (all on one shard: 2 in 2**8 sweeps; the exact
assignment is checked whichever way they fall)."""
ITERATIONS = 5
KILL_AT = 2
SINKS = ("json", "csv")
# Fields that differ between any two runs by nature (as tests/test_tune_e2e.py's).
VOLATILE = {"timestamp", "date", "time_this_iter_s", "time_total_s", "time_since_restore",
            "pid", "hostname", "node_ip", "trial_id", "experiment_tag", "checkpoint_dir_name"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head node and one worker node, one CPU each, this process their driver; the tests' local
    Ray instance (``ray_session``), if one ran, is started again after."""
    had_local = ray.is_initialized()
    if had_local:
        ray.shutdown()
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        nodes.add_node(num_cpus=1)
        ray.init(address=nodes.address, configure_logging=False, log_to_driver=False)
        nodes.wait_for_nodes()
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()  # type: ignore[no-untyped-call]  # Ray's, untyped
        if had_local:
            init_local_ray()


@pytest.fixture
def names(cluster: Cluster) -> Iterator[list[str]]:
    """Fresh actor names for one test; every collector called so is stopped afterwards."""
    given: list[str] = []
    yield given
    for name in given:
        stop_collector_on_ray(name, timeout_s=30)


def _name(names: list[str]) -> str:
    name = f"tunebus-shards-{uuid.uuid4().hex[:8]}"
    names.append(name)
    return name


def trainable(config: dict[str, Any]) -> None:
    """Deterministic results and pipeline.log calls; with ``kill`` set, one trial kills its shard's
    collector child at KILL_AT. Each trial notes its pipeline.log stream by its trial id."""
    from pipeline.producer import worker_log

    trial_id = tune.get_context().get_trial_id()
    for i in range(ITERATIONS):
        if config["kill"] and i == KILL_AT:
            pids = config["kill"]
            try:  # only the first trial there kills, once
                os.close(os.open(config["marker"], os.O_CREAT | os.O_EXCL))
                os.kill(pids[shard_of(trial_id, len(pids))], signal.SIGKILL)
            except FileExistsError:
                pass
        pipeline.log({"batch": i, "lr": config["lr"]})
        tune.report({"loss": config["lr"] * (ITERATIONS - i), "i": i, "nested": {"a": i}})
    assert pipeline.flush_logs(30)
    assert worker_log._worker is not None
    streams = Path(config["streams"])
    streams.mkdir(exist_ok=True)
    (streams / trial_id).write_text(worker_log._worker.stream)


def _sweep(storage: Path, found: RayCollector, kill: list[int] | None = None) -> None:
    space = {"lr": tune.grid_search([0.1 * (k + 1) for k in range(TRIALS)]), "kill": kill,
             "marker": str(storage.parent / f"{storage.name}.killed"),
             "streams": str(storage.parent / f"{storage.name}.streams")}
    tune.Tuner(
        trainable, param_space=space,
        run_config=tune.RunConfig(name="exp", storage_path=str(storage), verbose=0,
                                  callbacks=[BusCallback(found.address, curve=found.curve)]),
    ).fit()


def _stable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in VOLATILE and k.split("/")[0] != "config"}


def _files(storage: Path) -> dict[str, Any]:
    """Each trial's result.json and progress.csv rows and params, by trial index, volatile fields out."""
    trials: dict[str, Any] = {}
    for trial in (storage / "exp").iterdir():
        if not (trial / "params.json").exists():
            continue
        with (trial / "progress.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        trials[trial.name.split("_")[2]] = {
            "json": [_stable(json.loads(line)) for line in (trial / "result.json").read_text().splitlines()],
            "csv": [_stable(row) for row in rows],
            "worker_log": [{k: v for k, v in json.loads(line).items() if k != "timestamp"}
                           for line in (trial / "worker_log.json").read_text().splitlines()],
            "params": {k: v for k, v in json.loads((trial / "params.json").read_text()).items()
                       if k not in ("kill", "marker", "streams")},
        }
    return trials


@pytest.fixture(scope="module")
def one_shard_files(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sweep through one collector actor, the reference the shards' files are compared with."""
    storage = tmp_path_factory.mktemp("one") / "results"
    name = f"tunebus-one-{uuid.uuid4().hex[:8]}"
    try:
        _sweep(storage, start_collector_on_ray(out=storage, name=name, sinks=SINKS))
    finally:
        stop_collector_on_ray(name, timeout_s=30)
    files = _files(storage)
    assert len(files) == TRIALS
    assert all(len(t["json"]) == len(t["worker_log"]) == ITERATIONS for t in files.values())
    return files


def _shard_marks(storage: Path, shard: int) -> list[str]:
    """The producer streams shard ``shard``'s JSON ledger has marks for."""
    ledger = storage / ".tunebus" / f"shard-{shard}" / "ledger-json.json"
    return list(orjson.loads(ledger.read_bytes())["marks"])


def _assert_each_shard_wrote_its_own_trials(storage: Path) -> None:
    """Shard k's ledger holds the driver's stream to it and the pipeline.log streams of exactly the
    trials ``shard_of`` gives k, read from the trial ids the sweep ran with (and nothing else)."""
    noted = {path.name: path.read_text() for path in (storage.parent / f"{storage.name}.streams").iterdir()}
    assert len(noted) == TRIALS
    for k in range(2):
        marks = _shard_marks(storage, k)
        assert {m.rsplit(".", 1)[1] for m in marks} == {f"s{k}"}
        assert {m.rsplit(".", 1)[0] for m in marks if m.startswith("w")} == {
            stream for trial, stream in noted.items() if shard_of(trial, 2) == k}
        assert len([m for m in marks if not m.startswith("w")]) == 1  # the driver's stream


def test_shards_land_one_per_node_share_one_key_set_and_hand_out_the_map(
        cluster: Cluster, names: list[str], tmp_path: Path) -> None:
    """Two shards on the two nodes, one client key pair for both (nowhere under out); the first
    address answers a hello with both addresses; starting again returns them; a status per shard."""
    name = _name(names)
    found = start_collector_on_ray(out=tmp_path, name=name, shards=2, sinks=SINKS)
    assert [s.name for s in found.shards] == [name, f"{name}-shard-1"]
    assert {s.node_id for s in found.shards} == {n["NodeID"] for n in ray.nodes() if n["Alive"]}  # type: ignore[no-untyped-call]
    assert found.shard_addresses == tuple(s.address for s in found.shards)
    assert found.curve is not None and all(s.curve == found.curve for s in found.shards)
    assert not list(tmp_path.rglob("*.key_secret")) and not list(tmp_path.rglob("*.key"))

    curve = found.curve
    hello = f"hello-{uuid.uuid4().hex}"
    with dealer(found.address, hello, curve=(curve.public, curve.secret, curve.server_public or b"")) as sock:
        sock.send(hello_frame(hello))
        assert sock.poll(10_000), "no answer to the hello"
        kind, args = decode_control(sock.recv())
    assert kind == SHARDS and read_shard_map(args, found.address) == found.shard_addresses

    assert start_collector_on_ray(out=tmp_path, name=name, shards=2, sinks=SINKS) == found
    assert find_collector_on_ray(name) == found
    with pytest.raises(ValueError, match=r"already runs as 2 shard\(s\), not 3"):
        start_collector_on_ray(out=tmp_path, name=name, shards=3, sinks=SINKS)
    answers = status_on_ray(name) or []
    assert [a.status.bus for a in answers if a.status is not None] == list(found.shard_addresses)
    assert [a.status.shard.index for a in answers if a.status is not None] == [0, 1]

    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    for how in (["--ray", name], [found.status_address]):  # by name, or from shard 0's status address
        done = subprocess.run([sys.executable, "-m", "pipeline.entry.cli", "status", *how], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.startswith("2 shards, 2 answering: "), done.stdout
        assert all(f"collector on {address}" in done.stdout for address in found.shard_addresses)


def test_a_sweep_through_two_shards_writes_what_one_collector_writes_and_stop_drains_both(
        cluster: Cluster, names: list[str], tmp_path: Path, one_shard_files: dict[str, Any]) -> None:
    """Same rows in result.json, progress.csv, worker_log.json and params.json as through one
    collector, each shard holding only its own streams (the driver's, its trials' workers');
    ``tunebus stop --ray NAME`` drains both and ends both actors."""
    name = _name(names)
    storage = tmp_path / "results"
    found = start_collector_on_ray(out=storage, name=name, shards=2, sinks=SINKS)
    _sweep(storage, found)
    assert _files(storage) == one_shard_files
    _assert_each_shard_wrote_its_own_trials(storage)

    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    done = subprocess.run([sys.executable, "-m", "pipeline.entry.cli", "stop", "--ray", name],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == f"tunebus stop: collector {name!r} (2 shards) wrote everything it held into " \
                          f"{storage} and stopped\n"
    assert find_collector_on_ray(name) is None
    assert not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(name)]


def test_kill_9_of_one_shards_collector_mid_sweep_loses_and_doubles_nothing(
        cluster: Cluster, names: list[str], tmp_path: Path, one_shard_files: dict[str, Any]) -> None:
    """A trial kills its own shard's collector child mid-sweep: that shard's actor restarts it over
    its own state, the other shard runs on untouched, and every row is there once."""
    name = _name(names)
    storage = tmp_path / "results"
    found = start_collector_on_ray(out=storage, name=name, shards=2, sinks=SINKS)
    _sweep(storage, found, kill=[s.pid for s in found.shards])
    assert _files(storage) == one_shard_files
    _assert_each_shard_wrote_its_own_trials(storage)

    after = find_collector_on_ray(name)
    assert after is not None
    assert sorted(s.restarts for s in after.shards) == [0, 1]
    for before, now in zip(found.shards, after.shards):
        assert (now.pid == before.pid) == (now.restarts == 0)
