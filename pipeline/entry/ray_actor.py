"""The collector on a Ray cluster: one detached, named actor (a lone collector or one shard) and its child."""

from __future__ import annotations

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
from typing import TYPE_CHECKING, Any

from pipeline.entry.child_process import RESTARTS, term_with_parent
from pipeline.entry.ray_keys import (
    KEYS_PREFIX,
    KeySet,
    forget_keys,
    make_curve_keys,
    new_keys_dir,
    write_key_set,
)
from pipeline.ops.status_client import ask_status
from pipeline.wire.shards import WILDCARD_HOSTS
from pipeline.wire.sockets import CurveKeys

if TYPE_CHECKING:  # at home in ray_shards (which imports this module); loaded by __getattr__ below
    from pipeline.entry.ray_shards import (
        find_collector_on_ray,
        shard_bind,
        shard_name,
        shard_nodes,
        start_collector_on_ray,
        status_on_ray,
        stop_collector_on_ray,
    )

__all__ = ["KEYS_PREFIX", "CollectorProcess", "RayCollector", "find_collector_on_ray", "shard_bind",
           "shard_name", "shard_nodes", "start_collector_on_ray", "status_on_ray", "stop_collector_on_ray"]
SET_NAMES = frozenset(__all__[3:])
"""The set of shards' names, at home in ``ray_shards`` and reachable from here as the README shows."""

log = logging.getLogger(__name__)

NAMESPACE = "tunebus"
DEFAULT_NAME = "tunebus-collector"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
STATUS_BIND = "tcp://127.0.0.1:0"
"""The status socket stays on its node's loopback: whoever reaches it can stop the collector."""


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
            if RESTARTS.exhausted(self.restarts):
                self.failure = f"exited with {code} {self.restarts + 1} times; giving up"
                log.error("collector %s %s", self.name, self.failure)
                return
            delay = RESTARTS.delay_s(self.restarts)
            self.restarts += 1
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
                                    stdin=subprocess.DEVNULL, preexec_fn=term_with_parent())

    def _log_path(self) -> Path:
        return Path(self.out) / ".tunebus" / f"{self.name}.log"


def _resolve(bind: str, ip: str) -> tuple[str, str]:
    """``bind`` with port 0 made a free port, and the address others reach it at (the node's IP)."""
    if not bind.startswith("tcp://") or ":" not in bind[6:]:
        raise ValueError(f"bind must look like tcp://HOST:PORT (PORT 0 for any), got {bind!r}")
    host, port = bind[6:].rsplit(":", 1)
    if port in ("0", "*"):
        with socket.socket() as probe:
            probe.bind(("" if host in WILDCARD_HOSTS else host, 0))
            port = str(probe.getsockname()[1])
    reachable = ip if host in WILDCARD_HOSTS else host
    return f"tcp://{host}:{port}", f"tcp://{reachable}:{port}"


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def __getattr__(name: str) -> Any:
    """The set's functions (``start_collector_on_ray`` ...), loaded from ``ray_shards`` on first use."""
    if name not in SET_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import pipeline.entry.ray_shards as shards

    return getattr(shards, name)
