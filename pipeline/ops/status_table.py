"""``tunebus status`` output: a collector's answer as plain-text tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_status"]


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


def _driver(producer: Mapping[str, Any]) -> str:
    host, pid = producer.get("host"), producer.get("pid")
    return f"{host or '?'}:{pid}" if pid else (host or "-")


def render_status(status: Mapping[str, Any]) -> str:
    """Producers, sinks and totals of one ``StatusServer`` answer, as aligned text."""
    rates = status.get("rates", {})
    lines = [f"collector on {status.get('bus', '?')}, up {_duration(status['uptime_s'])}: "
             f"{status['events']} events in {status['frames']} frames, "
             f"{rates.get('events', 0.0):.0f} events/s"]
    producers = status.get("producers", {})
    lines += ["", "producers"]
    lines += _table(["producer", "experiments", "driver", "run", "events", "last seq", "acked", "lag",
                     "dropped"],
                    [[p, ",".join(v.get("experiments", ())) or "-", _driver(v),
                      "ended" if v.get("ended") else "running", v["events"], v["last_seq"], v["acked"],
                      v["lag"], v["dropped"]]
                     for p, v in sorted(producers.items())]) if producers else ["  (none yet)"]
    lines += ["", "sinks"]
    lines += _table(["sink", "queued", "batches", "written", "events/s", "bytes", "errors", "lag"],
                    [[n, s["queued"], s["batches"], s["events"],
                      f"{rates.get('sinks', {}).get(n, 0.0):.0f}", _bytes(s.get("bytes")),
                      s["errors"], s["lag"]] for n, s in status["sinks"].items()])
    for name, sink in status["sinks"].items():
        if sink.get("filters"):
            lines.append(f"  {name} filters: {' | '.join(sink['filters'])}")
        if sink.get("last_error"):
            lines.append(f"  {name} last error: {sink['last_error']}")
    faults = ", ".join(f"{k} {v}" for k, v in sorted(status.get("faults", {}).items()))
    lines += ["", f"quarantined frames {status['quarantined']}" + (f" ({faults})" if faults else ""),
              f"dropped events {status.get('dropped', 0)} (given up by producers)",
              f"duplicates {status['duplicates']}, gaps {status['gaps']}",
              f"refused clients {status.get('refused', 0)} (CurveZMQ handshakes; the collector log says why)"]
    return "\n".join(lines)
