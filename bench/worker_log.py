"""Loop time of 2 Ray Train workers logging 20 scalars a step: bare, ``pipeline.log``, tensorboardX."""

# Wall time is what the target is about; the worker's CPU time over the loop (all its
# threads, the sender's included) is reported beside it, as it moves less when the
# machine is shared.

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.collector import CollectorProcess
from bench.harness import BenchArgs, child_env, emit, parse_args

__all__ = ["main", "train_fn"]

WORKERS = 2
SCALARS = 20
MATMULS = 4
"""The loop's own work per step: this many 64x64 matmuls and tanh, single-threaded (~1 ms here)."""
TARGET_RATIO = 1.05
MODES = ("bare", "bus", "tbx")
SINKS = ("json", "tensorboard")
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train_fn(config: dict[str, Any]) -> None:
    """The training loop: the work, then nothing, ``pipeline.log`` or ``SummaryWriter.add_scalar``."""
    import numpy as np
    import ray.train

    import pipeline

    rank = ray.train.get_context().get_world_rank()
    mode, steps = config["mode"], config["steps"]
    keys = [f"m{k:02d}" for k in range(SCALARS)]
    a = np.random.default_rng(rank).random((64, 64))
    writer = None
    if mode == "tbx":
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(os.path.join(config["out"], "tbx", f"rank{rank}"))
    log = pipeline.log
    began, cpu_began = time.perf_counter(), time.process_time()
    for step in range(steps):
        for _ in range(MATMULS):
            a = np.tanh(a @ a.T / 64)
        value = float(a[0, 0])
        if mode == "bus":
            log({key: value + i for i, key in enumerate(keys)}, step=step)
        elif writer is not None:
            for i, key in enumerate(keys):
                writer.add_scalar(key, value + i, step)
    loop_s = time.perf_counter() - began
    loop_cpu_s = time.process_time() - cpu_began  # every thread of the worker: the sender's too
    if writer is not None:
        writer.close()
    elif mode == "bus":
        pipeline.flush_logs(120)
    end_s = time.perf_counter() - began - loop_s
    Path(config["out"], f"{mode}-{config['round']}-rank{rank}.json").write_text(
        json.dumps({"loop_s": loop_s, "loop_cpu_s": loop_cpu_s, "end_s": end_s}))
    ray.train.report({"loop_s": loop_s})


def _run(mode: str, round_: int, steps: int, out: Path, address: str) -> dict[str, Any]:
    import ray.train
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from pipeline import TrainBusCallback

    callbacks = [TrainBusCallback(address)] if mode == "bus" else []
    DataParallelTrainer(
        train_fn, train_loop_config={"mode": mode, "steps": steps, "out": str(out), "round": round_},
        scaling_config=ray.train.ScalingConfig(num_workers=WORKERS),
        run_config=ray.train.RunConfig(name=f"{mode}-{round_}", storage_path=str(out), callbacks=callbacks,
                                       worker_runtime_env={"env_vars": SINGLE_THREAD}),  # type: ignore[call-arg]  # Train V2 takes it; the stubs are V1's
    ).fit()
    times = [json.loads((out / f"{mode}-{round_}-rank{r}.json").read_text()) for r in range(WORKERS)]
    return {"mode": mode, "round": round_, "loop_s": round(max(t["loop_s"] for t in times), 3),
            "loop_cpu_s": round(sum(t["loop_cpu_s"] for t in times) / WORKERS, 3),
            "end_s": round(max(t["end_s"] for t in times), 3)}


def _points_in_tensorboard(run_dir: Path) -> dict[str, int]:
    """Scalar points per tag TensorBoard's reader finds in the bus run's trial directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("worker_log", argv)
    started = time.monotonic()
    steps, rounds = (300, 1) if args.quick else (10_000, 2)
    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]
    import ray

    ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="tunebus-bench-") as tmp:
            out = Path(tmp)
            with CollectorProcess(out, SINKS) as collector:
                if not args.quick:  # quick: under the 300 s a quick benchmark may take
                    _run("bare", -1, 300, out, collector.address)  # warm-up, unmeasured
                runs = [_run(mode, r, steps, out, collector.address) for r in range(rounds) for mode in MODES]
                collector.stop()
            points = [_points_in_tensorboard(out / f"bus-{r}" / "train") for r in range(rounds)]
    finally:
        ray.shutdown()
    best = {mode: min(r["loop_s"] for r in runs if r["mode"] == mode) for mode in MODES}
    best_cpu = {mode: min(r["loop_cpu_s"] for r in runs if r["mode"] == mode) for mode in MODES}
    expected = {f"m{k:02d}/rank{rank}" for k in range(SCALARS) for rank in range(WORKERS)}
    complete = all(all(p.get(tag) == steps for tag in expected) for p in points)
    bus_ratio = round(best["bus"] / best["bare"], 3)
    return emit("worker_log", args, started, {
        "workers": WORKERS, "steps": steps, "scalars_per_step": SCALARS, "matmuls_per_step": MATMULS,
        "runs": runs, "best_loop_s": best,
        "per_step_us": {m: round(best[m] / steps * 1e6, 1) for m in MODES},
        "vs_bare": {"bus": bus_ratio, "tbx": round(best["tbx"] / best["bare"], 3)},
        "best_loop_cpu_s": best_cpu,
        "cpu_vs_bare": {m: round(best_cpu[m] / best_cpu["bare"], 3) for m in ("bus", "tbx")},
        "every_point_in_tensorboard": complete,
        "target": {"max_ratio": TARGET_RATIO, "met": bus_ratio <= TARGET_RATIO and complete},
    })


if __name__ == "__main__":
    main()
