"""``pipeline.log``: metrics from inside a trainable or a Train worker, on the worker's own stream."""

# Each worker process gets one ``WorkerLog`` at its first call: its own producer id,
# ``Sender`` thread, memory window and spool, so a call costs an encode and a deque
# append and never waits on I/O. It is flushed (bounded) at the end of a Train
# worker, when Tune stops or reuses a trial's actor, and at process exit; a forked
# child or an unpickled copy starts its own.

from __future__ import annotations

import atexit
import dataclasses
import functools
import logging
import os
import threading
import time
import uuid
from typing import Any

from pipeline.producer.bus_target import BusTarget, lookup_target
from pipeline.producer.sender import Sender
from pipeline.producer.shard_lookup import SHARD_LOOKUP_TIMEOUT_S, lookup_shards
from pipeline.producer.stream import ProducerStream
from pipeline.producer.worker_context import WorkerHead, context_token, resolve_head, trainable_actor
from pipeline.wire.codec import EventEncoder
from pipeline.wire.events import Kind

__all__ = ["EXIT_FLUSH_S", "WORKER_SEND_INTERVAL_S", "WorkerLog", "configure", "flush", "log"]

_log = logging.getLogger(__name__)

EXIT_FLUSH_S = 10.0
"""How long process exit waits for the collector to confirm a worker's events; the rest is spooled."""
TRIAL_END_FLUSH_S = 10.0
"""How long the end of a Tune trial (its actor stopped or reused) waits for the same."""
UNHEARD_TRIAL_END_S = 0.5
"""...and how long while no collector has answered this worker yet: long enough for a first frame's
acknowledgement, short enough that a sweep without a collector is not held up (the calls then wait
in memory and the spool)."""
LOOKUP_INTERVAL_S = 5.0
"""How often a worker that found no collector to send to looks again (calls in between are dropped)."""
WORKER_SEND_INTERVAL_S = 0.1
"""The least time between a worker's frames: its sender thread then takes the training loop's GIL
about 10 times a second (plus one per ack) rather than 200; each turn costs it 100-200 us of CPU
however few events it carries. The driver's ``send_interval_s`` still applies if longer."""
LOG = Kind.LOG.value


class WorkerLog:
    """One process's producer of ``log`` events; ``log`` is called from the training loop only."""

    def __init__(self, target: BusTarget) -> None:
        self.target = target
        self.stream = f"w{uuid.uuid4().hex[:15]}.{os.getpid()}"
        self._dropped = 0
        self._pid = os.getpid()
        self._out: ProducerStream | None = None
        self._token: Any = None
        self._head: WorkerHead | None = None
        self._steps: dict[tuple[str, str, int], int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"target": self.target}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["target"])  # type: ignore[misc] # a copy is a new producer

    @property
    def dropped(self) -> int:
        """Calls given up: outside a trial, or the sender behind or failed (each said once)."""
        return self._dropped + (self._out.dropped if self._out is not None else 0)

    @property
    def senders(self) -> tuple[Sender, ...]:
        """The senders started so far, one per collector shard written to (none before the first call)."""
        return self._out.senders if self._out is not None else ()

    def log(self, metrics: dict[str, Any], step: int | None = None,
            head: WorkerHead | None = None) -> None:
        """Encode one call and hand it to the sender; ``head`` defaults to the caller's trial.

        Without ``step``, the step after the highest this trial and rank used so far.
        """
        if head is None:
            head = self._current_head()
            if head is None:
                self._drop("pipeline.log was called outside a Tune trial or Train worker")
                return
        key = head.step_key
        last = self._steps.get(key, -1)
        if step is None:
            step = last + 1
        if step > last:
            self._steps[key] = step
        payload = {"step": step, "rank": head.rank, "world_size": head.world_size, "values": metrics}
        (self._out or self._start()).emit(LOG, head.names, payload)

    def flush(self, timeout_s: float, unheard_timeout_s: float | None = None) -> bool:
        """Wait until the collector confirms every call so far; False on timeout.

        ``unheard_timeout_s`` bounds the wait for a shard whose collector never answered.
        """
        return self._out is None or self._out.flush(timeout_s, unheard_timeout_s=unheard_timeout_s)

    def close(self, timeout_s: float = 0.0) -> bool:
        """Flush for up to ``timeout_s`` and stop; undelivered events go to the spool file."""
        return self._out is None or self._out.close(timeout_s)

    def _start(self) -> ProducerStream:
        """The stream, on the driver's shard map; a ``TUNEBUS_ADDRESS`` target asks the collector."""
        target = self.target
        shards = target.shards or lookup_shards(target.address, target.curve, SHARD_LOOKUP_TIMEOUT_S)
        config = target.sender
        if config.send_interval_s < WORKER_SEND_INTERVAL_S:
            config = dataclasses.replace(config, send_interval_s=WORKER_SEND_INTERVAL_S)
        self._out = ProducerStream(self.stream, shards, config, target.curve, encode=EventEncoder().encode,
                                   dropping="pipeline.log calls are dropped")
        return self._out

    def _current_head(self) -> WorkerHead | None:
        token = context_token()
        if token is not self._token:
            self._token, self._head = token, resolve_head(token)
        return self._head

    def _drop(self, why: str) -> None:
        self._dropped += 1
        if self._dropped == 1:
            _log.warning("tunebus: %s; pipeline.log calls are dropped", why)


