"""The collector on a Ray cluster: a detached, named actor that supervises ``tunebus collect``."""

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.entry.ray_keys import CURVE_FLAGS, KEYS_PREFIX, forget_keys, make_curve_keys, new_keys_dir
from pipeline.ops.status_client import ask_status
from pipeline.wire.sockets import CurveKeys

__all__ = ["KEYS_PREFIX", "CollectorProcess", "RayCollector", "find_collector_on_ray",
           "start_collector_on_ray", "stop_collector_on_ray"]

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
    """

    def __init__(self, name: str, out: str, bind: str | None, status_bind: str | None,
                 collect_args: Sequence[str], curve: bool = True) -> None:
        """``collect_args``: the further ``tunebus collect`` flags (``settings_argv``'s)."""
        import ray

        self.name, self.out = name, str(Path(out).expanduser())
        ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]  # Ray's, untyped
        self.node_id = ray.get_runtime_context().get_node_id()
        self.bind, self.address = _resolve(bind or f"tcp://{ip}:0", ip)
        self.status_bind, self.status_address = _resolve(status_bind or STATUS_BIND, ip)
        self.keys_dir: Path | None = None
        self.curve: CurveKeys | None = None
        curve_args: tuple[str, ...] = ()
        if curve:
            self.keys_dir = new_keys_dir()
            curve_args, self.curve = make_curve_keys(self.keys_dir)
        self.command = [sys.executable, "-m", "pipeline.entry.cli", "collect", "--bind", self.bind,
                        "--out", self.out, "--status-bind", self.status_bind, *curve_args, *collect_args]
        self.restarts = 0
        self.failure = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="tunebus-collector", daemon=True)
        self._thread.start()
        try:
            self._wait_ready(START_TIMEOUT_S)
        except RuntimeError:
            self.stop(timeout_s=10.0)
            raise

    def info(self) -> RayCollector:
        """This collector's addresses, keys and state."""
        pid = self._proc.pid if self._proc is not None else -1
        return RayCollector(self.name, self.address, self.status_address, self.node_id,
                            self.out, pid, self.restarts, self.curve)

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


def start_collector_on_ray(out: str | Path, bind: str | None = None, *, name: str = DEFAULT_NAME,
                           node: str | None = None, status_bind: str | None = None,
                           curve: bool = True, **settings: Any) -> RayCollector:
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
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from pipeline.collector.config import settings_argv

    args = settings_argv(**settings)
    if curve and any(flag in CURVE_FLAGS for flag in args):
        raise ValueError("the actor makes its own CurveZMQ keys: pass curve=False to use "
                         "curve_secret_key and curve_clients of your own")
    actor: Any = ray.remote(CollectorProcess).options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
        max_concurrency=4,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node or head_node_id(), soft=False),
    ).remote(name, str(out), bind, status_bind, tuple(args), curve)
    found: RayCollector = ray.get(actor.info.remote(), timeout=START_TIMEOUT_S)
    stop = f"stop it first (tunebus stop --ray {name}) or start another with name="
    if found.out != str(Path(out).expanduser()):
        raise ValueError(f"collector {name!r} already runs, writing into {found.out} (not {out}): {stop}")
    if curve and found.curve is None:
        raise ValueError(f"collector {name!r} already runs without CurveZMQ: {stop}, or pass curve=False")
    return found


def find_collector_on_ray(name: str = DEFAULT_NAME) -> RayCollector | None:
    """The running collector actor called ``name``, or None."""
    import ray

    try:
        actor: Any = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None
    found: RayCollector = ray.get(actor.info.remote(), timeout=START_TIMEOUT_S)
    return found


def stop_collector_on_ray(name: str = DEFAULT_NAME, timeout_s: float = STOP_TIMEOUT_S) -> RayCollector | None:
    """Stop the collector called ``name`` (drained, files closed) and its actor; None if none ran.

    What ran, as it was just before; RuntimeError (one line) if it did not exit 0:
    killed after ``timeout_s`` of draining, or failed (its log says why).
    """
    import ray

    try:
        actor: Any = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None
    found: RayCollector = ray.get(actor.info.remote(), timeout=START_TIMEOUT_S)
    code: int | None = ray.get(actor.stop.remote(timeout_s), timeout=timeout_s * 2 + 10)
    ray.kill(actor, no_restart=True)
    if code != 0:
        what = f"was killed after {timeout_s:g}s of draining" if code is None else f"exited with {code}"
        raise RuntimeError(f"collector {name!r} {what}; see {found.out}/.tunebus/{name}.log")
    return found
