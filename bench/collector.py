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
from pipeline.testing import free_address

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
    """User plus system CPU seconds of ``proc`` (all its threads); 0 once it is gone."""
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


class CollectorProcess:
    """``python -m bench.collect collect ...`` on a free loopback port, as a context manager."""

    def __init__(self, out: Path, sinks: Sequence[str], *flags: str) -> None:
        self.out = out
        self.sinks = tuple(sinks)
        self.address = free_address()
        cmd = [sys.executable, "-m", "bench.collect", "collect", "--bind", self.address,
               "--out", str(out), "--sinks", ",".join(self.sinks), "--log-level", "WARNING",
               *(() if "--status-bind" in flags else ("--status-bind", "")), *flags]
        self.popen = subprocess.Popen(cmd, cwd=REPO, env=child_env())
        self.proc = psutil.Process(self.popen.pid)
        self._wait_ready()

    def _wait_ready(self) -> None:
        host, port = self.address.removeprefix("tcp://").rsplit(":", 1)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"collector exited with {self.popen.returncode} before binding")
            try:
                with socket.create_connection((host, int(port)), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"collector did not bind {self.address} in {READY_TIMEOUT_S}s")

    def cpu_s(self) -> float:
        return cpu_seconds(self.proc)

    def rss(self) -> int:
        try:
            return int(self.proc.memory_info().rss)
        except psutil.Error:
            return 0

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
            self.popen.kill()
            self.popen.wait()

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()
