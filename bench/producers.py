"""Producer processes: each owns a Sender per shard and submits encoded results, paced or flat out."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from bench.workload import EXPERIMENT, make_result
from pipeline.producer.sender import FullPolicy, Sender, SenderConfig
from pipeline.wire.codec import encode_event
from pipeline.wire.events import Kind
from pipeline.wire.shards import shard_of

__all__ = ["LoadSpec", "ProducerReport", "produce"]

BURST = 200
RESULT_VARIANTS = 100
MAX_LATENCY_SAMPLES = 20_000
PACING_SLEEP_S = 0.0005
INFLIGHT_WAIT_S = 0.002
RESULT = Kind.RESULT.value


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What one producer does: its rate, its measuring window, its bounds."""

    address: str
    index: int
    rate_per_s: float = 0.0
    """Events per second; 0 submits as fast as the process can."""
    warm_s: float = 0.5
    window_s: float = 2.0
    max_inflight: int = 0
    """Unacknowledged events allowed before submitting pauses; 0 for no limit."""
    total: int = 0
    """If set, submit exactly this many events and ignore the window's end."""
    drain_s: float = 0.0
    spool_dir: str = ""
    sender: dict[str, Any] = field(default_factory=dict)
    track_latency: bool = True
    trials: int = 1
    """Trials this producer's results are spread over, round robin (a driver runs many)."""
    shards: tuple[str, ...] = ()
    """Every shard's bus address, when the collector is several: each trial goes to its
    ``shard_of`` shard, one Sender (and stream, ``<id>.s<k>``) per shard. Empty: ``address``."""


@dataclass(slots=True)
class ProducerReport:
    """What one producer did, in its window and overall."""

    index: int
    submitted: int = 0
    submitted_in_window: int = 0
    acked_in_window: int = 0
    cpu_in_window_s: float = 0.0
    acked_final: int = 0
    lost: int = 0
    dropped: int = 0
    spooled_max: int = 0
    drain_s: float = 0.0
    build_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)


