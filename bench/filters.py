"""The TensorBoard sink's results/s with and without the README's filter chain, and the chain's own cost."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import BenchArgs, emit, parse_args
from bench.sinks import BATCH_EVENTS, TRIALS, sink_events
from bench.trials import real_trials

__all__ = ["CHAINS", "main", "measure"]

CHAINS: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "example": [{"keep": ["loss", "acc"]}, {"smooth": "loss", "coeff": 0.9}],
    "smooth_only": [{"smooth": "loss", "coeff": 0.9}],
}
"""``example`` is the README's ``[sinks.tensorboard]`` chain, verbatim; ``smooth_only`` keeps every key."""
REPEATS = 3


def measure(chain: list[dict[str, Any]], root: Path, per_trial: int) -> tuple[float, float, float]:
    """Results/s through filters and the TensorBoard sink (by the wall clock, and by this process's
    CPU time, which other processes on a shared machine do not inflate), and CPU microseconds per
    result in the filters alone.

    Batches as the sink's worker takes them: the chain, its state for the ledger, then the sink.
    """
    from pipeline.collector.filter_spec import parse_filters
    from pipeline.collector.filters import apply_filters, filter_states
    from sinks import make_sink
    from sinks.base import TrialFiles, close_all, deliver

    events = sink_events(real_trials(root, "filters", TRIALS), per_trial)
    filters = parse_filters(chain)
    sink = make_sink("tensorboard", root)
    files = TrialFiles(root)
    in_filters = 0.0
    began, began_cpu = time.perf_counter(), time.process_time()
    for at in range(0, len(events), BATCH_EVENTS):
        started = time.process_time()
        batch = apply_filters(filters, events[at:at + BATCH_EVENTS])
        filter_states(filters)
        in_filters += time.process_time() - started
        deliver(sink, batch, files)
    close_all(sink, files)
    results = TRIALS * per_trial
    return (results / (time.perf_counter() - began), results / (time.process_time() - began_cpu),
            in_filters / results * 1e6)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("filters", argv)
    started = time.monotonic()
    per_trial = 50 if args.quick else 2_000
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CHAINS}
    with tempfile.TemporaryDirectory(prefix="tunebus-bench-filters-") as tmp:
        for repeat in range(REPEATS):  # interleaved, so drift on a shared machine hits every chain alike
            for name, chain in CHAINS.items():
                runs[name].append(measure(chain, Path(tmp) / f"{name}-{repeat}", per_trial))
    rows = {name: {"per_s": round(statistics.median(r for r, _, _ in x)),
                   "cpu_per_s": round(statistics.median(r for _, r, _ in x)),
                   "filter_cpu_us_per_result": round(statistics.median(us for _, _, us in x), 2)}
            for name, x in runs.items()}
    for row in rows.values():
        row["vs_none"] = round(row["per_s"] / rows["none"]["per_s"], 2)
        row["cpu_vs_none"] = round(row["cpu_per_s"] / rows["none"]["cpu_per_s"], 2)
    return emit("filters", args, started, {
        "unit": "results/s through filters + the tensorboard sink (wall clock; cpu: by this process's "
                "CPU time), median of interleaved repeats",
        "trials": TRIALS, "results": TRIALS * per_trial, "repeats": REPEATS, "batch_events": BATCH_EVENTS,
        "chains": {name: CHAINS[name] for name in CHAINS}, "tensorboard": rows})


if __name__ == "__main__":
    main()
