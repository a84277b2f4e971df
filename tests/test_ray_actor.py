"""The collector as a detached Ray actor: Curve keys handed out by the actor, found again, stopped by name."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import ray
from ray import tune

from pipeline.entry.ray_actor import find_collector_on_ray, start_collector_on_ray, stop_collector_on_ray
from pipeline.entry.ray_shards import head_node_id
from pipeline.ops.status_client import ask_status
from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import EXPERIMENT, TRIAL_DIR, dealer, start_event, submit_results, wait_for
from pipeline.wire.codec import frame_events

TRIALS = 2
ITERATIONS = 5

# A whole driver: connects to the running cluster, starts the collector actor,
# sweeps through it with the keys the actor hands out (no key files anywhere),
# its workers log through pipeline.log, it prints the collector it used and
# exits (its job ends).
DRIVER = f"""
import json, os, sys
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
import ray
from ray import tune
import pipeline
from pipeline import BusCallback
from pipeline.entry.ray_actor import start_collector_on_ray

def trainable(config):
    for i in range({ITERATIONS}):
        pipeline.log({{"batch": i}})
        tune.report({{"loss": config["lr"] * ({ITERATIONS} - i), "i": i}})
    assert pipeline.flush_logs(30)

gcs, storage, name = sys.argv[1:]
ray.init(address=gcs, configure_logging=False, log_to_driver=False)
found = start_collector_on_ray(out=storage, name=name, sinks=("json", "csv"))
tune.Tuner(
    trainable,
    param_space={{"lr": tune.grid_search([0.1, 0.2])}},
    run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0,
                              callbacks=[BusCallback(found.address, curve=found.curve)]),
).fit()
print("COLLECTOR " + json.dumps({{"address": found.address, "node_id": found.node_id,
                                  "status": found.status_address, "curve": found.curve is not None}}))
