"""The collector's CPU per JSON + CSV result, stage by stage, in one process with no sockets."""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import BenchArgs, emit, parse_args
from bench.workload import EXPERIMENT, make_result

__all__ = ["STAGES", "main", "measure"]

STAGES = ("decode", "sequence", "json", "csv", "ledger_json", "ledger_csv")
"""``decode``: frames to events (``decode_frame``); ``sequence``: ``Sequencer.accept``; ``json``,
``csv``: ``deliver`` into each sink (grouping, lineage, formatting, the write); ``ledger_*``: that
sink's ``fresh``, ``before`` and ``after`` around the batch, as its worker calls them."""
FRAME_EVENTS = 200
BATCH_EVENTS = 5_000
GC_GEN0_THRESHOLD = 100_000
"""As ``tunebus collect`` sets it (``pipeline.entry.commands``)."""


def _frames(batch: int, trials: int) -> list[bytes]:
    """One batch's frames: ``trials`` producers, one trial each, ``FRAME_EVENTS`` results a frame."""
    from pipeline.wire.codec import encode_event, frame_events

    per_trial = BATCH_EVENTS // trials
    frames = []
    for t in range(trials):
        first = batch * per_trial
        encoded = []
        for seq in range(first, first + per_trial):
            result = make_result(seq)
            result["training_iteration"] = seq + 1
            encoded.append(encode_event("result", f"p{t}", seq, time.time(), EXPERIMENT, f"t{t}",
                                        f"trial_{t}", result))
        frames += [frame_events(f"p{t}", first, encoded[i:i + FRAME_EVENTS])
                   for i in range(0, len(encoded), FRAME_EVENTS)]
    return frames


def measure(root: Path, batches: int, trials: int) -> dict[str, Any]:
    """CPU microseconds per result in each stage (this thread's CPU time: other processes on a
    shared machine do not inflate it), over ``batches`` batches of ``BATCH_EVENTS`` results."""
    from pipeline.collector.ledger import Ledger
    from pipeline.collector.sequencer import Sequencer
    from pipeline.wire.codec import decode_frame
    from sinks.base import TrialFiles, close_all, deliver
    from sinks.csv import CsvSink
    from sinks.json import JsonSink

    frames = [_frames(b, trials) for b in range(batches)]
    sequencer = Sequencer()
    sinks = []
    for sink in (JsonSink(root), CsvSink(root)):
        ledger = Ledger(root / f".ledger-{sink.name}", root, sink.appends, sink.rewrites_head)
        sink.settle = ledger.settle
        sinks.append((sink, TrialFiles(root), ledger))
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.thread_time
    count = 0
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)
    try:
        for batch_frames in frames:
            started = clock()
            decoded = [decode_frame(f) for f in batch_frames]
            decoded_at = clock()
            batch = []
            for frame in decoded:
                batch += sequencer.accept(frame.producer, frame.base, frame.events).events
            spent["decode"] += decoded_at - started
            spent["sequence"] += clock() - decoded_at
            for sink, trial_files, ledger in sinks:
                started = clock()
                fresh = ledger.fresh(batch)
                ledger.before(batch)
                before_at = clock()
                deliver(sink, fresh, trial_files)
                written_at = clock()
                ledger.after(batch, None)
                spent[sink.name] += written_at - before_at
                spent["ledger_" + sink.name] += before_at - started + clock() - written_at
            count += len(batch)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        for sink, trial_files, _ in sinks:
            close_all(sink, trial_files)
    us = {stage: round(1e6 * s / count, 2) for stage, s in spent.items()}
    total = sum(spent.values())
    return {"trials": trials, "results": count, "us_per_result": us,
            "total_us_per_result": round(1e6 * total / count, 2), "results_per_core_s": round(count / total)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args: BenchArgs = parse_args("stages", argv)
    started = time.monotonic()
    batches = 2 if args.quick else 20
    runs = []
    for trials in (1, 8):
        with tempfile.TemporaryDirectory(prefix="tunebus-stages-") as tmp:
            runs.append(measure(Path(tmp), batches, trials))
    return emit("stages", args, started, {"batch_events": BATCH_EVENTS, "runs": runs})


if __name__ == "__main__":
    main()
