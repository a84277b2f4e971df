"""JSON sink: ``result.json``, ``params.json`` and ``params.pkl`` as Tune's JsonLoggerCallback writes them."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from pipeline.wire.events import Event
from sinks.base import TrialRef
from sinks.tune_format import json_line, params_json

__all__ = ["JsonSink"]

RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
PARAMS_PICKLE_FILE = "params.pkl"


class JsonSink:
    """One ``result.json`` line per reported result; params written when a trial starts."""

    name = "json"
    durable = True
    appends = ("result.json",)

    def __init__(self, out: Path) -> None:
        self.out = out
        self._files: dict[tuple[str, str], IO[bytes]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self.bytes_written = 0

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        trial.dir.mkdir(parents=True, exist_ok=True)
        if start is not None:
            config = start.payload.get("config")
            if isinstance(config, dict):
                self.bytes_written += (trial.dir / PARAMS_FILE).write_bytes(params_json(config))
            pickled = start.payload.get("params_pkl")
            if isinstance(pickled, bytes):  # produced by the driver; never unpickled here
                self.bytes_written += (trial.dir / PARAMS_PICKLE_FILE).write_bytes(pickled)
        self._files[trial.key] = (trial.dir / RESULT_FILE).open("ab")

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        self.bytes_written += self._files[trial.key].write(b"".join([json_line(r) + b"\n" for r in results]))
        self._dirty.add(trial.key)

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        self._dirty.discard(trial.key)
        self._files.pop(trial.key).close()

    def flush(self) -> None:
        for key in self._dirty:
            self._files[key].flush()
        self._dirty.clear()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._dirty.clear()
