"""The collector as a set of shard actors on a Ray cluster: placement, two-phase start, find, status, stop."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.entry.ray_actor import (
    DEFAULT_NAME,
    NAMESPACE,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    CollectorProcess,
    RayCollector,
)
from pipeline.entry.ray_keys import CURVE_FLAGS, KeySet, make_key_set
from pipeline.entry.shard_set import offset_address
from pipeline.ops.shard_status import ShardAnswer

__all__ = ["ShardSlot", "find_collector_on_ray", "shard_bind", "shard_name", "shard_nodes", "shard_slots",
           "start_collector_on_ray", "status_on_ray", "stop_collector_on_ray"]

log = logging.getLogger(__name__)


def head_node_id() -> str:
    """The node id of the cluster's live head node."""
    import ray

    for node in ray.nodes():  # type: ignore[no-untyped-call]  # Ray's, untyped
        if node["Alive"] and "node:__internal_head__" in node["Resources"]:
            return str(node["NodeID"])
    raise RuntimeError("no live head node in ray.nodes()")


def shard_name(name: str, index: int) -> str:
    """The actor name of shard ``index`` of the set called ``name``: ``name`` itself for shard 0."""
    return name if index == 0 else f"{name}-shard-{index}"


def shard_nodes(count: int, nodes: Sequence[str] | None = None) -> list[str]:
    """The node of each of ``count`` shards: ``nodes`` (default: every live node, head first) in turn.

    One shard per node up to the number of nodes, then round again; shard 0, whose
    address producers ask for the map, on the head node, which lives as long as the cluster.
    """
    import ray

    if not nodes:
        head = head_node_id()
        alive = sorted(str(n["NodeID"]) for n in ray.nodes()  # type: ignore[no-untyped-call]
                       if n["Alive"] and str(n["NodeID"]) != head)
        nodes = [head, *alive]
    return [nodes[k % len(nodes)] for k in range(count)]


def shard_bind(bind: str | None, index: int) -> str | None:
    """Shard ``index``'s bind: a fixed port moved up by ``index`` (as ``collect --shards``), port 0 kept."""
    if bind is None or not bind.startswith("tcp://") or not bind.rpartition(":")[2].isdigit():
        return bind
    return bind if bind.endswith(":0") else offset_address(bind, index, "bind")


def start_collector_on_ray(out: str | Path, bind: str | None = None, *, name: str = DEFAULT_NAME,
                           node: str | None = None, status_bind: str | None = None,
                           curve: bool = True, shards: int = 1, nodes: Sequence[str] | None = None,
                           **settings: Any) -> RayCollector:
    """Start (or find, by ``name``) a detached collector actor pinned to ``node`` (default: head).

    ``settings`` are any of ``tunebus collect``'s, by their keyword names
    (``sinks=("json", "csv")``, ``max_queue_events=...``, ``aim_repo=...``), checked
    here before anything starts. ``bind`` defaults to the node's IP on a free port; binding all interfaces
    (``tcp://0.0.0.0:5555``) returns the node's IP in ``address``. The bus
    requires CurveZMQ unless ``curve=False``: pass the returned collector's
    ``curve`` to ``BusCallback``/``TrainBusCallback`` (``curve=collector.curve``).
    ``curve=False`` is sensible only where nobody else can reach the bus (one
    node, ``bind="tcp://127.0.0.1:0"``). ``status_bind`` defaults to the node's
    loopback (``tunebus status``/``tunebus stop`` there). The actor outlives this
    driver; the next driver calling this with the same name gets the running
    collector, and a ValueError if that one writes elsewhere (or runs without
    the CurveZMQ asked for). ``out`` is a path on that node: use the run's ``storage_path``.

    ``shards=N`` starts N collector actors, shard ``k`` called ``name-shard-k`` (shard 0
    ``name``) on ``nodes[k % len(nodes)]`` (default: every live node, head first; ``node``
    alone: all on it), each writing the trials routed to it into ``out`` (shared storage
    on a cluster). A fixed port in ``bind``/``status_bind`` is moved up by ``k`` for shard
    ``k``. One key pair for the collectors and one client pair are made here and shared
    by every shard. What is returned is shard 0's, with the whole map: producers given its
    ``address`` ask it for the others.
    """
    import ray

    from pipeline.collector.config import settings_argv

    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards!r}")
    args = settings_argv(**settings)
    if curve and any(flag in CURVE_FLAGS for flag in args):
        raise ValueError("the actor makes its own CurveZMQ keys: pass curve=False to use "
                         "curve_secret_key and curve_clients of your own")
    if any(flag.startswith("--shard-") for flag in args):
        raise ValueError("the shard settings are the actors' own: pass shards=N")
    try:
        _check_running(find_collector_on_ray(name), name, out, curve, shards)
    except RuntimeError as exc:  # some of its shards are gone
        raise ValueError(str(exc)) from None
    placed = shard_nodes(shards, [node] if node else nodes)
    actors = [_actor(name, k, placed[k]).remote(
                  shard_name(name, k), str(out), shard_bind(bind, k), shard_bind(status_bind, k),
                  tuple(args), curve, k, shards)
              for k in range(shards)]
    infos: list[RayCollector] = ray.get([a.info.remote() for a in actors], timeout=START_TIMEOUT_S)
    if shards > 1 and any(not i.shard_addresses for i in infos):
        infos = _launch(actors, infos, make_key_set() if curve else None)
    found = _whole(infos)
    _check_running(found, name, out, curve, shards)
    return found


