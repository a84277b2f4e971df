"""Loop time of 2 Ray Train workers logging 20 scalars a step: bare, ``pipeline.log``, tensorboardX."""

# Each round runs every mode once, in an order rotated from round to round, and each
# mode's ratio is taken against the bare loop of the same round, so a machine whose
# load changes between rounds moves both sides of a ratio. ``bus`` sends to a collector
# at normal priority on the same cores (the loop then pays the collector's CPU too);
# ``bus_nice`` to one started with ``nice -n 19`` (it takes what the loop leaves and
# catches up after it). The worker's CPU time over the loop (all its threads, the
# sender's included) and the main thread's alone are reported beside the wall time.

from __future__ import annotations

import argparse
import json
import os
import statistics
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
"""The loop's own work per step: this many 64x64 matmuls and tanh, single-threaded (~0.35 ms here)."""
TARGET_RATIO = 1.05
MODES = ("bare", "bus", "bus_nice", "tbx")
QUICK_MODES = ("bare", "bus")
BUS_MODES = {"bus": 0, "bus_nice": 19}
"""The collector each bus mode sends to, by its nice value."""
SINKS = ("json", "tensorboard")
SENDER_FIELDS = ("sender_cpu_s", "sender_polls", "sender_frames", "sender_resent")
"""Each bus run's sender thread, averaged over the workers."""
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class WorkerLogArgs(BenchArgs):
    """The benchmark's sizes."""

    rounds: int
    steps: int


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

        writer = SummaryWriter(os.path.join(config["out"], "tbx", f"{config['round']}-rank{rank}"))
    bus = mode in BUS_MODES
    log = pipeline.log
    began, cpu_began, main_began = time.perf_counter(), time.process_time(), time.thread_time()
    for step in range(steps):
        for _ in range(MATMULS):
            a = np.tanh(a @ a.T / 64)
        value = float(a[0, 0])
        if bus:
            log({key: value + i for i, key in enumerate(keys)}, step=step)
        elif writer is not None:
            for i, key in enumerate(keys):
                writer.add_scalar(key, value + i, step)
    loop_s = time.perf_counter() - began
    loop_cpu_s = time.process_time() - cpu_began  # every thread of the worker: the sender's too
    loop_main_cpu_s = time.thread_time() - main_began  # the training loop's thread alone
    sender = _sender_report() if bus else {}
    if writer is not None:
        writer.close()
    elif bus:
        pipeline.flush_logs(300)
    end_s = time.perf_counter() - began - loop_s
    Path(config["out"], f"{mode}-{config['round']}-rank{rank}.json").write_text(json.dumps(
        {"loop_s": loop_s, "loop_cpu_s": loop_cpu_s, "loop_main_cpu_s": loop_main_cpu_s, "end_s": end_s,
         **sender}))
    ray.train.report({"loop_s": loop_s})


def _sender_report() -> dict[str, Any]:
    """The worker's sender thread at the loop's end: CPU seconds (from /proc), wake-ups, frames, resends."""
    from pipeline.producer import worker_log

    worker = worker_log._worker
    if worker is None or not worker.senders:
        return {}
    [sender] = worker.senders
    stats = sender.stats()
    tid = sender._thread.native_id
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return {"sender_cpu_s": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"),
            "sender_polls": stats.polls, "sender_frames": stats.frames_sent, "sender_resent": stats.resent}


def _run(mode: str, round_: int, steps: int, out: Path, address: str) -> dict[str, Any]:
    import ray.train
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from pipeline import TrainBusCallback

    callbacks = [TrainBusCallback(address)] if mode in BUS_MODES else []
    storage = out / mode if mode in BUS_MODES else out  # where that mode's collector writes
    DataParallelTrainer(
        train_fn, train_loop_config={"mode": mode, "steps": steps, "out": str(out), "round": round_},
        scaling_config=ray.train.ScalingConfig(num_workers=WORKERS),
        run_config=ray.train.RunConfig(name=f"{mode}-{round_}", storage_path=str(storage),
                                       callbacks=callbacks, worker_runtime_env={"env_vars": SINGLE_THREAD}),  # type: ignore[call-arg]  # Train V2 takes it; the stubs are V1's
    ).fit()
    times = [json.loads((out / f"{mode}-{round_}-rank{r}.json").read_text()) for r in range(WORKERS)]
    return {"mode": mode, "round": round_, "loop_s": round(max(t["loop_s"] for t in times), 3),
            "loop_cpu_s": round(sum(t["loop_cpu_s"] for t in times) / WORKERS, 3),
            "loop_main_cpu_s": round(sum(t["loop_main_cpu_s"] for t in times) / WORKERS, 3),
            "end_s": round(max(t["end_s"] for t in times), 3),
            **{k: sum(t[k] for t in times) / WORKERS for k in SENDER_FIELDS if k in times[0]}}


