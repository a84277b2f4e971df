"""TrainBusCallback: a Ray Train V2 run published to a tunebus collector as one experiment with one trial."""

# It runs on the Train controller (an actor) and on each worker (a copy). It is not a
# ``ray.train.UserCallback``: a UserCallback only hears ``after_report`` and
# ``after_exception``, so it could not learn that the run ended and wait for the
# collector, nor hand the collector's address to the workers. It subclasses the
# controller, report, worker-group and worker callbacks Train itself is built on
# (``RunConfig`` accepts any ``RayTrainCallback``).

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ray import cloudpickle
from ray.train.v2._internal.execution.callback import (
    ControllerCallback,
    ReportCallback,
    WorkerCallback,
    WorkerGroupCallback,
)

from pipeline.producer import worker_log
from pipeline.producer.bus_target import BusTarget, check_callback_args, given_curve
from pipeline.producer.sender import Sender, SenderConfig
from pipeline.producer.shard_lookup import SHARD_LOOKUP_TIMEOUT_S, lookup_shards
from pipeline.producer.stream import UNHEARD_END_TIMEOUT_S, ProducerStream
from pipeline.producer.worker_context import WorkerHead, train_head
from pipeline.wire.events import Kind
from pipeline.wire.sockets import DEFAULT_ADDRESS, CurveKeys

if TYPE_CHECKING:
    from ray.train.v2._internal.execution.context import TrainRunContext

__all__ = ["RANK_PREFIX", "TrainBusCallback"]

log = logging.getLogger(__name__)

RANK_PREFIX = "ray/train"
"""Every rank's reported metrics travel as ``log`` events under this prefix (``ray/train/<key>``)."""
WORKER_SHUTDOWN_FLUSH_S = 10.0


