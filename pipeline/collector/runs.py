"""The runs a collector serves: each driver's host, pid and experiments, its start and end said once."""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.wire.events import Event, Kind

__all__ = ["NOTED_KINDS", "Run", "RunBook"]

log = logging.getLogger(__name__)

SETUP, TRIAL_START, EXPERIMENT_END = Kind.SETUP.value, Kind.TRIAL_START.value, Kind.EXPERIMENT_END.value
NOTED_KINDS = frozenset({SETUP, TRIAL_START, EXPERIMENT_END})
"""The kinds ``RunBook.note`` reads; the receive loop hands it only these."""
SHOWN_AFTER_END_S = 3_600.0
"""How long an ended run stays in status and metrics, so their label sets stay bounded."""

@dataclass(slots=True)
class Run:
    """One producer's run as the collector knows it."""

    producer: str
    host: str = ""
    pid: int = 0
    experiments: set[str] = field(default_factory=set)
    ended_at: float | None = None
    """``time.monotonic()`` when its last experiment ended; None while it runs."""


class RunBook:
    """Notes setup, trial start and experiment end events; says where a driver's files go wrong."""

    def __init__(self, out: Path | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out.resolve() if out is not None else None
        self.clock = clock
        self.runs: dict[str, Run] = {}
        self.notices: list[tuple[str, str]] = []
        """(producer, text) to send to that producer as a ``warn`` control message."""
        self._misplaced: set[str] = set()

    def note(self, event: Event) -> None:
        """Take one event of ``NOTED_KINDS``."""
        run = self.runs.get(event.producer)
        if run is None:
            run = self.runs[event.producer] = Run(event.producer)
        if event.kind == SETUP:
            run.host, run.pid = str(event.payload.get("host", "")), _int(event.payload.get("pid"))
            log.info("driver %s started a run (host %s, pid %s)", event.producer, run.host or "?",
                     run.pid or "?")
        elif event.kind == TRIAL_START:
            run.experiments.add(event.experiment)
            run.ended_at = None
            self._check_path(event)
        elif event.kind == EXPERIMENT_END:
            run.experiments.add(event.experiment)
            run.ended_at = self.clock()
            statuses = collections.Counter(event.payload.get("trials", {}).values())
            summary = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
            log.info("driver %s ended experiment %s: %s", event.producer, event.experiment,
                     summary or "no trials")

    def shown(self) -> dict[str, Run]:
        """Runs still going or ended less than ``SHOWN_AFTER_END_S`` ago."""
        now = self.clock()
        return {p: r for p, r in self.runs.items()
                if r.ended_at is None or now - r.ended_at < SHOWN_AFTER_END_S}

    def _check_path(self, event: Event) -> None:
        """Say once per producer when Tune reads this trial from somewhere the collector does not write."""
        tune_path = event.payload.get("path")
        if self.out is None or not isinstance(tune_path, str) or event.producer in self._misplaced:
            return
        ours = self.out / event.experiment / event.trial_dir
        if "://" not in tune_path and os.path.realpath(tune_path) == str(ours):
            return
        self._misplaced.add(event.producer)
        storage = str(Path(tune_path).parent.parent) if "://" not in tune_path else tune_path
        text = (f"Tune stores this run's trials under {storage} but the collector writes into {self.out}: "
                f"Tune's readers (ExperimentAnalysis, ResultGrid) will not find these files; set "
                f"RunConfig(storage_path={str(self.out)!r}) or start the collector with --out {storage}")
        log.warning("driver %s: %s", event.producer, text)
        self.notices.append((event.producer, text))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