def _points_in_tensorboard(run_dir: Path) -> dict[str, int]:
    """Scalar points per tag TensorBoard's reader finds in a bus run's trial directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def _ratios(runs: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """Each mode against the bare loop: the median of the same-round ratios, and best against best."""
    by = {(r["mode"], r["round"]): r[field] for r in runs}
    rounds = sorted({r["round"] for r in runs})
    out: dict[str, Any] = {}
    for mode in _ran(runs)[1:]:
        paired = [by[mode, k] / by["bare", k] for k in rounds]
        best = min(by[mode, k] for k in rounds) / min(by["bare", k] for k in rounds)
        out[mode] = {"median_paired": round(statistics.median(paired), 3),
                     "paired": [round(x, 3) for x in paired], "best_vs_best": round(best, 3)}
    return out


def _ran(runs: list[dict[str, Any]]) -> tuple[str, ...]:
    """The modes these runs hold, in ``MODES`` order (``bare`` first)."""
    return tuple(m for m in MODES if any(r["mode"] == m for r in runs))


def _median(runs: list[dict[str, Any]], mode: str, field: str) -> float:
    return float(statistics.median(r[field] for r in runs if r["mode"] == mode))


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every mode (default 3)")
    parser.add_argument("--steps", type=int, default=10_000, help="steps per worker per run")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args("worker_log", argv, _extra, WorkerLogArgs())
    started = time.monotonic()
    steps, rounds = (300, 1) if args.quick else (args.steps, args.rounds)
    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]
    import ray

    ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    runs: list[dict[str, Any]] = []
    collector_cpu: dict[str, float] = dict.fromkeys(BUS_MODES, 0.0)
    try:
        with tempfile.TemporaryDirectory(prefix="tunebus-bench-") as tmp:
            out = Path(tmp)
            with CollectorProcess(out / "bus", SINKS) as normal, \
                    CollectorProcess(out / "bus_nice", SINKS, nice=BUS_MODES["bus_nice"]) as niced:
                collectors = {"bus": normal, "bus_nice": niced}
                if not args.quick:  # quick: under the 300 s a quick benchmark may take
                    _run("bare", -1, 300, out, normal.address)  # warm-up, unmeasured
                modes = QUICK_MODES if args.quick else MODES  # quick proves the script runs
                for r in range(rounds):
                    for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
                        collector = collectors.get(mode)
                        cpu_before = collector.cpu_s() if collector else 0.0
                        runs.append(_run(mode, r, steps, out, collector.address if collector else ""))
                        if collector:
                            collector_cpu[mode] += collector.cpu_s() - cpu_before
                normal.stop()
                niced.stop()
            points = {(mode, r): _points_in_tensorboard(out / mode / f"{mode}-{r}" / "train")
                      for mode in BUS_MODES if mode in modes for r in range(rounds)}
    finally:
        ray.shutdown()
    expected = {f"m{k:02d}/rank{rank}" for k in range(SCALARS) for rank in range(WORKERS)}
    complete = all(all(p.get(tag) == steps for tag in expected) for p in points.values())
    wall, cpu = _ratios(runs, "loop_s"), _ratios(runs, "loop_cpu_s")
    events = steps * WORKERS * rounds
    ran = _ran(runs)
    bus_ran = [m for m in BUS_MODES if m in ran]
    return emit("worker_log", args, started, {
        "workers": WORKERS, "steps": steps, "rounds": rounds, "scalars_per_step": SCALARS,
        "matmuls_per_step": MATMULS, "runs": runs,
        "median_loop_s": {m: _median(runs, m, "loop_s") for m in ran},
        "wall_vs_bare": wall, "cpu_vs_bare": cpu, "main_thread_cpu_vs_bare": _ratios(runs, "loop_main_cpu_s"),
        "worker_cpu_us_per_call_over_bare": {
            m: round(1e6 * (_median(runs, m, "loop_cpu_s") - _median(runs, "bare", "loop_cpu_s")) / steps, 1)
            for m in ran[1:]},
        "collector_cpu_us_per_event": {m: round(1e6 * collector_cpu[m] / events, 1) for m in bus_ran},
        "sender_thread_per_event": {m: {
            "cpu_us": round(1e6 * _median(runs, m, "sender_cpu_s") / steps, 2),
            "wakeups": round(_median(runs, m, "sender_polls") / steps, 4),
            "events_per_frame": round(steps / _median(runs, m, "sender_frames"), 1),
            "resent": _median(runs, m, "sender_resent")}
            for m in bus_ran if all("sender_cpu_s" in r for r in runs if r["mode"] == m)},
        "every_point_in_tensorboard": complete,
        "target": {"max_ratio": TARGET_RATIO, "met": {
            m: wall[m]["median_paired"] <= TARGET_RATIO and complete for m in bus_ran}},
    })


if __name__ == "__main__":
    main()
