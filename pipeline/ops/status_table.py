"""``tunebus status`` output: a collector's answer as plain-text tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.collector.snapshot import CollectorSnapshot, ProducerSnapshot

if TYPE_CHECKING:
    from pipeline.ops.shard_status import ShardAnswer

__all__ = ["render_shards", "render_status"]


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers, two spaces between columns."""
    cells = [list(header), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
            for r in cells]


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"  # unreachable


def _driver(producer: ProducerSnapshot) -> str:
    host, pid = producer.host, producer.pid
    return f"{host or '?'}:{pid}" if pid else (host or "-")


def render_status(status: CollectorSnapshot) -> str:
    """Producers, sinks and totals of one ``StatusServer`` answer, as aligned text."""
    rates = status.rates
    lines = [f"collector on {status.bus or '?'}, up {_duration(status.uptime_s)}: "
             f"{status.events} events in {status.frames} frames, {rates.events:.0f} events/s"]
    producers = status.producers
    lines += ["", "producers"]
    lines += _table(["producer", "experiments", "driver", "run", "events", "last seq", "acked", "lag",
                     "dropped"],
                    [[p, ",".join(v.experiments) or "-", _driver(v), "ended" if v.ended else "running",
                      v.events, v.last_seq, v.acked, v.lag, v.dropped]
                     for p, v in sorted(producers.items())]) if producers else ["  (none yet)"]
    lines += ["", "sinks"]
    lines += _table(["sink", "queued", "batches", "written", "events/s", "bytes", "errors", "lag"],
                    [[n, s.queued, s.batches, s.events, f"{rates.sinks.get(n, 0.0):.0f}", _bytes(s.bytes),
                      s.errors, s.lag] for n, s in status.sinks.items()])
    for name, sink in status.sinks.items():
        if sink.filters:
            lines.append(f"  {name} filters: {' | '.join(sink.filters)}")
        if sink.last_error:
            lines.append(f"  {name} last error: {sink.last_error}")
    faults = ", ".join(f"{k} {v}" for k, v in sorted(status.faults.items()))
    lines += ["", f"quarantined frames {status.quarantined}" + (f" ({faults})" if faults else ""),
              f"dropped events {status.dropped} (given up by producers)",
              f"duplicates {status.duplicates}, gaps {status.gaps}",
              f"refused clients {status.refused} (CurveZMQ handshakes; the collector log says why)"]
    if status.misrouted:
        lines.append(f"misrouted producers {status.misrouted} (each waits at a trial another shard owns; "
                     f"the collector log says which)")
    return "\n".join(lines)


def render_shards(answers: Sequence[ShardAnswer]) -> str:
    """One collector's tables; for shards, each shard's under its own heading (or that it did not answer)."""
    if len(answers) == 1 and answers[0].status is not None:
        return render_status(answers[0].status)
    blocks = []
    for answer in answers:
        heading = f"== shard {answer.index} of {len(answers)}, status {answer.address}"
        if answer.status is None:
            blocks.append(f"{heading}: NO ANSWER ({answer.error})")
        else:
            blocks.append(f"{heading}\n{render_status(answer.status)}")
    answered = [a.status for a in answers if a.status is not None]
    events = sum(status.events for status in answered)
    rate = sum(status.rates.events for status in answered)
    return "\n\n".join([f"{len(answers)} shards, {len(answered)} answering: {events} events, "
                         f"{rate:.0f} events/s in all", *blocks])
