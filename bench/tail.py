"""A process that tails result.json files and timestamps each line the moment its bytes are on disk."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

__all__ = ["SENT_KEY", "start_tail"]

SENT_KEY = "bench_sent_ns"
POLL_S = 0.0005
_MARK = f'"{SENT_KEY}":'.encode()


def _tail(paths: list[str], expected: int, timeout_s: float, out: Queue[Any]) -> None:
    """Read new complete lines of every path until ``expected`` lines or ``timeout_s``."""
    offsets = dict.fromkeys(paths, 0)
    partial = dict.fromkeys(paths, b"")
    latencies: list[float] = []
    out.put("ready")
    deadline = time.monotonic() + timeout_s
    while len(latencies) < expected and time.monotonic() < deadline:
        for path in paths:
            try:
                with open(path, "rb") as f:
                    f.seek(offsets[path])
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            now = time.time_ns()
            offsets[path] += len(data)
            lines = (partial[path] + data).split(b"\n")
            partial[path] = lines.pop()
            for line in lines:
                at = line.find(_MARK)
                if at >= 0:
                    end = line.find(b",", at)
                    end = end if end >= 0 else line.find(b"}", at)
                    latencies.append((now - int(line[at + len(_MARK):end])) / 1e6)
        time.sleep(POLL_S)
    out.put(latencies)


class Tail:
    """The tailing child process; ``latencies_ms()`` waits for its answer."""

    def __init__(self, paths: list[Path], expected: int, timeout_s: float) -> None:
        ctx = multiprocessing.get_context("forkserver")
        self._queue: Queue[Any] = ctx.Queue()
        args = ([str(p) for p in paths], expected, timeout_s, self._queue)
        self._proc = ctx.Process(target=_tail, args=args, daemon=True)
        self._proc.start()
        self._timeout_s = timeout_s
        self._queue.get(timeout=60)

    def latencies_ms(self) -> list[float]:
        result: list[float] = self._queue.get(timeout=self._timeout_s + 60)
        self._proc.join(timeout=10)
        return result


def start_tail(paths: list[Path], expected: int, timeout_s: float) -> Tail:
    return Tail(paths, expected, timeout_s)
