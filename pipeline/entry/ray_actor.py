"""The collector on a Ray cluster: detached, named actors (one a shard) supervising ``tunebus collect``."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.entry.ray_keys import (
    CURVE_FLAGS,
    KEYS_PREFIX,
    KeySet,
    forget_keys,
    make_curve_keys,
    make_key_set,
    new_keys_dir,
    write_key_set,
)
from pipeline.ops.shard_status import ShardAnswer
from pipeline.ops.status_client import ask_status
from pipeline.wire.sockets import CurveKeys

__all__ = ["KEYS_PREFIX", "CollectorProcess", "RayCollector", "find_collector_on_ray", "shard_bind",
           "shard_name", "shard_nodes", "start_collector_on_ray", "status_on_ray", "stop_collector_on_ray"]

log = logging.getLogger(__name__)

NAMESPACE = "tunebus"
DEFAULT_NAME = "tunebus-collector"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
MAX_RESTARTS = 5
MAX_RESTART_DELAY_S = 30.0
ALL_INTERFACES = ("0.0.0.0", "*", "")
STATUS_BIND = "tcp://127.0.0.1:0"
"""The status socket stays on its node's loopback: whoever reaches it can stop the collector."""
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class RayCollector:
    """A collector actor: ``address`` and ``curve`` for ``BusCallback``, ``status_address`` for status.

    ``curve`` is a client key pair the collector admits, with its public key
    (None when started with ``curve=False``); it reaches drivers and workers
    over Ray's own channel, so nobody handles key files.
    """

    name: str
    address: str
    status_address: str
    node_id: str
    out: str
    pid: int
    restarts: int
    curve: CurveKeys | None = field(default=None, repr=False)
    shard_index: int = 0
    shard_addresses: tuple[str, ...] = ()
    """Every shard's bus address in shard order (empty: a lone collector); producers ask ``address``
    for it, so ``BusCallback(collector.address, ...)`` reaches every shard."""
    shard_status_addresses: tuple[str, ...] = ()
    """Every shard's status address, each on its own node's loopback."""
    shards: tuple[RayCollector, ...] = field(default=(), repr=False)
    """Each shard's own state (pid, node, restarts), in shard order, in what ``start_collector_on_ray``
    and ``find_collector_on_ray`` return for a set of shards; empty for a lone collector and in a
    shard's own ``info()``."""

    @property
    def shard_count(self) -> int:
        """How many shards this collector is one of (1: a lone collector)."""
        return max(1, len(self.shard_addresses))