class TrainBusCallback(ControllerCallback, ReportCallback, WorkerGroupCallback, WorkerCallback):
    """Publishes a Train V2 run to a tunebus collector: ``<out>/<run name>/train/``.

    Each ``ray.train.report`` becomes a ``result`` (rank 0's metrics plus Tune's auto-filled
    fields) and one ``log`` event per rank (``ray/train/<key>`` at the report's
    ``training_iteration``); a reported checkpoint a ``checkpoint`` event; worker failures are
    kept and written to ``error.txt`` when the run ends. The run's end waits up to
    ``end_timeout_s`` for the collector. Workers get the address, so ``pipeline.log`` works there.

    Args: as ``BusCallback`` (``curve=collector.curve`` for a Ray collector actor's keys).
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        end_timeout_s: float = 30.0,
        sender: SenderConfig | None = None,
        curve: CurveKeys | None = None,
        curve_secret_key: str | None = None,
        curve_server_key: str | None = None,
        shard_lookup_timeout_s: float = SHARD_LOOKUP_TIMEOUT_S,
    ) -> None:
        check_callback_args(address, end_timeout_s, shard_lookup_timeout_s)
        keys = given_curve(curve, curve_secret_key, curve_server_key)
        self.target = BusTarget(address, keys, sender or SenderConfig())
        """Where the run's events go; its ``shards`` are filled in at the first event."""
        self.end_timeout_s = end_timeout_s
        self.shard_lookup_timeout_s = shard_lookup_timeout_s
        self.producer = uuid.uuid4().hex[:16]
        self._reset()

    def _reset(self) -> None:
        self._out: ProducerStream | None = None
        self._dropped_before = 0
        self._head: WorkerHead | None = None
        self._iteration = 0
        self._started = self._last = 0.0
        self._errors: list[str] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"target": self.target, "end_timeout_s": self.end_timeout_s, "producer": self.producer,
                "shard_lookup_timeout_s": self.shard_lookup_timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("shard_lookup_timeout_s", SHARD_LOOKUP_TIMEOUT_S)
        self._reset()

    @property
    def dropped(self) -> int:
        """Events given up: the sender was behind or had failed (logged once)."""
        return self._dropped_before + (self._out.dropped if self._out is not None else 0)

    @property
    def senders(self) -> tuple[Sender, ...]:
        """The senders started in this process (none before the first event or after the end)."""
        return self._out.senders if self._out is not None else ()

    # -- on the controller --------------------------------------------------------------

    def after_controller_start(self, train_run_context: TrainRunContext) -> None:
        name = str(train_run_context.run_config.name)
        workers = train_run_context.scaling_config.num_workers
        self._head = train_head(name, 0, workers if isinstance(workers, int) else max(workers))
        self._started = self._last = time.time()
        config = train_run_context.train_loop_config or {}
        self._emit(Kind.SETUP.value, ("", "", ""), {"stop": None, "num_samples": 1, "total_num_samples": 1})
        storage = train_run_context.run_config.storage_path
        self._emit(Kind.TRIAL_START.value, self._names(), {
            "config": config,
            "evaluated_params": config,
            "params_pkl": cloudpickle.dumps(config),  # type: ignore[no-untyped-call]
            "path": os.path.join(str(storage), name, self._names()[2]),
            "experiment_path": os.path.join(str(storage), name),
        })

    def after_report(self, training_report: Any, metrics: list[dict[str, Any]]) -> None:
        if self._head is None:
            return
        now = time.time()
        self._iteration += 1
        result = dict(metrics[0]) if metrics else {}
        result.update(self._auto_filled(now))
        checkpoint = training_report.checkpoint
        path = getattr(checkpoint, "path", None)
        result["checkpoint_dir_name"] = os.path.basename(str(path).rstrip("/")) if path else None
        self._last = now
        self._emit(Kind.RESULT.value, self._names(), result)
        if checkpoint is not None:
            self._emit(Kind.CHECKPOINT.value, self._names(), {"path": getattr(checkpoint, "path", None)})
        for rank, rank_metrics in enumerate(metrics):
            self._emit(Kind.LOG.value, self._names(), {
                "step": self._iteration, "rank": rank, "world_size": len(metrics),
                "values": {RANK_PREFIX: rank_metrics}})

    def after_worker_group_poll_status(self, worker_group_status: Any) -> None:
        errors = worker_group_status.errors
        if errors:
            self._errors.extend(f"rank {rank}: {exc!r}" for rank, exc in sorted(errors.items()))

    def after_controller_finish(self, result: Any) -> None:
        if self._head is None:
            return
        failed = result.error is not None
        if failed:
            self._errors.append(f"run failed: {result.error!r}")
        payload: dict[str, Any] = {"evaluated_params": None}
        if self._errors:
            payload["error"] = "\n".join(self._errors)
        kind = Kind.TRIAL_ERROR if failed else Kind.TRIAL_COMPLETE
        self._emit(kind.value, self._names(), payload)
        experiment, trial, _ = self._names()
        status = "ERROR" if failed else "TERMINATED"
        self._emit(Kind.EXPERIMENT_END.value, (experiment, "", ""), {"trials": {trial: status}})
        self.close(self.end_timeout_s)

    def before_controller_abort(self) -> None:
        self.close(0.0)

    # -- on each worker (a copy of this callback) -----------------------------------------

    def after_init_train_context(self) -> None:
        worker_log.configure(self.target)

    def before_worker_shutdown(self) -> None:
        worker_log.flush(WORKER_SHUTDOWN_FLUSH_S)

    # -- the stream -------------------------------------------------------------------------

    def close(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the collector to confirm everything, then stop."""
        out, self._out = self._out, None
        if out is None:
            return True
        self._dropped_before += out.dropped
        delivered = out.flush(timeout_s, unheard_timeout_s=UNHEARD_END_TIMEOUT_S)
        if not delivered:
            for address in out.pending():
                log.warning("tunebus: not every event of the Train run was confirmed by %s in %.1fs; "
                            "the rest is in the spool", address, timeout_s)
        return out.close() and delivered

    def _names(self) -> tuple[str, str, str]:
        head = self._head
        assert head is not None
        return (head.experiment, head.trial, head.trial_dir)

    def _auto_filled(self, now: float) -> dict[str, Any]:
        """The fields Tune adds to every result, for a Train report."""
        return {
            "training_iteration": self._iteration,
            "trial_id": self._names()[1],
            "timestamp": int(now),
            "date": datetime.fromtimestamp(now).strftime("%Y-%m-%d_%H-%M-%S"),
            "time_this_iter_s": now - self._last,
            "time_total_s": now - self._started,
            "time_since_restore": now - self._started,
            "iterations_since_restore": self._iteration,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "done": False,
        }

    def _emit(self, kind: str, head: tuple[str, str, str], payload: dict[str, Any]) -> None:
        (self._out or self._start()).emit(kind, head, payload)

    def _start(self) -> ProducerStream:
        """The run's stream, on the shards the collector names (asked once, at the first event)."""
        target = self.target
        if not target.shards:
            shards = lookup_shards(target.address, target.curve, self.shard_lookup_timeout_s)
            self.target = target = dataclasses.replace(target, shards=shards)  # and so to the workers
        self._out = ProducerStream(f"{self.producer}.{uuid.uuid4().hex[:8]}", target.shards, target.sender,
                                   target.curve, dropping="events of this Train run are being dropped")
        return self._out
