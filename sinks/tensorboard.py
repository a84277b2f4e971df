"""TensorBoard sink: the event files Tune's TBXLoggerCallback writes, one Event per result, batched."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tensorboardX import summary as tbx
from tensorboardX.proto.event_pb2 import Event as TbEvent
from tensorboardX.proto.event_pb2 import SessionLog
from tensorboardX.proto.summary_pb2 import Summary

from pipeline.wire.events import Event
from sinks.base import Sink, TrialRef
from sinks.open_files import OpenFiles
from sinks.tb_events import EventFile, last_result_step
from sinks.tune_format import REMOVED_HPARAMS, flatten, split_hparams, tune_tag

__all__ = ["TensorBoardSink"]

log = logging.getLogger(__name__)

SKIP = frozenset({"config", "pid", "timestamp", "time_total_s", "training_iteration"})
SCALAR_TYPES = (int, float, np.float32, np.float64, np.int32, np.int64)
VIDEO_FPS = 20


def _default_bins() -> list[float]:
    """tensorboardX ``SummaryWriter.default_bins``: what ``add_histogram`` uses."""
    buckets, v = [], 1e-12
    while v < 1e20:
        buckets.append(v)
        v *= 1.1
    return [-b for b in reversed(buckets)] + [0] + buckets


DEFAULT_BINS = _default_bins()


class _TrialLog:
    """A trial's open event file, its evaluated params, its last valid result (for hparams)
    and the step of its last result (from the files a previous trial start or collector left)."""

    def __init__(self, directory: Path, params: Any, started: bool, files: OpenFiles) -> None:
        self.last_step = last_result_step(directory)
        self.started = started
        self.file = EventFile(directory, files)
        self.params = params
        self.last_valid: dict[str, Any] = {}


class TensorBoardSink(Sink):
    """Scalars, images, videos and histograms per result; hparams plugin data at trial end."""

    name = "tensorboard"
    writes_logs = True
    appends = ("events.out.tfevents.*",)

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files = OpenFiles()
        self._trials: dict[tuple[str, str], _TrialLog] = {}
        self._tags: dict[str, str] = {}
        self._warned: set[str] = set()
        self._said_removed: set[tuple[str, str]] = set()
        self._closed_bytes = 0
        self.bytes_written: int = 0

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        trial.dir.mkdir(parents=True, exist_ok=True)
        params = start.payload.get("evaluated_params") if start is not None else None
        self._trials[trial.key] = _TrialLog(trial.dir, params, start is not None, self.files)

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        """One Event per result. A result whose step goes back (a restored trial reports
        again: below the last step, or at it right after a trial start) is preceded by
        TensorBoard's purge, a ``SessionLog.START`` at its step, so TensorBoard drops the
        old lineage's points from there on and charts one line."""
        log_ = self._trials[trial.key]
        for result in results:
            event = self._event(result, log_)
            if event is None:
                continue
            last = log_.last_step
            if last is not None and event.step >= 1 and (
                    event.step < last or (event.step == last and log_.started)):
                log_.file.add(TbEvent(wall_time=event.wall_time, step=event.step,
                                      session_log=SessionLog(status=SessionLog.START)))
            log_.last_step, log_.started = event.step, False
            log_.file.add(event)

    def write_logs(self, trial: TrialRef, logs: list[Event]) -> None:
        """``pipeline.log`` calls at their own step, tags as the user gave them (``/rank<k>``
        added when the run has more than one rank); never under ``ray/tune/``."""
        file = self._trials[trial.key].file
        for event in logs:
            tb_event = self._log_event(event.payload, event.ts)
            if tb_event is not None:
                file.add(tb_event)

    def _log_event(self, payload: dict[str, Any], wall_time: float) -> TbEvent | None:
        values_in = payload.get("values")
        step = payload.get("step")
        if not isinstance(values_in, dict) or type(step) is not int:
            self._warn("log", "a log event without a step or values was left out")
            return None
        world_size = payload.get("world_size")
        suffix = f"/rank{payload.get('rank')}" if isinstance(world_size, int) and world_size > 1 else ""
        values: list[Summary.Value] = []
        for key, value in flatten(values_in).items():
            attr = f"{key}{suffix}"
            if isinstance(value, SCALAR_TYPES):
                number = self._number(attr, value)
                if number is not None:
                    values.append(Summary.Value(tag=self._tag(attr), simple_value=number))
            elif (isinstance(value, list) and value) or (isinstance(value, np.ndarray) and value.size):
                values.extend(self._array(attr, value))
        if not values:
            return None
        return TbEvent(wall_time=wall_time, step=step, summary=Summary(value=values))

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        log_ = self._trials.pop(trial.key)
        try:
            if end is not None and log_.last_valid:
                self._hparams(trial, log_, end.payload.get("evaluated_params") or log_.params)
        finally:
            log_.file.close()
            self._closed_bytes += log_.file.bytes_written
            self._count()

    def flush(self) -> None:
        for log_ in self._trials.values():
            log_.file.flush()
        self._count()

    def close(self) -> None:
        for log_ in self._trials.values():
            log_.file.close()
            self._closed_bytes += log_.file.bytes_written
        self._trials.clear()
        self._count()

    def _count(self) -> None:
        """``bytes_written``: files only grow when they flush or close."""
        open_bytes = sum(log_.file.bytes_written for log_ in self._trials.values())
        self.bytes_written = self._closed_bytes + open_bytes

    def _event(self, result: dict[str, Any], log_: _TrialLog) -> TbEvent | None:
        """One Event with every value Tune would write for ``result``; None when there is none."""
        try:
            step = int(result.get("timesteps_total") or result.get("training_iteration") or 0)
        except (TypeError, ValueError, OverflowError):
            self._warn("step", "a result with a step that is not a number was left out: %r",
                       result.get("timesteps_total") or result.get("training_iteration"))
            return None
        values: list[Summary.Value] = []
        valid: dict[str, Any] = {}
        for key, value in flatten(result, skip=SKIP).items():
            attr = tune_tag(key)
            if isinstance(value, SCALAR_TYPES):
                number = self._number(attr, value)
                if number is not None:
                    valid[attr] = value
                    values.append(Summary.Value(tag=self._tag(attr), simple_value=number))
            elif (isinstance(value, list) and value) or (isinstance(value, np.ndarray) and value.size):
                valid[attr] = value
                values.extend(self._array(attr, value))
        log_.last_valid = valid
        if not values:
            return None
        return TbEvent(wall_time=time.time(), step=step, summary=Summary(value=values))

    def _number(self, attr: str, value: Any) -> float | None:
        """``float(value)`` unless it is NaN (Tune leaves those out) or past a float's range."""
        if value != value:
            return None
        try:
            return float(value)
        except OverflowError:
            self._warn("overflow", "%s=%r does not fit a float; left out", attr, value)
            return None

    def _tag(self, attr: str) -> str:
        """The tag tensorboardX's ``scalar`` would write for ``attr`` (cleaned once, then cached)."""
        tag = self._tags.get(attr)
        if tag is None:
            tag = self._tags[attr] = tbx.scalar(attr, 0.0).value[0].tag
        return tag

    def _array(self, attr: str, value: Any) -> list[Summary.Value]:
        """An image (3-d), images (4-d), a video (5-d) or a histogram, by tensorboardX's helpers."""
        try:
            ndim = value.ndim if isinstance(value, np.ndarray) else 0
            if ndim == 3:
                summary = tbx.image(attr, value, dataformats="CHW")
            elif ndim == 4:
                summary = tbx.image(attr, value, dataformats="NCHW")
            elif ndim == 5:
                summary = tbx.video(attr, value, fps=VIDEO_FPS)
            else:
                summary = tbx.histogram(attr, value, DEFAULT_BINS)
        except Exception as exc:  # noqa: BLE001 - tensorboardX rejects odd values; Tune warns and goes on
            self._warn("array", "cannot write %s to TensorBoard (%s); left out", attr, exc)
            return []
        return list(summary.value)

    def _hparams(self, trial: TrialRef, log_: _TrialLog, params: Any) -> None:
        """The hparams plugin's experiment, session start and session end summaries, as Tune writes them;
        the values left out are said once per trial, at INFO, as Tune says them."""
        if not params or not isinstance(params, dict):
            return
        metrics = {k: v for k, v in log_.last_valid.items() if isinstance(v, SCALAR_TYPES)}
        kept, removed = split_hparams(params)
        if removed and trial.key not in self._said_removed:
            self._said_removed.add(trial.key)
            log.info(REMOVED_HPARAMS, self.name, removed)
        try:
            summaries = tbx.hparams(hparam_dict=kept, metric_dict=metrics)
        except Exception as exc:  # noqa: BLE001 - as Tune: an unsupported hparam type is logged, not fatal
            self._warn("hparams", "tensorboardX could not write hparams (%s)", exc)
            return
        for summary in summaries:
            log_.file.add(TbEvent(wall_time=time.time(), summary=summary))

    def _warn(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(message, *args)
