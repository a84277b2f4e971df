"""Benchmarks: tunebus against Ray Tune's own loggers, measured side by side in one run."""

from __future__ import annotations

__all__: list[str] = []
