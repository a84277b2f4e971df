"""Milliseconds from on_trial_result in the driver to the line's bytes in result.json, at 1k and 10k/s."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.collector import CollectorProcess
from bench.harness import BenchArgs, emit, parse_args, percentiles
from bench.tail import SENT_KEY, start_tail
from bench.trials import real_trials, trial_dir_name
from bench.workload import tune_result

__all__ = ["drive", "main"]

TRIALS = 4
RATES_PER_S = (1_000, 10_000)
TARGET_P99_MS_AT_10K = 100.0
SINKS = ("json", "csv")


def drive(address: str, root: Path, out: Path, rate: int, duration_s: float) -> dict[str, Any]:
    """Offer ``rate`` results/s through a BusCallback for ``duration_s``; time each line's arrival."""
    from pipeline.producer.callback import BusCallback

    trials = real_trials(root / f"drive{rate}", f"lat_{rate}", TRIALS)
    cb = BusCallback(address)
    cb.setup(stop=None, num_samples=TRIALS, total_num_samples=TRIALS)
    for trial in trials:
        cb.on_trial_start(iteration=0, trials=trials, trial=trial)
    count = int(rate * duration_s)
    results = [tune_result(i // TRIALS, trials[i % TRIALS].trial_id, trials[i % TRIALS].config,
                           trials[i % TRIALS].experiment_tag) for i in range(count)]
    paths = [out / t.experiment_dir_name / trial_dir_name(t) / "result.json" for t in trials]
    tail = start_tail(paths, count, duration_s + 30)
    start = time.perf_counter()
    i = 0
    while i < count:
        due = min(count, int((time.perf_counter() - start) * rate) + 1)
        while i < due:
            result = results[i]
            result[SENT_KEY] = time.time_ns()
            cb.on_trial_result(iteration=i, trials=trials, trial=trials[i % TRIALS], result=result)
            i += 1
        time.sleep(0.0005)
    offered = count / (time.perf_counter() - start)
    latencies = tail.latencies_ms()
    cb.on_experiment_end(trials=trials)
    return {"rate_per_s": rate, "offered_per_s": round(offered), "results": count,
            "seen": len(latencies), "latency_ms": percentiles(latencies, 1.0, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("latency", argv)
    started = time.monotonic()
    duration_s = 1.0 if args.quick else 10.0
    with tempfile.TemporaryDirectory(prefix="tunebus-bench-") as tmp:
        root = Path(tmp)
        with CollectorProcess(root / "out", SINKS) as collector:
            rows = [drive(collector.address, root, root / "out", rate, duration_s) for rate in RATES_PER_S]
            collector.stop()
    at_10k = rows[-1]["latency_ms"]["p99"]
    return emit("latency", args, started, {
        "collector_sinks": list(SINKS), "duration_s": duration_s, "rates": rows,
        "target": {"p99_ms_at_10k": TARGET_P99_MS_AT_10K, "measured_p99_ms": at_10k,
                   "met": at_10k <= TARGET_P99_MS_AT_10K and rows[-1]["seen"] == rows[-1]["results"]},
    })


if __name__ == "__main__":
    main()
