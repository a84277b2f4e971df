"""PNG plots of benchmark results (matplotlib, Agg backend) under bench/results/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import RESULTS_DIR

__all__ = ["driver_cost_plot", "saturation_plot", "throughput_plot"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return plt


def _save(fig: Any, name: str) -> Path:
    path = RESULTS_DIR / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def driver_cost_plot(rows: dict[str, dict[str, float]]) -> Path:
    """Median and p99 microseconds per on_trial_result, log scale."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(rows)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [rows[n]["median"] for n in names], 0.4, label="median")
    ax.bar([x + 0.2 for x in xs], [rows[n]["p99"] for n in names], 0.4, label="p99")
    ax.set_xticks(list(xs), names)
    ax.set_yscale("log")
    ax.set_ylabel("us per on_trial_result")
    ax.set_title("Driver cost per result")
    ax.legend()
    path = _save(fig, "driver_cost")
    plt.close(fig)
    return path


def throughput_plot(runs: list[dict[str, Any]]) -> Path:
    """Delivered results/s per sink set, one line per producer count."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    sets = list(dict.fromkeys(r["sinks"] for r in runs))
    for n in sorted({r["producers"] for r in runs}):
        by = {r["sinks"]: r["delivered_per_s"] for r in runs if r["producers"] == n}
        ax.plot(sets, [by.get(s, 0) for s in sets], marker="o", label=f"{n} producers")
    ax.set_ylabel("results/s delivered")
    ax.set_title("Collector throughput per sink set")
    ax.legend()
    path = _save(fig, "throughput")
    plt.close(fig)
    return path


def saturation_plot(steps: list[dict[str, Any]]) -> Path:
    """Offered against delivered results/s, and p99 acknowledgement latency on a second axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    offered = [s["offered_per_s"] for s in steps]
    ax.plot(offered, [s["delivered_per_s"] for s in steps], marker="o", label="delivered")
    ax.plot(offered, offered, linestyle=":", color="grey", label="offered")
    ax.set_xlabel("offered results/s")
    ax.set_ylabel("delivered results/s")
    lat = ax.twinx()
    p99 = [s["ack_latency_ms"]["p99"] for s in steps]
    lat.plot(offered, p99, marker="s", color="tab:red", label="p99 ms")
    lat.set_yscale("log")
    lat.set_ylabel("p99 latency to written (ms)")
    ax.set_title("Saturation: offered vs delivered")
    ax.legend(loc="upper left")
    lat.legend(loc="lower right")
    path = _save(fig, "saturation")
    plt.close(fig)
    return path
