"""A collector child process for a benchmark: started, awaited, measured (CPU, RSS) and stopped."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import psutil

from bench.harness import REPO, child_env
from pipeline.testing import free_address, free_ports

__all__ = ["CollectorProcess", "available_sinks", "cpu_seconds"]

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0


def available_sinks() -> tuple[str, ...]:
    """Every registered sink (entry points in group ``tunebus.sinks``): the collector's defaults first."""
    from pipeline.collector.config import CollectorConfig
    from sinks import sink_names

    defaults: tuple[str, ...] = CollectorConfig.default("sinks")
    return defaults + tuple(name for name in sink_names() if name not in defaults)


def cpu_seconds(proc: psutil.Process) -> float:
    """User plus system CPU seconds of ``proc`` (all its threads) and its live descendants (a set of
    shards' collectors under their supervisor); 0 once it is gone."""
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in family:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class CollectorProcess:
    """``python -m bench.collect collect ...`` on a free loopback port, as a context manager.

    With ``shards`` > 1 it is ``collect --shards N`` (a supervisor and N collector children on
    consecutive ports): ``addresses`` lists every shard's bus, ``address`` is the first, and
    CPU and RSS count the children. ``nice`` > 0 starts it under ``nice -n``: it then takes
    what the other processes leave.
    """

    def __init__(self, out: Path, sinks: Sequence[str], *flags: str, shards: int = 1,
                 nice: int = 0) -> None:
        self.out = out
        self.sinks = tuple(sinks)
        if shards > 1:
            first = free_ports(shards)
            self.addresses = tuple(f"tcp://127.0.0.1:{first + k}" for k in range(shards))
        else:
            self.addresses = (free_address(),)
        self.address = self.addresses[0]
        sharding = ("--shards", str(shards)) if shards > 1 else ()
        cmd = [*(("nice", "-n", str(nice)) if nice else ()),
               sys.executable, "-m", "bench.collect", "collect", "--bind", self.address, *sharding,
               "--out", str(out), "--sinks", ",".join(self.sinks), "--log-level", "WARNING",
               *(() if "--status-bind" in flags else ("--status-bind", "")), *flags]
        self.popen = subprocess.Popen(cmd, cwd=REPO, env=child_env())
        self.proc = psutil.Process(self.popen.pid)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for address in self.addresses:
            host, port = address.removeprefix("tcp://").rsplit(":", 1)
            while True:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"collector exited with {self.popen.returncode} before binding")
                try:
                    with socket.create_connection((host, int(port)), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.05)
                if time.monotonic() >= deadline:
                    self.kill()
                    raise RuntimeError(f"collector did not bind {address} in {READY_TIMEOUT_S}s")

    def cpu_s(self) -> float:
        return cpu_seconds(self.proc)

    def rss(self) -> int:
        try:
            family = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for member in family:
            try:
                total += int(member.memory_info().rss)
            except psutil.Error:
                continue
        return total

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (the collector drains and closes every file); kill after ``timeout_s``."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                children = self.proc.children(recursive=True)
            except psutil.Error:
                children = []
            self.popen.kill()
            self.popen.wait()
            for child in children:  # a supervisor's shards: they would only get SIGTERM from its death
                try:
                    child.kill()
                    child.wait(STOP_TIMEOUT_S)
                except psutil.Error:
                    continue

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()