class _Producer:
    """The submit loop of one producer process: one Sender per shard, results spread over trials."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        config = SenderConfig(spool_dir=spec.spool_dir or None, when_full=FullPolicy.BLOCK, **spec.sender)
        run = f"{time.time_ns() & 0xFFFFFF:x}"
        self.id = f"bench-{spec.index}-{run}"
        shards = spec.shards or (spec.address,)
        self.streams = [self.id] if len(shards) == 1 else [f"{self.id}.s{k}" for k in range(len(shards))]
        self.senders = [Sender(address, stream, config) for address, stream in zip(shards, self.streams)]
        # Trials of its own per producer and run: a later run's producer 0 on the same collector
        # would otherwise go back to iteration 1 in the same files, and measure moving rows aside.
        names = [_trial_name(spec.index, run, j, len(shards)) for j in range(spec.trials)]
        self.heads = [(EXPERIMENT, name, f"trial_{name[1:]}") for name in names]
        self.routes = [shard_of(name, len(shards)) for name in names]
        self.next_seq = [0] * len(shards)
        self.iterations = [0] * spec.trials
        self.results = [make_result(i) for i in range(RESULT_VARIANTS)]
        self.sent_at: list[list[float]] = [[] for _ in shards]
        self.acked_seq = [-1] * len(shards)
        self.acked = -1
        """Events acknowledged over every shard, minus one (as a single stream's last acked seq)."""
        self.report = ProducerReport(spec.index)

    def submit(self, count: int) -> None:
        first = self.report.submitted
        for n in range(first, first + count):
            trial = n % self.spec.trials
            shard = self.routes[trial]
            sender, seq = self.senders[shard], self.next_seq[shard]
            if not sender.accepting():
                sender.wait_for_room(1.0)
            result = self.results[n % RESULT_VARIANTS]
            # Each result goes on from the last, as Tune's do: a training_iteration going back is
            # a restored trial, whose rows the sinks move aside (not what a throughput run measures).
            self.iterations[trial] = step = self.iterations[trial] + 1
            result["training_iteration"], result["timesteps_total"] = step, step * 32
            data = encode_event(RESULT, self.streams[shard], seq, time.time(), *self.heads[trial], result)
            if self.spec.track_latency:
                self.sent_at[shard].append(time.monotonic())
            sender.submit(seq, data)
            self.next_seq[shard] = seq + 1
        self.report.submitted += count

    def poll_acks(self, warm_at: float, end_at: float) -> None:
        now = time.monotonic()
        spooled = 0
        for shard, sender in enumerate(self.senders):
            stats = sender.stats()
            acked, before = stats.acked_seq, self.acked_seq[shard]
            spooled += stats.spooled
            if acked > before and self.spec.track_latency:
                sent_at, lat = self.sent_at[shard], self.report.latencies_s
                for seq in range(before + 1, acked + 1):
                    if warm_at <= sent_at[seq] <= end_at:
                        lat.append(now - sent_at[seq])
            self.acked_seq[shard] = max(acked, before)
        self.report.spooled_max = max(self.report.spooled_max, spooled)
        self.acked = sum(a + 1 for a in self.acked_seq) - 1

    def run(self, start_wall: float) -> ProducerReport:
        spec = self.spec
        start = time.monotonic() + (start_wall - time.time())
        while time.monotonic() < start:
            time.sleep(0.001)
        warm_at, end_at = start + spec.warm_s, start + spec.warm_s + spec.window_s
        warm_mark: tuple[int, int, float] | None = None
        while True:
            now = time.monotonic()
            if warm_mark is None and now >= warm_at:
                warm_mark = (self.report.submitted, self.acked, time.process_time())
            if spec.total and self.report.submitted >= spec.total or not spec.total and now >= end_at:
                break
            self.poll_acks(warm_at, end_at)
            due = BURST
            if spec.rate_per_s:
                due = min(BURST, int((now - start) * spec.rate_per_s) - self.report.submitted)
            if spec.total:
                due = min(due, spec.total - self.report.submitted)
            if spec.max_inflight and self.report.submitted - self.acked - 1 >= spec.max_inflight:
                time.sleep(INFLIGHT_WAIT_S)  # acks come per sink batch: no point polling faster
                continue
            if due <= 0:
                time.sleep(PACING_SLEEP_S)
                continue
            self.submit(due)
        self.poll_acks(warm_at, end_at)
        self.report.build_s = time.monotonic() - start
        if warm_mark is not None:
            self.report.submitted_in_window = self.report.submitted - warm_mark[0]
            self.report.acked_in_window = self.acked - warm_mark[1]
            self.report.cpu_in_window_s = time.process_time() - warm_mark[2]
        self.finish(warm_at, end_at)
        return self.report

    def finish(self, warm_at: float, end_at: float) -> None:
        started = time.monotonic()
        if self.spec.drain_s > 0:
            deadline = started + self.spec.drain_s
            for sender in self.senders:
                sender.flush(max(0.0, deadline - time.monotonic()))
        self.report.drain_s = time.monotonic() - started
        self.poll_acks(warm_at, end_at)
        self.report.acked_final = self.acked + 1
        self.report.dropped = sum(sender.dropped for sender in self.senders)
        self.report.lost = self.report.submitted - self.report.acked_final
        for sender in self.senders:
            sender.close()
        lat = self.report.latencies_s
        if len(lat) > MAX_LATENCY_SAMPLES:
            step = len(lat) / MAX_LATENCY_SAMPLES
            self.report.latencies_s = [lat[int(i * step)] for i in range(MAX_LATENCY_SAMPLES)]


def _trial_name(index: int, run: str, j: int, shards: int) -> str:
    """Trial ``j`` of producer ``index``'s ``run``, named so that trial j goes to shard j mod
    ``shards``: a few trials spread evenly, as many random trial ids do on average."""
    for salt in range(10_000):
        name = f"t{index:04d}-{run}-{j}" + (f"-{salt}" if salt else "")
        if shard_of(name, shards) == j % shards:
            return name
    raise AssertionError("unreachable: CRC-32 reaches every residue")


def produce(spec: LoadSpec, start_wall: Any, go: MpEvent, reports: Queue[Any]) -> None:
    """Child process body: report ready, wait for ``go``, run, report the ProducerReport as a dict."""
    try:
        producer = _Producer(spec)
        reports.put(("ready", spec.index))
        go.wait()
        report = producer.run(start_wall.value)
        reports.put(("done", dataclasses.asdict(report)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the bench
        reports.put(("error", f"producer {spec.index}: {type(exc).__name__}: {exc}"))
        raise