_lock = threading.Lock()
_worker: WorkerLog | None = None
_configured: BusTarget | None = None
_looked_at = float("-inf")
_exit_hooked = False
_said_no_target = False
dropped_without_target = 0
"""Calls dropped because this process found no collector address (``WorkerLog.dropped`` counts the rest)."""


def configure(target: BusTarget | None) -> None:
    """Set this process's target (the Train callback does it on each worker); None forgets it."""
    global _configured, _looked_at
    with _lock:
        _configured, _looked_at = target, float("-inf")
        _replace(None)


def log(metrics: dict[str, Any], step: int | None = None) -> None:
    """Log ``metrics`` at ``step`` (when None, one past this trial and rank's highest so far) to the
    collector the run's ``BusCallback`` or ``TrainBusCallback`` sends to.

    Values are what a result may hold: numbers, nested dicts (flattened with ``/``), numpy
    arrays (3-d and 4-d become images in TensorBoard, others histograms). Never waits on the
    collector, with one exception: the first call in a process whose target ``TUNEBUS_ADDRESS``
    names (no driver's map) asks that address for the shard map and may wait up to
    ``shard_lookup_timeout_s`` (2 s) for the answer. Outside a trial, or with no collector
    configured, the call is dropped and counted.
    """
    global dropped_without_target
    worker = _worker
    if worker is None or worker._pid != os.getpid():
        worker = _current()
        if worker is None:
            dropped_without_target += 1
            return
    worker.log(metrics, step)


def flush(timeout_s: float = EXIT_FLUSH_S) -> bool:
    """Wait until the collector confirms every ``pipeline.log`` call of this process so far."""
    worker = _worker
    return worker is None or worker._pid != os.getpid() or worker.flush(timeout_s)


def _current() -> WorkerLog | None:
    """This process's WorkerLog, made at its first call (or first call after a fork)."""
    global _looked_at
    with _lock:
        if _worker is not None and _worker._pid == os.getpid():
            return _worker
        now = time.monotonic()
        if _configured is None and now - _looked_at < LOOKUP_INTERVAL_S:
            return None
        _looked_at = now
        target = _configured or lookup_target()
        if target is None:
            if not _said_no_target:
                _say_no_target()
            return None
        _replace(WorkerLog(target))
        return _worker


def _say_no_target() -> None:
    global _said_no_target
    _said_no_target = True
    _log.warning("tunebus: pipeline.log found no collector address (no BusCallback in this Ray job, "
                 "no TUNEBUS_ADDRESS); calls are dropped until one appears")


def _replace(worker: WorkerLog | None) -> None:
    global _worker, _exit_hooked
    old, _worker = _worker, worker
    if old is not None and old._pid == os.getpid():
        old.close(EXIT_FLUSH_S)
    if worker is not None and not _exit_hooked:
        atexit.register(_close_at_exit)
        _flush_when_trials_end()
        _exit_hooked = True


def _flush_when_trials_end() -> None:
    """Flush at the end of each Tune trial this process runs, in its ``_close_logfiles``.

    Tune waits for a trial actor's ``stop`` before the run's end (``on_experiment_end``, then
    ``fit()`` returns), and a reused actor is ``reset`` for its next trial; both end by
    closing the trial's log files, so flushing there puts a trial's last calls in its files
    before ``fit()`` returns, for class and function trainables, reused actors included.
    Patched on the actor's own class: Ray made it when it created the actor, with each
    method bound then (``stop`` and ``reset`` too), but those two look ``_close_logfiles``
    up when they run. It is Tune's private method: without it, process exit still flushes.
    """
    actor = trainable_actor()
    if actor is None:  # not a Tune trial: process exit and Train's shutdown flush
        return
    cls = type(actor)
    method = getattr(cls, "_close_logfiles", None)
    if method is None:
        _log.warning("tunebus: this Ray's Trainable has no _close_logfiles; a trial's last "
                     "pipeline.log calls are flushed only when its worker process exits")
    elif not getattr(method, "_tunebus_flushes", False):
        cls._close_logfiles = _flushing_first(method)


def _flushing_first(method: Any) -> Any:
    @functools.wraps(method)
    def flushed_then(self: Any) -> Any:
        worker = _worker
        if worker is not None and worker._pid == os.getpid():
            worker.flush(TRIAL_END_FLUSH_S, unheard_timeout_s=UNHEARD_TRIAL_END_S)
        return method(self)

    flushed_then._tunebus_flushes = True  # type: ignore[attr-defined]  # marks a method already wrapped
    return flushed_then


def _close_at_exit() -> None:
    worker = _worker
    if worker is not None and worker._pid == os.getpid():
        worker.close(EXIT_FLUSH_S)
