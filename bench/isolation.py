"""One slow sink beside JSON and CSV: their throughput, the driver's cost, and memory under a huge backlog."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.collector import CollectorProcess
from bench.harness import BenchArgs, emit, parse_args, percentiles
from bench.load import run_load
from bench.producers import LoadSpec
from bench.trials import real_trials
from bench.workload import make_result, tune_result

__all__ = ["backlog", "event_bytes", "main", "slowed"]

PRODUCERS = 8
INFLIGHT = 5_000
QUEUE_EVENTS = 20_000
DRIVER_RATE_PER_S = 1_000
SENDER_BOUNDS = {"max_buffer_events": 20_000, "max_buffer_bytes": 16 * 2**20, "max_handoff_events": 10_000}


def _driver_during(address: str, root: Path, tag: str) -> Any:
    """A BusCallback in this process offering 1k results/s during the window, each call timed."""
    from pipeline.producer.callback import BusCallback
    from pipeline.producer.sender import SenderConfig

    trials = real_trials(root / f"driver-{tag}", f"iso_{tag}", 4)
    spool = SenderConfig(spool_dir=str(root / "spool"))

    def during(start_wall: float, end_wall: float) -> dict[str, Any]:
        cb = BusCallback(address, sender=spool)
        cb.setup(stop=None, num_samples=4, total_num_samples=4)
        for trial in trials:
            cb.on_trial_start(iteration=0, trials=trials, trial=trial)
        time.sleep(max(0.0, start_wall - time.time()))
        samples: list[float] = []
        i, start = 0, time.perf_counter()
        while time.time() < end_wall:
            due = int((time.perf_counter() - start) * DRIVER_RATE_PER_S) + 1
            while i < due:
                t = trials[i % 4]
                result = tune_result(i // 4, t.trial_id, t.config, t.experiment_tag)
                began = time.perf_counter()
                cb.on_trial_result(iteration=i, trials=trials, trial=t, result=result)
                samples.append(time.perf_counter() - began)
                i += 1
            time.sleep(0.001)
        cb.flush(10.0)
        cb.close()
        return {"driver_us": percentiles(samples, 1e6), "driver_dropped": cb.dropped}

    return during


def slowed(root: Path, sinks: tuple[str, ...], warm_s: float, window_s: float,
           *more: str) -> dict[str, Any]:
    """JSON and CSV throughput (acknowledged: both durable) and driver cost, with ``sinks`` running."""
    tag = "-".join((*sinks, *more)).replace("--", "")
    flags = ("--max-queue-events", str(QUEUE_EVENTS), *more)
    with CollectorProcess(root / tag, sinks, *flags) as collector:
        specs = [LoadSpec(collector.address, i, warm_s=warm_s, window_s=window_s, max_inflight=INFLIGHT,
                          drain_s=10.0, spool_dir=str(root / "spool")) for i in range(PRODUCERS)]
        run = run_load(collector, specs, during=_driver_during(collector.address, root, tag))
        collector.kill()
    summary = run.summary()
    return {"sinks": ",".join(sinks), "json_csv_delivered_per_s": summary["delivered_per_s"],
            "offered_per_s": summary["offered_per_s"], "cpu": summary["cpu"], **run.during}


def event_bytes(sample: int = 2_000) -> int:
    """Python heap bytes of one decoded result event as the collector holds it in a sink queue."""
    from pipeline.wire.codec import decode_frame, encode_event, frame_events

    encoded = [encode_event("result", "p", i, time.time(), "e", "t", "d", make_result(i))
               for i in range(sample)]
    frame = frame_events("p", 0, encoded)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    events = decode_frame(frame).events
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used // max(1, len(events))


def backlog(root: Path, total: int, queue_events: int) -> dict[str, Any]:
    """One producer submits ``total`` events flat out into a slower collector, then waits for the drain."""
    flags = ("--max-queue-events", str(queue_events))
    with CollectorProcess(root / "backlog", ("json", "csv"), *flags) as collector:
        spec = LoadSpec(collector.address, 0, warm_s=0.0, window_s=0.5, total=total, drain_s=600.0,
                        spool_dir=str(root / "spool"), sender=SENDER_BOUNDS, track_latency=False)
        run = run_load(collector, [spec], sample_rss=True)
        collector.kill()
    report = run.reports[0]
    per_event = event_bytes()
    encoded = len(_one_encoded())
    sender_bound = SENDER_BOUNDS["max_buffer_bytes"] + SENDER_BOUNDS["max_handoff_events"] * (encoded + 40)
    # Sink queues share event objects; each sink also holds one batch (5,000) being written,
    # and the bus may hold the sender's whole in-memory buffer in transit.
    collector_bound = (queue_events + 2 * 5_000 + SENDER_BOUNDS["max_buffer_events"]) * per_event
    growth = {name: run.peak_rss[name] - run.first_rss.get(name, 0) for name in run.peak_rss}
    return {
        "events": total, "submitted": report["submitted"], "delivered": report["acked_final"],
        "lost": report["lost"], "build_s": round(report["build_s"], 1),
        "drain_s": round(report["drain_s"], 1),
        "sender_config": SENDER_BOUNDS, "collector_max_queue_events": queue_events,
        "encoded_event_bytes": encoded, "decoded_event_bytes": per_event,
        "sender": {"first_rss_mib": _mib(run.first_rss.get("producer0", 0)),
                   "peak_rss_mib": _mib(run.peak_rss.get("producer0", 0)),
                   "growth_mib": _mib(growth.get("producer0", 0)), "bound_mib": _mib(sender_bound),
                   "within_bound": growth.get("producer0", 0) <= sender_bound},
        "collector": {"first_rss_mib": _mib(run.first_rss.get("collector", 0)),
                      "peak_rss_mib": _mib(run.peak_rss.get("collector", 0)),
                      "growth_mib": _mib(growth.get("collector", 0)), "bound_mib": _mib(collector_bound),
                      "within_bound": growth.get("collector", 0) <= collector_bound},
    }


def _one_encoded() -> bytes:
    from pipeline.wire.codec import encode_event

    return encode_event("result", "bench-0-abcdef", 123456, time.time(), "bench", "t0000", "trial_0000",
                        make_result(5))


def _mib(n: int) -> float:
    return round(n / 2**20, 1)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the three slow-sink modes this many times, alternating; the median ratio")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("isolation", argv, _options)
    started = time.monotonic()
    warm_s, window_s = (0.7, 0.8) if args.quick else (3.0, 6.0)
    total, queue_events = (30_000, 5_000) if args.quick else (1_000_000, 50_000)
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tunebus-bench-") as tmp:
        for round_ in range(max(1, int(args.rounds))):  # alternating: the machine's load drifts
            root = Path(tmp) / str(round_)
            rounds.append({
                "baseline": slowed(root, ("json", "csv"), warm_s, window_s),
                "with_slow_sink": slowed(root, ("json", "csv", "slow"), warm_s, window_s,
                                         "--slow-process", "on"),
                "with_slow_sink_in_collector": slowed(root, ("json", "csv", "slow"), warm_s, window_s,
                                                      "--slow-process", "off")})
        memory = backlog(Path(tmp), total, queue_events)

    def kept(r: dict[str, Any], mode: str) -> float:
        base = float(r["baseline"]["json_csv_delivered_per_s"])
        return round(float(r[mode]["json_csv_delivered_per_s"]) / max(1, base), 2)

    ratios = [kept(r, "with_slow_sink") for r in rounds]
    in_collector = [kept(r, "with_slow_sink_in_collector") for r in rounds]
    ratio = statistics.median(ratios)
    driver = [r["with_slow_sink"]["driver_us"]["median"] / max(1e-9, r["baseline"]["driver_us"]["median"])
              for r in rounds]
    return emit("isolation", args, started, {
        "slow_sink": "JSON lines under .slow, not durable, 50 ms per trial per batch "
                     "(8 trials: >= 0.4 s a batch); in its own niced process (--slow-process on), "
                     "and in the collector's (the design before) for comparison",
        "collector_max_queue_events": QUEUE_EVENTS, "producers": PRODUCERS,
        **rounds[-1], "rounds": rounds,
        "throughput_kept": ratio, "throughput_kept_per_round": ratios,
        "throughput_kept_in_collector": statistics.median(in_collector),
        "throughput_kept_in_collector_per_round": in_collector,
        "target": {"min_kept": 0.95, "met": ratio >= 0.95},
        "driver_median_ratio": round(statistics.median(driver), 2),
        "backlog": memory,
    })


if __name__ == "__main__":
    main()
