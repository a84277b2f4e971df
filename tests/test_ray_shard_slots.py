"""The set of shard actors found by name, without a cluster: one slot per index, a gone shard named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import ray

from pipeline.collector.snapshot import CollectorSnapshot
from pipeline.entry import ray_shards
from pipeline.entry.ray_actor import NAMESPACE, RayCollector

NAME = "set"
COUNT = 3


class _Call:
    """One remote method: ``remote`` records its arguments and returns what ``ray.get`` will give."""

    def __init__(self, answer: Any, calls: list[str], what: str) -> None:
        self.answer, self.calls, self.what = answer, calls, what

    def remote(self, *args: Any) -> Any:
        self.calls.append(self.what)
        return self.answer


@dataclass
class _FakeCluster:
    """Shard actors by name; each answers ``info``/``status_json``/``stop`` (or raises), and records."""

    alive: dict[int, bool]
    calls: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)

    def actor(self, index: int) -> Any:
        name = ray_shards.shard_name(NAME, index)
        info: Any = RayCollector(name, f"tcp://10.0.0.{index}:5555", f"tcp://127.0.0.1:565{index}", "node",
                                 "/out", 100 + index, 0, None, index,
                                 tuple(f"tcp://10.0.0.{k}:5555" for k in range(COUNT)),
                                 tuple(f"tcp://127.0.0.1:565{k}" for k in range(COUNT)))
        if not self.alive[index]:  # listed, but its process is gone: every call fails
            info = ray.exceptions.GetTimeoutError(f"{name} does not answer")
        actor = type("Actor", (), {})()
        actor.name = name
        actor.info = _Call(info, self.calls, f"info {index}")
        actor.status_json = _Call(info if isinstance(info, Exception) else f"status {index}", self.calls,
                                  f"status {index}")
        actor.stop = _Call(0, self.calls, f"stop {index}")
        return actor

    def get_actor(self, name: str, namespace: str | None = None) -> Any:
        for index in self.alive:
            if ray_shards.shard_name(NAME, index) == name and namespace == NAMESPACE:
                return self.actor(index)
        raise ValueError(f"Failed to look up actor with name {name!r}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        names = [{"name": ray_shards.shard_name(NAME, k), "namespace": NAMESPACE} for k in self.alive]
        names.append({"name": ray_shards.shard_name(NAME, 1), "namespace": "elsewhere"})
        monkeypatch.setattr(ray.util, "list_named_actors", lambda all_namespaces=False: names)
        monkeypatch.setattr(ray, "get_actor", self.get_actor)
        monkeypatch.setattr(ray, "get", _get)
        monkeypatch.setattr(ray, "kill", lambda actor, no_restart=True: self.killed.append(actor.name))
        monkeypatch.setattr(CollectorSnapshot, "from_json", staticmethod(lambda text: text))


def _get(ref: Any, timeout: float | None = None) -> Any:
    if isinstance(ref, list):
        return [_get(r) for r in ref]
    if isinstance(ref, Exception):
        raise ref
    return ref


def test_status_keeps_one_slot_per_shard_index_and_shows_a_gone_shard_as_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With shard 1 of 3 gone, shard 2 is still shard 2 and shard 1 is an answer saying it is gone."""
    _FakeCluster({0: True, 2: True}).install(monkeypatch)
    answers = ray_shards.status_on_ray(NAME) or []
    assert [(a.index, a.address, a.status) for a in answers] == [
        (0, "tcp://127.0.0.1:5650", "status 0"), (1, "", None), (2, "tcp://127.0.0.1:5652", "status 2")]
    assert "shard 1 (set-shard-1) is gone" in answers[1].error


def test_with_shard_0_gone_the_others_are_found_shown_and_stopped_and_shard_0_is_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Shard 0's actor gone: find says so by index, status shows shards 1 and 2, stop drains them and
    raises naming shard 0."""
    cluster = _FakeCluster({1: True, 2: True})
    cluster.install(monkeypatch)
    with pytest.raises(RuntimeError, match=r"1 of its 3 shards missing: shard 0 \(set\) is gone"):
        ray_shards.find_collector_on_ray(NAME)
    answers = ray_shards.status_on_ray(NAME) or []
    assert [(a.index, a.status) for a in answers] == [(0, None), (1, "status 1"), (2, "status 2")]
    with pytest.raises(RuntimeError, match=r"shard 0 \(set\) is gone.*the others drained and stopped"):
        ray_shards.stop_collector_on_ray(NAME)
    assert [c for c in cluster.calls if c.startswith("stop")] == ["stop 1", "stop 2"]
    assert cluster.killed == ["set-shard-1", "set-shard-2"]


def test_a_shard_whose_actor_does_not_answer_is_an_error_of_its_own_not_of_the_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed actor that does not answer: status shows the others and its error; stop kills it
    without waiting for a drain and stops the others."""
    cluster = _FakeCluster({0: True, 1: False, 2: True})
    cluster.install(monkeypatch)
    answers = ray_shards.status_on_ray(NAME) or []
    assert [(a.index, a.status) for a in answers] == [(0, "status 0"), (1, None), (2, "status 2")]
    assert "does not answer (set-shard-1 does not answer)" in answers[1].error
    with pytest.raises(RuntimeError, match=r"shard 1 \(set-shard-1\) does not answer"):
        ray_shards.stop_collector_on_ray(NAME)
    assert sorted(cluster.killed) == ["set", "set-shard-1", "set-shard-2"]


def test_no_actor_of_the_set_is_none_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing called NAME or NAME-shard-k in the namespace: find, status and stop all say None."""
    _FakeCluster({}).install(monkeypatch)
    assert ray_shards.find_collector_on_ray(NAME) is None
    assert ray_shards.status_on_ray(NAME) is None
    assert ray_shards.stop_collector_on_ray(NAME) is None
