"""The collector as a detached Ray actor: a driver starts it and sweeps through it, the next finds it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import ray
from ray import tune

from pipeline.entry.ray_actor import find_collector_on_ray, head_node_id, stop_collector_on_ray
from pipeline.ops.status_client import ask_status
from pipeline.testing import wait_for

TRIALS = 2
ITERATIONS = 5

# A whole driver: connects to the running cluster, starts the collector actor,
# sweeps through it, prints the collector it used and exits (its job ends).
DRIVER = f"""
import json, os, sys
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
import ray
from ray import tune
from pipeline import BusCallback
from pipeline.entry.ray_actor import start_collector_on_ray

def trainable(config):
    for i in range({ITERATIONS}):
        tune.report({{"loss": config["lr"] * ({ITERATIONS} - i), "i": i}})

gcs, storage, name = sys.argv[1:]
ray.init(address=gcs, configure_logging=False, log_to_driver=False)
found = start_collector_on_ray(out=storage, name=name, sinks=("json", "csv"))
tune.Tuner(
    trainable,
    param_space={{"lr": tune.grid_search([0.1, 0.2])}},
    run_config=tune.RunConfig(name="exp", storage_path=storage, verbose=0,
                              callbacks=[BusCallback(found.address)]),
).fit()
print("COLLECTOR " + json.dumps({{"address": found.address, "node_id": found.node_id,
                                  "status": found.status_address}}))
"""


@pytest.fixture
def actor_name() -> str:
    """A fresh actor name per test, stopped afterwards whatever happened."""
    name = f"tunebus-test-{uuid.uuid4().hex[:8]}"
    yield name  # type: ignore[misc]
    stop_collector_on_ray(name, timeout_s=30)


def test_a_driver_sweeps_through_the_actor_and_the_next_driver_finds_it(
        ray_session: None, tmp_path: Path, actor_name: str) -> None:
    """The actor outlives the driver that started it, wrote the sweep, and is found again by name."""
    storage = tmp_path / "results"
    gcs = ray.get_runtime_context().gcs_address
    done = subprocess.run([sys.executable, "-c", DRIVER, gcs, str(storage), actor_name],
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    used = json.loads(done.stdout.split("COLLECTOR ", 1)[1].splitlines()[0])

    found = find_collector_on_ray(actor_name)
    assert found is not None
    assert (found.address, found.status_address) == (used["address"], used["status"])
    assert found.node_id == head_node_id()
    assert not found.address.startswith("tcp://127.") or ray.util.get_node_ip_address().startswith("127.")
    status = ask_status(found.status_address, timeout_s=10)
    assert status.events > 0 and status.sinks["json"].lag == 0
    assert [p.dropped for p in status.producers.values()] == [0]

    analysis = tune.ExperimentAnalysis(str(storage / "exp"))
    frames = analysis.trial_dataframes
    assert len(frames) == TRIALS
    assert sorted(len(df) for df in frames.values()) == [ITERATIONS] * TRIALS


def test_start_again_returns_the_running_actor_and_stop_ends_it(
        ray_session: None, tmp_path: Path, actor_name: str) -> None:
    """A second start with the same name reuses the actor; stop drains it and frees the name."""
    from pipeline.entry.ray_actor import start_collector_on_ray

    first = start_collector_on_ray(out=tmp_path, name=actor_name, sinks=("json",))
    again = start_collector_on_ray(out=tmp_path, name=actor_name, sinks=("json",))
    assert (again.address, again.pid) == (first.address, first.pid)
    assert stop_collector_on_ray(actor_name, timeout_s=30)
    assert find_collector_on_ray(actor_name) is None
    assert not stop_collector_on_ray(actor_name)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_the_actor_stops_its_collector_too(
        ray_session: None, tmp_path: Path, actor_name: str) -> None:
    """ray.kill on the actor leaves no orphan collector behind: the child ends with it."""
    from pipeline.entry.ray_actor import NAMESPACE, start_collector_on_ray

    found = start_collector_on_ray(out=tmp_path, name=actor_name, sinks=("json",))
    assert _running(found.pid)
    ray.kill(ray.get_actor(actor_name, namespace=NAMESPACE), no_restart=True)
    wait_for(lambda: not _running(found.pid), 30, "the orphaned collector to exit")