def _check_running(found: RayCollector | None, name: str, out: str | Path, curve: bool, shards: int) -> None:
    """Raise ValueError if the collector ``found`` by ``name`` is not the one asked for."""
    if found is None:
        return
    stop = f"stop it first (tunebus stop --ray {name}) or start another with name="
    if found.out != str(Path(out).expanduser()):
        raise ValueError(f"collector {name!r} already runs, writing into {found.out} (not {out}): {stop}")
    if found.pid == -1:  # a shard another driver is launching: its keys and map are not there yet
        return
    if curve and found.curve is None:
        raise ValueError(f"collector {name!r} already runs without CurveZMQ: {stop}, or pass curve=False")
    if found.shard_count != shards:
        raise ValueError(f"collector {name!r} already runs as {found.shard_count} shard(s), "
                         f"not {shards}: {stop}")


def _actor(name: str, index: int, node: str) -> Any:
    """The actor class of shard ``index``, with its options: named, detached, pinned to ``node``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return ray.remote(CollectorProcess).options(
        name=shard_name(name, index), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_concurrency=4,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    )


def _launch(actors: Sequence[Any], infos: Sequence[RayCollector], keys: KeySet | None) -> list[RayCollector]:
    """Phase two: each shard's child starts with the full map and the shared keys; all stop if one fails."""
    import ray

    addresses = tuple(i.address for i in infos)
    status_addresses = tuple(i.status_address for i in infos)
    try:
        launched: list[RayCollector] = ray.get(
            [a.launch.remote(addresses, status_addresses, keys) for a in actors], timeout=START_TIMEOUT_S * 2)
    except Exception:
        _end(actors, 10.0)
        raise
    return launched


def _whole(infos: Sequence[RayCollector]) -> RayCollector:
    """One collector as callers see it: shard 0's info, with every shard's in ``shards`` for a set.

    Raises ValueError if the shards disagree on their map or keys (two drivers launched them at once).
    """
    first = infos[0]
    if len(infos) == 1 and first.shard_count == 1 or first.pid == -1:
        return first  # a lone collector, or a set another driver is launching (no map, no keys yet)
    for info in infos:
        if (info.shard_addresses, info.curve) != (first.shard_addresses, first.curve):
            raise ValueError(f"shard {info.shard_index} ({info.name}) runs with another map or other keys "
                             f"than shard 0: stop them (tunebus stop --ray {first.name}) and start again")
    if len(infos) != first.shard_count:
        raise ValueError(f"collector {first.name!r} has {len(infos)} of its {first.shard_count} shards: "
                         f"stop it (tunebus stop --ray {first.name}) and start again")
    return RayCollector(first.name, first.address, first.status_address, first.node_id, first.out, first.pid,
                        first.restarts, first.curve, 0, first.shard_addresses, first.shard_status_addresses,
                        tuple(infos))


@dataclass(frozen=True, slots=True)
class ShardSlot:
    """Shard ``index`` of a set: its actor and what it said of itself, or why it is missing."""

    index: int
    actor: Any = None
    info: RayCollector | None = None
    error: str = ""


def _named_shards(name: str) -> dict[int, str]:
    """The live actors of the set ``name`` in the tunebus namespace: shard index -> actor name."""
    import ray

    found: dict[int, str] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        actor = str(entry["name"])
        if entry["namespace"] != NAMESPACE:
            continue
        if actor == name:
            found[0] = actor
        elif actor.startswith(f"{name}-shard-") and actor[len(name) + 7:].isdigit():
            found[int(actor[len(name) + 7:])] = actor
    return found


def shard_slots(name: str, timeout_s: float = START_TIMEOUT_S) -> list[ShardSlot] | None:
    """One slot per shard of the set ``name``, in shard order, each found by its own name (so the set
    is found with shard 0 gone too); None if no actor of it is alive.

    The count is what the shards that answer were launched with (every one holds the map), or
    past the highest index found; a shard with no actor, or whose actor does not answer, is a
    slot with its error.
    """
    import ray

    named = _named_shards(name)
    if not named:
        return None
    actors: dict[int, Any] = {}
    for index, actor_name in named.items():
        try:
            actors[index] = ray.get_actor(actor_name, namespace=NAMESPACE)
        except ValueError:  # gone since it was listed
            continue
    asked = {index: actor.info.remote() for index, actor in actors.items()}
    slots: dict[int, ShardSlot] = {}
    for index, ref in asked.items():
        try:
            slots[index] = ShardSlot(index, actors[index], ray.get(ref, timeout=timeout_s))
        except (ray.exceptions.RayError, TimeoutError) as exc:
            slots[index] = ShardSlot(index, actors[index], None, f"does not answer ({_cause(exc)})")
    count = max([max(named) + 1, *(s.info.shard_count for s in slots.values() if s.info is not None)])
    return [slots.get(k) or ShardSlot(k, None, None, "is gone (no live actor of that name)")
            for k in range(count)]


