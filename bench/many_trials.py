"""10,000 trials through one collector: its peak open files and RSS stay flat, and its results/s."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.collector import CollectorProcess
from bench.harness import BenchArgs, emit, parse_args

__all__ = ["main"]

OPEN_AT_ONCE = 1_000
RESULTS_PER_TRIAL = 5
SINKS = ("json", "csv", "tensorboard")
FLUSH_TIMEOUT_S = 1_800.0
SAMPLE_EVERY_S = 0.2


def _events(producer: str, trials: int) -> list[bytes]:
    """Trials in waves of ``OPEN_AT_ONCE``: all started, their results interleaved, all completed."""
    from pipeline.wire.codec import encode_event

    kinds: list[tuple[str, int, dict[str, Any]]] = []
    for first in range(0, trials, OPEN_AT_ONCE):
        wave = range(first, min(trials, first + OPEN_AT_ONCE))
        kinds += [("trial_start", i, {"config": {"i": i}}) for i in wave]
        kinds += [("result", i, {"training_iteration": n + 1, "loss": 1.0 / (n + 1), "i": i})
                  for n in range(RESULTS_PER_TRIAL) for i in wave]
        kinds += [("trial_complete", i, {}) for i in wave]
    return [encode_event(kind, producer, seq, time.time(), "many", f"t{i:05d}", f"trial_{i:05d}", payload)
            for seq, (kind, i, payload) in enumerate(kinds)]


class _Peaks:
    """Samples a process's open files and RSS on a thread until stopped."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.fds: list[int] = []
        self.rss: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            try:
                self.fds.append(self.proc.num_fds())
                self.rss.append(self.proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(root: Path, events: list[bytes], trials: int, flags: tuple[str, ...]) -> dict[str, Any]:
    """Every event through a collector started with ``flags``: results/s, peak open files and RSS."""
    from pipeline.producer.sender import Sender, SenderConfig

    with CollectorProcess(root / "out", SINKS, *flags) as collector:
        rss_start = collector.rss()
        peaks = _Peaks(collector.proc)
        sender = Sender(collector.address, "many", SenderConfig(spool_dir=str(root / "spool")))
        began = time.perf_counter()
        for seq, encoded in enumerate(events):
            if not sender.accepting():
                sender.wait_for_room(FLUSH_TIMEOUT_S)
            sender.submit(seq, encoded)
        acknowledged = sender.flush(FLUSH_TIMEOUT_S)
        wall = time.perf_counter() - began
        sender.close()
        peaks.stop()
        collector.stop()
    third = max(1, len(peaks.rss) // 3)
    return {"flags": list(flags), "acknowledged": acknowledged,
            "results_per_s": round(trials * RESULTS_PER_TRIAL / wall),
            "peak_open_files": max(peaks.fds, default=0),
            "rss_mib": {"start": round(rss_start / 2**20, 1),
                        "peak": round(max(peaks.rss, default=0) / 2**20, 1),
                        "first_third_peak": round(max(peaks.rss[:third], default=0) / 2**20, 1),
                        "last_third_peak": round(max(peaks.rss[-third:], default=0) / 2**20, 1)}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("many_trials", argv)
    started = time.monotonic()
    trials = 2_000 if args.quick else 10_000
    events = _events("many", trials)
    with tempfile.TemporaryDirectory(prefix="tunebus-bench-") as tmp:
        runs = [run(Path(tmp) / str(n), events, trials, flags)
                for n, flags in enumerate([(), ("--max-open-files", "256")])]
    return emit("many_trials", args, started, {
        "sinks": list(SINKS), "trials": trials, "open_at_once": OPEN_AT_ONCE,
        "results": trials * RESULTS_PER_TRIAL, "runs": runs})


if __name__ == "__main__":
    main()
