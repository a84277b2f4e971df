"""``tunebus collect --shards N``: N child collectors on consecutive ports, supervised as one set."""

from __future__ import annotations

import logging
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from pipeline.collector.config import CollectorConfig
from pipeline.entry.child_process import RESTARTS, RestartPolicy, term_with_parent

__all__ = ["MAX_RESTARTS", "ShardPlan", "ShardSet", "child_argv", "offset_address", "plan_shards"]

log = logging.getLogger("tunebus")

MAX_RESTARTS = RESTARTS.max_restarts
"""Restarts of one shard killed by a signal before the set gives up (and stops, exit 1)."""
POLL_S = 0.2
"""How often the supervisor looks at a signal it was sent (its handler only notes it)."""


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """Every shard's addresses: bus, status ('' for none), metrics port (None for none)."""

    binds: tuple[str, ...]
    status_binds: tuple[str, ...]
    metrics_ports: tuple[int | None, ...]

    def overrides(self, index: int) -> list[str]:
        """The ``tunebus collect`` flags that make a child shard ``index`` of this set."""
        flags = ["--bind", self.binds[index], "--status-bind", self.status_binds[index],
                 "--shard-index", str(index), "--shard-addresses", ",".join(self.binds)]
        if all(self.status_binds):
            flags += ["--shard-status-addresses", ",".join(self.status_binds)]
        port = self.metrics_ports[index]
        return flags + (["--metrics-port", str(port)] if port is not None else [])


def offset_address(address: str, k: int, flag: str) -> str:
    """``address`` for shard ``k``: its TCP port + k, or its ipc path with ``.k`` (k > 0)."""
    if not address or k == 0:
        return address
    scheme, _, rest = address.partition("://")
    if scheme == "ipc":
        return f"{address}.{k}"
    if scheme != "tcp":
        raise ValueError(f"{flag} {address}: --shards needs tcp:// or ipc:// addresses (each shard is "
                         "its own process)")
    host, _, port = rest.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"{flag} {address}: --shards needs a numbered port (shard k binds port + k)")
    return f"tcp://{host}:{int(port) + k}"


def _fixed(address: str, flag: str) -> None:
    if address.startswith("inproc://"):
        raise ValueError(f"{flag} {address}: --shards needs tcp:// or ipc:// addresses (each shard is "
                         "its own process)")
    if address.startswith("tcp://") and address.rpartition(":")[2] in ("0", "*"):
        raise ValueError(f"{flag} {address}: --shards needs a fixed port (shard k binds port + k), not 0")


def plan_shards(config: CollectorConfig, count: int) -> ShardPlan:
    """Shard k binds the bus port + k, the status port + k, the metrics port + k (ipc paths get ``.k``).

    Raises ValueError for a port 0 (shards could not be found from the first), for an
    inproc address, and for shard settings given by hand beside ``--shards``.
    """
    if config.shard_addresses or config.shard_index or config.shard_status_addresses:
        raise ValueError("--shards sets --shard-index, --shard-addresses and --shard-status-addresses "
                         "itself: give one or the other")
    _fixed(config.bind, "--bind")
    if config.status_bind:
        _fixed(config.status_bind, "--status-bind")
    if config.metrics_port == 0:
        raise ValueError("--metrics-port 0: --shards needs a fixed port (shard k serves port + k), not 0")
    if config.metrics_port is not None and config.metrics_port + count - 1 > 65535:
        raise ValueError(f"--metrics-port {config.metrics_port}: shard {count - 1} would need a port "
                         "past 65535")
    binds = tuple(offset_address(config.bind, k, "--bind") for k in range(count))
    statuses = tuple(offset_address(config.status_bind, k, "--status-bind") for k in range(count))
    ports = tuple(None if config.metrics_port is None else config.metrics_port + k for k in range(count))
    taken = set(binds) & set(statuses)
    if taken:
        raise ValueError(f"--shards {count}: {min(taken)} would be both a shard's bus and another's status "
                         f"socket (bus {config.bind}, status {config.status_bind}, each + 0..{count - 1}); "
                         "give --status-bind (or --bind) a port out of the other's range")
    return ShardPlan(binds, statuses, ports)


