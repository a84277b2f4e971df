"""Shared fixtures: a Ray session, collectors as real child processes, free loopback addresses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.testing import free_address

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Ray workers import trainables from tests.*: let them find the repo.
REPO = str(Path(__file__).resolve().parent.parent)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)


def init_local_ray() -> None:
    """Start the one local Ray instance the tests share (again, after a test's own cluster)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray instance for every test that runs a real Tuner."""
    import ray

    init_local_ray()
    yield
    ray.shutdown()


@pytest.fixture
def address() -> str:
    """A loopback address nobody listens on, for one test's collector."""
    return free_address()



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whatever starts Ray (uses ``ray_session``) is marked ``ray``, and every ``ray`` test ``slow``."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.slow)