"""


@pytest.fixture
def actor_name() -> str:
    """A fresh actor name per test, stopped afterwards whatever happened."""
    name = f"tunebus-test-{uuid.uuid4().hex[:8]}"
    yield name  # type: ignore[misc]
    stop_collector_on_ray(name, timeout_s=30)


def test_a_driver_sweeps_through_the_actor_with_its_keys_and_tunebus_stop_drains_it(
        ray_session: None, tmp_path: Path, actor_name: str) -> None:
    """Curve on by default, keys only from the actor: the sweep and its workers' logs are written, the
    actor outlives the driver, and ``tunebus stop --ray NAME`` drains it with every file complete."""
    storage = tmp_path / "results"
    gcs = ray.get_runtime_context().gcs_address
    done = subprocess.run([sys.executable, "-c", DRIVER, gcs, str(storage), actor_name],
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    used = json.loads(done.stdout.split("COLLECTOR ", 1)[1].splitlines()[0])

    found = find_collector_on_ray(actor_name)
    assert found is not None
    assert (found.address, found.status_address) == (used["address"], used["status"])
    assert found.node_id == head_node_id() and used["curve"] and found.curve is not None
    assert not found.address.startswith("tcp://127.") or ray.util.get_node_ip_address().startswith("127.")
    assert not list(storage.rglob("*.key_secret")) and not list(storage.rglob("*.key"))
    status = ask_status(found.status_address, timeout_s=10)
    assert status.events > 0 and status.refused == 0
    assert len(status.producers) == 1 + TRIALS  # the driver and each trial's pipeline.log
    assert [p.dropped for p in status.producers.values()] == [0] * (1 + TRIALS)

    env = dict(os.environ, RAY_ADDRESS=gcs)
    done = subprocess.run([sys.executable, "-m", "pipeline.entry.cli", "stop", "--ray", actor_name],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == f"tunebus stop: collector {actor_name!r} wrote everything it held into " \
                          f"{storage} and stopped\n"
    assert find_collector_on_ray(actor_name) is None
    assert "exited" not in (storage / ".tunebus" / f"{actor_name}.log").read_text()

    analysis = tune.ExperimentAnalysis(str(storage / "exp"))
    frames = analysis.trial_dataframes
    assert len(frames) == TRIALS
    assert sorted(len(df) for df in frames.values()) == [ITERATIONS] * TRIALS
    logged = sorted(storage.glob("exp/*/worker_log.json"))
    assert [len(p.read_text().splitlines()) for p in logged] == [ITERATIONS] * TRIALS


def test_the_actor_refuses_a_client_without_its_keys_and_keeps_them_across_restarts(
        ray_session: None, tmp_path: Path, actor_name: str) -> None:
    """A plain DEALER is refused (counted, nothing written); the actor's keys deliver, also after the
    collector child was killed and restarted by the actor."""
    found = start_collector_on_ray(out=tmp_path, name=actor_name, sinks=("json",))
    assert found.curve is not None and found.curve.secret.decode() not in repr(found)
    with dealer(found.address, "intruder") as sock:
        sock.send(frame_events("intruder", 0, [start_event("intruder", 0)]))
        wait_for(lambda: ask_status(found.status_address, timeout_s=5).refused > 0, 30, "a refusal")
    assert ask_status(found.status_address, timeout_s=5).events == 0

    os.kill(found.pid, signal.SIGKILL)
    wait_for(lambda: (find_collector_on_ray(actor_name) or found).pid != found.pid, 60, "a restart")
    restarted = find_collector_on_ray(actor_name)
    assert restarted is not None and restarted.restarts == 1 and restarted.curve == found.curve
    wait_for(lambda: _answers(restarted.status_address), 60, "the restarted collector")
    sender = Sender(found.address, "driver", SenderConfig(spool_dir=str(tmp_path / "spool")), found.curve)
    try:
        submit_results(sender, ITERATIONS)
        assert sender.flush(30)
    finally:
        sender.close()
    rows = (tmp_path / EXPERIMENT / TRIAL_DIR / "result.json").read_text().splitlines()
    assert len(rows) == ITERATIONS
    assert ask_status(restarted.status_address).events == 1 + ITERATIONS


def _answers(status_address: str) -> bool:
    try:
        ask_status(status_address, timeout_s=1)
    except TimeoutError:
        return False
    return True


def test_start_again_returns_the_running_actor_refuses_another_out_and_stop_ends_it(
        ray_session: None, tmp_path: Path, actor_name: str) -> None:
    """Same name and out: the running actor, same keys; another out: refused; stop drains and frees it."""
    first = start_collector_on_ray(out=tmp_path, name=actor_name, sinks=("json",), curve=False)
    again = start_collector_on_ray(out=tmp_path, name=actor_name, sinks=("json",), curve=False)
    assert (again.address, again.pid, again.curve) == (first.address, first.pid, None)
    refusal = (f"collector '{actor_name}' already runs, writing into {tmp_path} (not {tmp_path / 'other'}): "
               f"stop it first (tunebus stop --ray {actor_name})")
    with pytest.raises(ValueError, match=re.escape(refusal)):
        start_collector_on_ray(out=tmp_path / "other", name=actor_name, curve=False)
    with pytest.raises(ValueError, match="already runs without CurveZMQ"):
        start_collector_on_ray(out=tmp_path, name=actor_name)
    stopped = stop_collector_on_ray(actor_name, timeout_s=30)
    assert stopped is not None and stopped.pid == first.pid
    assert find_collector_on_ray(actor_name) is None
    assert stop_collector_on_ray(actor_name) is None
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    done = subprocess.run([sys.executable, "-m", "pipeline.entry.cli", "stop", "--ray", actor_name],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stderr) == (
        1, f"tunebus stop: error: no collector actor called {actor_name!r} on this cluster\n")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_the_actor_stops_its_collector_too(
        ray_session: None, tmp_path: Path, actor_name: str) -> None:
    """ray.kill on the actor leaves no orphan collector behind (the child ends with it) and its keys
    are deleted by the next actor that starts."""
    from pipeline.entry.ray_actor import KEYS_PREFIX, NAMESPACE

    found = start_collector_on_ray(out=tmp_path, name=actor_name, sinks=("json",))
    assert _running(found.pid)
    actor = ray.get_actor(actor_name, namespace=NAMESPACE)
    actor_pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
    keys = list(Path(tempfile.gettempdir()).glob(f"{KEYS_PREFIX}{actor_pid}-*"))
    assert len(keys) == 1 and keys[0].stat().st_mode & 0o777 == 0o700
    ray.kill(actor, no_restart=True)
    wait_for(lambda: not _running(found.pid), 30, "the orphaned collector to exit")
    # ray.kill leaves no time to delete the keys: the next actor to start does.
    wait_for(lambda: not _running(actor_pid), 30, "the actor process to exit")
    start_collector_on_ray(out=tmp_path, name=actor_name, sinks=("json",))
    assert not keys[0].exists()