def _cause(exc: BaseException) -> str:
    return str(getattr(exc, "cause", None) or exc).strip().splitlines()[0][:200]


def _missing(name: str, slots: Sequence[ShardSlot]) -> str:
    """One line naming each shard of ``slots`` that is missing, '' if none is."""
    lost = [f"shard {s.index} ({shard_name(name, s.index)}) {s.error}" for s in slots if s.info is None]
    if not lost:
        return ""
    return f"collector {name!r}: {len(lost)} of its {len(slots)} shards missing: {'; '.join(lost)}"


def _each(actors: Sequence[Any], call: Callable[[Any], Any], timeout_s: float) -> list[Any]:
    import ray

    answers: list[Any] = ray.get([call(a) for a in actors], timeout=timeout_s)
    return answers


def find_collector_on_ray(name: str = DEFAULT_NAME) -> RayCollector | None:
    """The running collector (actor, or set of shard actors) called ``name``, or None.

    RuntimeError naming each shard that is gone (a node died) or does not answer: stop the
    set (the survivors) and start it again.
    """
    slots = shard_slots(name)
    if slots is None:
        return None
    missing = _missing(name, slots)
    if missing:
        raise RuntimeError(f"{missing}: stop it (tunebus stop --ray {name}) and start it again")
    try:
        return _whole([s.info for s in slots if s.info is not None])
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None


def status_on_ray(name: str = DEFAULT_NAME, timeout_s: float = 5.0) -> list[ShardAnswer] | None:
    """Each shard's status answer, asked by its actor on its own node (status sockets stay on
    loopback), one per shard index in shard order; None if no collector is called ``name``.
    A shard that is gone or does not answer is an answer with its error."""
    import ray

    from pipeline.collector.snapshot import CollectorSnapshot

    slots = shard_slots(name, timeout_s + START_TIMEOUT_S)
    if slots is None:
        return None
    asked = {s.index: s.actor.status_json.remote(timeout_s) for s in slots if s.info is not None}
    answers: list[ShardAnswer] = []
    for slot in slots:
        address = slot.info.status_address if slot.info is not None else ""
        if slot.index not in asked:
            answers.append(ShardAnswer(slot.index, address, None,
                                       f"shard {slot.index} ({shard_name(name, slot.index)}) {slot.error}"))
            continue
        try:
            answers.append(ShardAnswer(slot.index, address, CollectorSnapshot.from_json(
                ray.get(asked[slot.index], timeout=timeout_s + START_TIMEOUT_S))))
        except (ray.exceptions.RayError, TimeoutError, ValueError) as exc:
            answers.append(ShardAnswer(slot.index, address, None, _cause(exc)))
    return answers


def _end(actors: Sequence[Any], timeout_s: float) -> list[int | None]:
    """Stop every actor's collector at once (each drains), then the actors; their exit statuses."""
    import ray

    try:
        codes: list[int | None] = _each(actors, lambda a: a.stop.remote(timeout_s), timeout_s * 2 + 10)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
    return codes


def stop_collector_on_ray(name: str = DEFAULT_NAME, timeout_s: float = STOP_TIMEOUT_S) -> RayCollector | None:
    """Stop the collector called ``name`` (each shard drained, files closed) and its actors; None if none ran.

    What ran, as it was just before; RuntimeError (one line) if a shard did not exit 0:
    killed after ``timeout_s`` of draining, or failed (its log says why), or was missing
    (gone with its node: the survivors are stopped all the same, and the line names it).
    """
    import ray

    slots = shard_slots(name)
    if slots is None:
        return None
    for slot in slots:
        if slot.info is None and slot.actor is not None:  # there, but not answering: no drain to wait for
            ray.kill(slot.actor, no_restart=True)
    live = [s for s in slots if s.info is not None]
    codes = _end([s.actor for s in live], timeout_s) if live else []
    for slot, code in zip(live, codes):
        info = slot.info
        assert info is not None
        if code != 0:
            what = f"was killed after {timeout_s:g}s of draining" if code is None else f"exited with {code}"
            raise RuntimeError(f"collector {info.name!r} {what}; see {info.out}/.tunebus/{info.name}.log")
    missing = _missing(name, slots)
    if missing:
        raise RuntimeError(f"{missing}; the others drained and stopped")
    infos = [s.info for s in live if s.info is not None]
    try:
        return _whole(infos)
    except ValueError:
        return infos[0]