class CollectorProcess:
    """Runs ``tunebus collect`` as a child process on its node, and restarts it when it fails.

    A child process rather than an event loop inside the actor: the collector
    keeps its own signal handling, GC settings and loop; a crash in it leaves
    the actor up to restart it over the same ``--out`` (the ledger makes that
    exactly-once); ``stop`` is the SIGTERM drain ``tunebus collect`` is tested
    with. The child never outlives the actor: Ray's worker subreaper kills it
    when the actor is killed, and where that is off, PR_SET_PDEATHSIG sends
    it SIGTERM. One thread owns the child: it starts it, waits on it, restarts it.

    With ``curve`` the bus requires CurveZMQ: the actor makes the collector's key
    pair and one client pair in a private temporary directory on its node
    (0700, never under ``out``), admits that client, and hands its keys out in
    ``info()``; every restart of the child uses the same keys.

    One shard of ``shard_count`` > 1 starts in two phases: built, it has only
    picked its addresses (``info()``); ``launch`` then gives it every shard's
    addresses and the keys all shards share, and starts its child.
    """

    def __init__(self, name: str, out: str, bind: str | None, status_bind: str | None,
                 collect_args: Sequence[str], curve: bool = True, shard_index: int = 0,
                 shard_count: int = 1) -> None:
        """``collect_args``: the further ``tunebus collect`` flags (``settings_argv``'s)."""
        import ray

        self.name, self.out = name, str(Path(out).expanduser())
        ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]  # Ray's, untyped
        self.node_id = ray.get_runtime_context().get_node_id()
        self.bind, self.address = _resolve(bind or f"tcp://{ip}:0", ip)
        self.status_bind, self.status_address = _resolve(status_bind or STATUS_BIND, ip)
        self.collect_args, self.uses_curve = tuple(collect_args), curve
        self.shard_index, self.shard_count = shard_index, shard_count
        self.shard_addresses: tuple[str, ...] = ()
        self.shard_status_addresses: tuple[str, ...] = ()
        self.keys_dir: Path | None = None
        self.curve: CurveKeys | None = None
        self.command: list[str] = []
        self.restarts = 0
        self.failure = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._launching = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="tunebus-collector", daemon=True)
        if shard_count == 1:
            curve_args: tuple[str, ...] = ()
            if curve:
                self.keys_dir = new_keys_dir()
                curve_args, self.curve = make_curve_keys(self.keys_dir)
            self._start(curve_args)

    def launch(self, addresses: Sequence[str], status_addresses: Sequence[str],
               keys: KeySet | None) -> RayCollector:
        """Start this shard's child with every shard's addresses and the shared ``keys``; its info.

        Once only: a shard already launched (by another driver) keeps its map and keys and
        returns its info, which the caller compares with what it asked for.
        """
        with self._launching:
            if self.command:
                return self.info()
            if (keys is None) == self.uses_curve:
                given = "without" if keys is None else "with"
                raise ValueError(f"shard started with curve={self.uses_curve}, launched {given} keys")
            if tuple(addresses)[self.shard_index] != self.address:
                raise ValueError(f"shard {self.shard_index}'s address is {self.address}, "
                                 f"not {addresses[self.shard_index]}")
            self.shard_addresses, self.shard_status_addresses = tuple(addresses), tuple(status_addresses)
            curve_args: tuple[str, ...] = ()
            if keys is not None:
                self.keys_dir = new_keys_dir()
                curve_args, self.curve = write_key_set(self.keys_dir, keys), keys.client
            self._start((*curve_args, "--shard-index", str(self.shard_index),
                         "--shard-addresses", ",".join(addresses),
                         "--shard-status-addresses", ",".join(status_addresses)))
            return self.info()

    def status_json(self, timeout_s: float = 5.0) -> str:
        """The collector's status answer (``tunebus status``'s JSON), asked on this node's loopback."""
        return ask_status(self.status_address, timeout_s).to_json()

    def _start(self, more_args: Sequence[str]) -> None:
        self.command = [sys.executable, "-m", "pipeline.entry.cli", "collect", "--bind", self.bind,
                        "--out", self.out, "--status-bind", self.status_bind, *more_args,
                        *self.collect_args]
        self._thread.start()
        try:
            self._wait_ready(START_TIMEOUT_S)
        except RuntimeError:
            self.stop(timeout_s=10.0)
            raise

    def info(self) -> RayCollector:
        """This collector's addresses, keys and state (pid -1: a shard not launched yet)."""
        pid = self._proc.pid if self._proc is not None else -1
        return RayCollector(self.name, self.address, self.status_address, self.node_id,
                            self.out, pid, self.restarts, self.curve, self.shard_index,
                            self.shard_addresses, self.shard_status_addresses)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the collector (it drains and closes its files); its exit status, None if killed.

        Between a crash and its restart there is nothing to drain: 0; after the
        last restart failed, that failure's status. The keys go with it: a
        collector started again is a new actor with new keys.
        """
        self._stopping.set()
        proc = self._proc
        try:
            if proc is None or proc.poll() is not None:
                if self._thread.is_alive():
                    self._thread.join(timeout_s)
                return proc.returncode if proc is not None and self.failure else 0
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.error("collector %s did not stop within %.0fs; killing it", self.name, timeout_s)
                proc.kill()
                proc.wait(timeout_s)
                return None
            self._thread.join(timeout_s)
            return proc.returncode
        finally:
            forget_keys(self.keys_dir)

    def _wait_ready(self, timeout_s: float) -> None:
        """Return once the collector answers on its status socket; raise if it dies or is slow."""
        deadline = time.monotonic() + timeout_s
        self._started.wait(timeout_s)
        while time.monotonic() < deadline:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                raise RuntimeError(f"tunebus collect exited at start ({self.failure or 'see the log'}): "
                                   f"{_log_tail(self._log_path())}")
            try:
                ask_status(self.status_address, timeout_s=1.0)
                return
            except TimeoutError:
                continue
        raise RuntimeError(f"tunebus collect did not answer on {self.status_address} within {timeout_s:g}s")

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            self._proc = self._spawn()
            self._started.set()
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            if self.restarts >= MAX_RESTARTS:
                self.failure = f"exited with {code} {self.restarts + 1} times; giving up"
                log.error("collector %s %s", self.name, self.failure)
                return
            self.restarts += 1
            delay = min(0.5 * 2 ** self.restarts, MAX_RESTART_DELAY_S)
            log.warning("collector %s exited with %s; restart %d in %.1fs", self.name, code,
                        self.restarts, delay)
            self._stopping.wait(delay)

    def _spawn(self) -> subprocess.Popen[bytes]:
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p))
        log_path = self._log_path()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            return subprocess.Popen(self.command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=_term_with_parent())

    def _log_path(self) -> Path:
        return Path(self.out) / ".tunebus" / f"{self.name}.log"


def _resolve(bind: str, ip: str) -> tuple[str, str]:
    """``bind`` with port 0 made a free port, and the address others reach it at (the node's IP)."""
    if not bind.startswith("tcp://") or ":" not in bind[6:]:
        raise ValueError(f"bind must look like tcp://HOST:PORT (PORT 0 for any), got {bind!r}")
    host, port = bind[6:].rsplit(":", 1)
    if port in ("0", "*"):
        with socket.socket() as probe:
            probe.bind(("" if host in ALL_INTERFACES else host, 0))
            port = str(probe.getsockname()[1])
    reachable = ip if host in ALL_INTERFACES else host
    return f"tcp://{host}:{port}", f"tcp://{reachable}:{port}"


def _term_with_parent() -> Any:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child only calls it
    return lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


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
    if bind is None or index == 0 or not bind.startswith("tcp://"):
        return bind
    host, _, port = bind[6:].rpartition(":")
    return bind if port in ("0", "*") or not port.isdigit() else f"tcp://{host}:{int(port) + index}"


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
    if len(infos) == 1 and first.shard_count == 1:
        return first
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


def _shard_actors(name: str) -> list[Any]:
    """The actors of the collector called ``name``: shard 0, then every further shard that exists."""
    import ray

    first: Any = ray.get_actor(name, namespace=NAMESPACE)
    count = ray.get(first.info.remote(), timeout=START_TIMEOUT_S).shard_count
    actors = [first]
    for k in range(1, count):
        try:
            actors.append(ray.get_actor(shard_name(name, k), namespace=NAMESPACE))
        except ValueError:
            log.warning("shard %d of collector %s is gone", k, name)
    return actors


def _each(actors: Sequence[Any], call: Callable[[Any], Any], timeout_s: float) -> list[Any]:
    import ray

    answers: list[Any] = ray.get([call(a) for a in actors], timeout=timeout_s)
    return answers


def find_collector_on_ray(name: str = DEFAULT_NAME) -> RayCollector | None:
    """The running collector (actor, or set of shard actors) called ``name``, or None.

    RuntimeError if some of its shards are gone (a node died): stop it and start it again.
    """
    try:
        actors = _shard_actors(name)
    except ValueError:
        return None
    try:
        return _whole(_each(actors, lambda a: a.info.remote(), START_TIMEOUT_S))
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None


def status_on_ray(name: str = DEFAULT_NAME, timeout_s: float = 5.0) -> list[ShardAnswer] | None:
    """Each shard's status answer, asked by its actor on its own node (status sockets stay on
    loopback), in shard order; None if no collector is called ``name``. A shard that does not
    answer is an answer with its error."""
    import ray

    from pipeline.collector.snapshot import CollectorSnapshot
    from pipeline.ops.shard_status import ShardAnswer

    try:
        actors = _shard_actors(name)
    except ValueError:
        return None
    asked = [a.status_json.remote(timeout_s) for a in actors]
    answers: list[ShardAnswer] = []
    for index, (actor, answer) in enumerate(zip(actors, asked)):
        address = ray.get(actor.info.remote(), timeout=START_TIMEOUT_S).status_address
        try:
            answers.append(ShardAnswer(index, address, CollectorSnapshot.from_json(
                ray.get(answer, timeout=timeout_s + START_TIMEOUT_S))))
        except (ray.exceptions.RayError, TimeoutError) as exc:
            answers.append(ShardAnswer(index, address, None, str(getattr(exc, "cause", exc))))
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
    killed after ``timeout_s`` of draining, or failed (its log says why).
    """
    try:
        actors = _shard_actors(name)
    except ValueError:
        return None
    infos: list[RayCollector] = _each(actors, lambda a: a.info.remote(), START_TIMEOUT_S)
    codes = _end(actors, timeout_s)
    for info, code in zip(infos, codes):
        if code != 0:
            what = f"was killed after {timeout_s:g}s of draining" if code is None else f"exited with {code}"
            raise RuntimeError(f"collector {info.name!r} {what}; see {info.out}/.tunebus/{info.name}.log")
    try:
        return _whole(infos)
    except ValueError:
        return infos[0]
