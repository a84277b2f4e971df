"""Runs producer processes against a collector and measures delivered load and the CPU split."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.collector import CollectorProcess, cpu_seconds
from bench.harness import percentiles
from bench.producers import LoadSpec, produce

__all__ = ["LoadRun", "RssSampler", "run_load"]

READY_TIMEOUT_S = 120.0
RSS_INTERVAL_S = 0.05

During = Callable[[float, float], dict[str, Any]]
"""Runs in the parent during the load, given the window's (start, end) Unix times."""


class RssSampler(threading.Thread):
    """Samples the RSS of some processes every 50 ms and keeps each one's peak."""

    def __init__(self, procs: dict[str, psutil.Process]) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.procs = procs
        self.peak: dict[str, int] = {name: 0 for name in procs}
        self.first: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for name, proc in self.procs.items():
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                self.first.setdefault(name, rss)
                self.peak[name] = max(self.peak[name], rss)
            self._stop_event.wait(RSS_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass(slots=True)
class LoadRun:
    """The window's figures, over all producers."""

    window_s: float
    delivered_per_s: float
    offered_per_s: float
    collector_cpu_s: float
    producers_cpu_s: float
    reports: list[dict[str, Any]]
    peak_rss: dict[str, int] = field(default_factory=dict)
    first_rss: dict[str, int] = field(default_factory=dict)
    during: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = [x for r in self.reports for x in r["latencies_s"]]
        w = self.window_s
        return {
            "producers": len(self.reports),
            "window_s": round(w, 2),
            "offered_per_s": round(self.offered_per_s),
            "delivered_per_s": round(self.delivered_per_s),
            "cpu": {"collector_s": round(self.collector_cpu_s, 2),
                    "producers_s": round(self.producers_cpu_s, 2),
                    "collector_cores": round(self.collector_cpu_s / w, 2),
                    "producers_cores": round(self.producers_cpu_s / w, 2)},
            "ack_latency_ms": percentiles(lat, 1000.0, 1),
            "submitted": sum(r["submitted"] for r in self.reports),
            "lost": sum(r["lost"] for r in self.reports),
            "dropped": sum(r["dropped"] for r in self.reports),
            "spooled_max": sum(r["spooled_max"] for r in self.reports),
            "drain_s": round(max(r["drain_s"] for r in self.reports), 2),
        }


def _context() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["bench.producers"])
    return ctx


def run_load(collector: CollectorProcess, specs: Sequence[LoadSpec], during: During | None = None,
             sample_rss: bool = False) -> LoadRun:
    """Start one process per spec, release them together, measure the common window."""
    ctx = _context()
    reports_q = ctx.Queue()
    go = ctx.Event()
    start_wall = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=produce, args=(s, start_wall, go, reports_q), daemon=True) for s in specs]
    for p in procs:
        p.start()
    try:
        _await(reports_q, "ready", len(procs), READY_TIMEOUT_S)
        sampler = None
        if sample_rss:
            watched = {"collector": collector.proc}
            watched.update({f"producer{i}": psutil.Process(p.pid) for i, p in enumerate(procs)})
            sampler = RssSampler(watched)
            sampler.start()
        spec = specs[0]
        start_wall.value = time.time() + 0.2
        go.set()
        warm_wall = start_wall.value + spec.warm_s
        end_wall = warm_wall + spec.window_s
        cpu = _CpuWindow(collector, warm_wall, end_wall)
        cpu.start()
        extra = during(warm_wall, end_wall) if during else {}
        budget = spec.warm_s + spec.window_s + spec.drain_s + READY_TIMEOUT_S + (spec.total / 5_000)
        done = _await(reports_q, "done", len(procs), budget)
        cpu.join()
        if sampler is not None:
            sampler.stop()
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    window = spec.window_s
    return LoadRun(
        window_s=window,
        delivered_per_s=sum(r["acked_in_window"] for r in done) / window,
        offered_per_s=sum(r["submitted_in_window"] for r in done) / window,
        collector_cpu_s=cpu.used_s,
        producers_cpu_s=sum(r["cpu_in_window_s"] for r in done),
        reports=sorted(done, key=lambda r: r["index"]),
        peak_rss=dict(sampler.peak) if sampler else {},
        first_rss=dict(sampler.first) if sampler else {},
        during=extra,
    )


class _CpuWindow(threading.Thread):
    """The collector's CPU seconds between two Unix times."""

    def __init__(self, collector: CollectorProcess, start_wall: float, end_wall: float) -> None:
        super().__init__(daemon=True, name="cpu-window")
        self.collector, self.start_wall, self.end_wall = collector, start_wall, end_wall
        self.used_s = 0.0

    def run(self) -> None:
        time.sleep(max(0.0, self.start_wall - time.time()))
        before = cpu_seconds(self.collector.proc)
        time.sleep(max(0.0, self.end_wall - time.time()))
        self.used_s = cpu_seconds(self.collector.proc) - before


def _await(q: Any, kind: str, count: int, timeout_s: float) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{len(got)} of {count} producers reported {kind!r} in {timeout_s:.0f}s")
        tag, payload = q.get(timeout=remaining)
        if tag == "error":
            raise RuntimeError(payload)
        if tag == kind:
            got.append(payload)
    return got
