"""A deliberately slow, non-durable sink: JSON lines under ``<out>/.slow``, 50 ms per trial per batch."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pipeline.wire.events import Event
from sinks.base import Sink, TrialRef
from sinks.json import JsonSink

__all__ = ["SLOW_DELAY_ENV", "SlowSink"]

SLOW_DELAY_ENV = "TUNEBUS_BENCH_SLOW_DELAY_S"
DEFAULT_DELAY_S = 0.05


class SlowSink(Sink):
    """Wraps a JsonSink writing under ``<out>/.slow`` and sleeps ``delay_s`` in every write.

    The collector calls ``write_results`` once per trial per batch, so with
    eight trials a batch costs at least 0.4 s: far slower than the bus.
    Not durable: acknowledgements never wait for it.
    """

    name = "slow"
    durable = False

    def __init__(self, out: Path, delay_s: float | None = None) -> None:
        self.delay_s = float(os.environ.get(SLOW_DELAY_ENV, DEFAULT_DELAY_S)) if delay_s is None else delay_s
        if not self.delay_s >= 0:
            raise ValueError(f"delay_s must be >= 0, got {self.delay_s!r}")
        self._inner = JsonSink(out / ".slow")

    def _moved(self, trial: TrialRef) -> TrialRef:
        return TrialRef(trial.experiment, trial.trial_id, trial.trial_dir,
                        self._inner.out / trial.experiment / trial.trial_dir)

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        self._inner.open_trial(self._moved(trial), start)

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        time.sleep(self.delay_s)
        self._inner.write_results(self._moved(trial), results)

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        self._inner.close_trial(self._moved(trial), end)

    def flush(self) -> None:
        self._inner.flush()

    def close(self) -> None:
        self._inner.close()
