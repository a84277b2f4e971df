"""A non-durable sink for tests of a sink in its own process: JSON lines under ``<out>/.gated``, written
only once the file ``<out>/.gate`` exists (a gate another process can open)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.wire.events import Event
from sinks.base import Sink, TrialRef
from sinks.json import JsonSink

__all__ = ["GATE", "FileGatedSink"]

GATE = ".gate"
POLL_S = 0.01


class FileGatedSink(Sink):
    """Each write waits for ``<out>/.gate``, then goes to a JsonSink under ``<out>/.gated``."""

    name = "gated"
    durable = False

    def __init__(self, out: Path) -> None:
        self.gate = out / GATE
        self._inner = JsonSink(out / ".gated")

    def _moved(self, trial: TrialRef) -> TrialRef:
        return TrialRef(trial.experiment, trial.trial_id, trial.trial_dir,
                        self._inner.out / trial.experiment / trial.trial_dir)

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        self._inner.open_trial(self._moved(trial), start)

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        while not self.gate.exists():  # another process opens it: nothing to wait on but the file
            time.sleep(POLL_S)
        self._inner.write_results(self._moved(trial), results)

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        self._inner.close_trial(self._moved(trial), end)

    def flush(self) -> None:
        self._inner.flush()

    def close(self) -> None:
        self._inner.close()