def child_argv(argv: Sequence[str]) -> list[str]:
    """``tunebus collect``'s own flags without ``--shards`` (a child is one shard; later flags win)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--shards":
            skip = True
        elif not arg.startswith("--shards="):
            kept.append(arg)
    return kept


class ShardSet:
    """Runs N ``tunebus collect`` children as one collector, and keeps them running.

    A child killed by a signal (kill -9, the OOM killer) is restarted over its own
    state after a backoff, at most ``MAX_RESTARTS`` times; its ledger makes that
    exactly-once, and producers resend what it had not acknowledged. A child that
    exits 0 was asked to drain (``tunebus stop``): the set stops, every other child
    drained too. One that fails otherwise (its port taken, a refused ``--out``) stops
    the set with its status. SIGTERM and SIGINT are passed on to every child, and the
    set returns once each has written everything it received.
    """

    def __init__(self, plan: ShardPlan, argv: Sequence[str], max_restarts: int = MAX_RESTARTS,
                 first_delay_s: float = RESTARTS.first_delay_s) -> None:
        self.plan = plan
        self.policy = RestartPolicy(max_restarts, first_delay_s, RESTARTS.max_delay_s)
        self.argv = child_argv(argv)
        self.count = len(plan.binds)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * self.count
        self.restarts = [0] * self.count
        self._exits: queue.Queue[tuple[int, subprocess.Popen[bytes], int]] = queue.Queue()
        self._signalled = 0

    def command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "pipeline.entry.cli", "collect", *self.argv,
                *self.plan.overrides(index)]

    def run(self) -> int:
        """Start every shard, supervise them until stopped; 0 when every shard drained cleanly."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self.count):
                self._spawn(index)
            log.info("%d shards: %s; tunebus status %s shows them all, tunebus stop %s stops them all",
                     self.count, ", ".join(f"shard {k} on {b}" + (f" (status {s})" if s else "")
                                           for k, (b, s) in enumerate(zip(self.plan.binds,
                                                                          self.plan.status_binds))),
                     self.plan.status_binds[0] or "ADDRESS", self.plan.status_binds[0] or "ADDRESS")
            return self._supervise()
        finally:
            self._terminate_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = signum  # only noted: the loop acts on it within POLL_S

    def _supervise(self) -> int:
        due: dict[int, float] = {}  # shard -> when to restart it
        while True:
            if self._signalled:
                log.info("%s: stopping every shard; each writes everything it received first",
                         signal.Signals(self._signalled).name)
                return self._stop_all()
            for index, when in list(due.items()):
                if time.monotonic() >= when:
                    del due[index]
                    self._spawn(index)
            try:
                index, proc, code = self._exits.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if proc is not self.procs[index]:
                continue
            self.procs[index] = None
            if code == 0:
                log.info("shard %d stopped (asked to drain); stopping the other shards", index)
                return self._stop_all()
            if code > 0:
                log.error("shard %d exited with status %d; stopping the other shards", index, code)
                self._stop_all()
                return code
            if self.policy.exhausted(self.restarts[index]):
                log.error("shard %d was killed by %s %d times; giving up, stopping the other shards",
                          index, signal.Signals(-code).name, self.restarts[index] + 1)
                self._stop_all()
                return 1
            delay = self.policy.delay_s(self.restarts[index])
            self.restarts[index] += 1
            log.warning("shard %d was killed by %s; restart %d of at most %d in %.1fs", index,
                        signal.Signals(-code).name, self.restarts[index], self.policy.max_restarts, delay)
            due[index] = time.monotonic() + delay

    def _spawn(self, index: int) -> None:
        proc = subprocess.Popen(self.command(index), stdin=subprocess.DEVNULL, preexec_fn=term_with_parent())
        self.procs[index] = proc
        threading.Thread(target=self._watch, args=(index, proc), name=f"shard-{index}", daemon=True).start()

    def _watch(self, index: int, proc: subprocess.Popen[bytes]) -> None:
        self._exits.put((index, proc, proc.wait()))

    def _stop_all(self) -> int:
        """SIGTERM every running shard and wait for each drain; 0 if every one exited 0."""
        running = [p for p in self.procs if p is not None]
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [proc.wait() for proc in running]
        self.procs = [None] * self.count
        # A collector takes SIGTERM as "drain" while its loop runs; one that dies of it was outside
        # the loop (starting, or already drained and exiting on its own stop): nothing was in flight.
        return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1

    def _terminate_all(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait()

