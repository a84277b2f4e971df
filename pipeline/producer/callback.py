"""BusCallback: Tune's callback hooks turned into bus events at the cost of one encode."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from ray import cloudpickle
from ray.tune import Callback

from pipeline.producer.bus_target import BusTarget, check_callback_args, given_curve, publish_target
from pipeline.producer.sender import FullPolicy, Sender, SenderConfig
from pipeline.producer.tune_loggers import leave_out_tune_loggers
from pipeline.wire.codec import EventEncoder
from pipeline.wire.events import Kind
from pipeline.wire.sockets import DEFAULT_ADDRESS, CurveKeys

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["BusCallback"]

log = logging.getLogger(__name__)

RESULT = Kind.RESULT.value
"""Read once: an enum member's ``.value`` is a Python-level property, 0.4 us on the hot path."""
BLOCK_LOG_INTERVAL_S = 10.0
UNHEARD_END_TIMEOUT_S = 2.0
"""How long the end of a run waits when no collector has acknowledged anything yet."""


class BusCallback(Callback):
    """Publishes every Tune event to a tunebus collector; the driver never waits on I/O.

    A run whose callbacks hold a ``BusCallback`` gets none of the JSON, CSV and
    TensorBoard loggers Tune adds by itself (they would write the same files; see
    ``leave_out_tune_loggers``). That holds however the callback came to the run
    (built, or unpickled by ``Tuner.restore``) and for that run alone: no
    environment variable is set, other runs in the process keep Tune's loggers.
    To keep Tune's files too, put its logger callbacks in the run's list.

    Args:
        address: the collector's bus address, e.g. ``tcp://127.0.0.1:5555``.
        end_timeout_s: how long ``on_experiment_end`` waits for the collector
            to confirm that every event is written (``Tuner.fit`` reads the
            files right after). 0 does not wait; when no collector has answered
            at all, it waits at most 2 s and the events go to the spool.
        sender: memory and spool bounds, full policy and timings of the sender.
        disable_builtin_loggers: leave Tune's own JSON/CSV/TensorBoard loggers out
            of the runs holding this callback (the default); False keeps them, and
            both then write the same file names: give the collector another ``--out``.
        curve: CurveZMQ keys to talk to a collector that requires them, as
            ``pipeline.wire.sockets.CurveKeys`` (this client's pair and the
            collector's public key): a Ray collector actor hands them out,
            ``BusCallback(collector.address, curve=collector.curve)``. They
            reach this job's ``pipeline.log`` workers with the address. They are
            pickled with the callback (``tuner.pkl``), as the address is, so
            ``Tuner.restore`` talks to the same collector.
        curve_secret_key: or the keys as files: this client's ``.key_secret``
            file (``tunebus keygen``)...
        curve_server_key: ...and the collector's public ``.key`` file.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        end_timeout_s: float = 30.0,
        sender: SenderConfig | None = None,
        disable_builtin_loggers: bool = True,
        curve: CurveKeys | None = None,
        curve_secret_key: str | None = None,
        curve_server_key: str | None = None,
    ) -> None:
        check_callback_args(address, end_timeout_s)
        self.address = address
        self.end_timeout_s = end_timeout_s
        self.sender_config = sender or SenderConfig()
        self.curve = given_curve(curve, curve_secret_key, curve_server_key)
        self.producer = uuid.uuid4().hex[:16]
        self.disable_builtin_loggers = disable_builtin_loggers
        self._reset()

    def _reset(self) -> None:
        self._sender: Sender | None = None
        self._stream = ""
        self._seq = 0
        self._heads: dict[str, tuple[str, str, str]] = {}
        self._encode = EventEncoder().encode
        self.dropped = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_sender", "_stream", "_seq", "_heads", "_encode", "dropped"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def get_state(self) -> dict[str, Any]:
        return {"producer": self.producer}

    def set_state(self, state: dict[str, Any]) -> None:
        self.producer = str(state.get("producer", self.producer))

    @property
    def stream(self) -> str:
        """This process's producer id on the bus: the stable id plus a per-process suffix."""
        return self._stream

    def _start(self) -> Sender:
        # A new stream per process: sequence numbers restart at 0 and never collide with
        # what a previous driver of the same experiment (before Tuner.restore) sent.
        self._stream = f"{self.producer}.{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._sender = Sender(self.address, self._stream, self.sender_config, self.curve)
        return self._sender

    def _emit(self, kind: str, head: tuple[str, str, str], payload: dict[str, Any]) -> None:
        sender = self._sender or self._start()
        if not sender.accepting() and not self._wait_or_drop(sender):
            return
        seq = self._seq
        self._seq = seq + 1
        try:
            sender.submit(seq, self._encode(kind, self._stream, seq, time.time(), *head, payload))
        except RuntimeError as exc:
            self.dropped += 1
            if self.dropped == 1:
                log.error("tunebus: %s; events are being dropped", exc)

    def _wait_or_drop(self, sender: Sender) -> bool:
        """The sender thread is behind by ``max_handoff_events``: block (if asked to) or drop."""
        if sender.config.when_full is FullPolicy.BLOCK:
            while not sender.wait_for_room(BLOCK_LOG_INTERVAL_S):
                log.warning("tunebus: the driver is blocked on a full sender (when_full=block)")
            return True
        self.dropped += 1
        if self.dropped == 1:
            log.warning("tunebus: the sender thread is %d events behind; dropping new events",
                        sender.config.max_handoff_events)
        return False

    def _head(self, trial: Trial) -> tuple[str, str, str]:
        """The trial's names on the bus; kept in ``_heads`` only once the trial was started."""
        head = self._heads.get(trial.trial_id)
        if head is None:
            trial_dir = trial.storage.trial_dir_name if trial.storage else None
            head = (str(trial.experiment_dir_name), str(trial.trial_id), str(trial_dir))
        return head

    def setup(self, stop: Any = None, num_samples: int | None = None,
              total_num_samples: int | None = None, **info: Any) -> None:
        self._start()
        self._publish()
        payload = {"stop": stop, "num_samples": num_samples, "total_num_samples": total_num_samples,
                   "host": socket.gethostname(), "pid": os.getpid()}
        self._emit(Kind.SETUP.value, ("", "", ""), payload)

    def _publish(self) -> None:
        """Tell this Ray job's workers where ``pipeline.log`` sends to (``pipeline.producer.bus_target``)."""
        try:
            publish_target(BusTarget(self.address, self.curve, self.sender_config))
        except Exception as exc:  # noqa: BLE001 - worker logging is off; the driver's events are not
            log.warning("tunebus: could not publish the address for pipeline.log: %s", exc)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        head = self._heads[trial.trial_id] = self._head(trial)
        self._emit(Kind.TRIAL_START.value, head, {
            "config": trial.config,
            "evaluated_params": trial.evaluated_params,
            "params_pkl": cloudpickle.dumps(trial.config),  # type: ignore[no-untyped-call]
            "path": trial.path,
            "experiment_path": trial.remote_experiment_path,
        })

    def on_trial_restore(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._emit(Kind.TRIAL_RESTORE.value, self._head(trial), {})

    def on_trial_save(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._emit(Kind.TRIAL_SAVE.value, self._head(trial), {})

    def on_checkpoint(self, iteration: int, trials: list[Trial], trial: Trial,
                      checkpoint: Any, **info: Any) -> None:
        self._emit(Kind.CHECKPOINT.value, self._head(trial), {"path": getattr(checkpoint, "path", None)})

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict[str, Any], **info: Any) -> None:
        head = self._heads.get(trial.trial_id)
        if head is None:  # a trial whose first hook is a result: started here, as Tune's loggers do
            self.on_trial_start(iteration, trials, trial)
            head = self._heads[trial.trial_id]
        self._emit(RESULT, head, result)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._emit(Kind.TRIAL_COMPLETE.value, self._head(trial),
                   {"evaluated_params": trial.evaluated_params})

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._emit(Kind.TRIAL_ERROR.value, self._head(trial),
                   {"evaluated_params": trial.evaluated_params, "error_file": trial.error_file})

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._emit(Kind.TRIAL_RECOVER.value, self._head(trial), {"error_file": trial.error_file})

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        statuses: dict[str, dict[str, str]] = {}
        for trial in trials:
            experiment, trial_id, _ = self._head(trial)
            statuses.setdefault(experiment, {})[trial_id] = str(trial.status)
        for experiment, trial_statuses in statuses.items():
            self._emit(Kind.EXPERIMENT_END.value, (experiment, "", ""), {"trials": trial_statuses})
        timeout_s = self.end_timeout_s
        if self._sender is not None and not self._sender.heard_from_collector():
            # No collector ever answered: waiting the whole timeout would only slow fit() down.
            timeout_s = min(timeout_s, UNHEARD_END_TIMEOUT_S)
            log.warning("tunebus: no collector at %s has answered; not waiting for one", self.address)
        self.flush(timeout_s)
        self.close()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the collector confirms every event so far is written; False on timeout."""
        if self._sender is None:
            return True
        if self._sender.flush(timeout_s):
            return True
        stats = self._sender.stats()
        log.warning("tunebus: %d events not yet confirmed by the collector at %s after %.1fs",
                    stats.in_memory + stats.spooled, self.address, timeout_s)
        return False

    def close(self) -> None:
        """Stop the sender thread; safe to call twice."""
        if self._sender is not None:
            self._sender.close()
            self._sender = None



leave_out_tune_loggers(BusCallback)  # also when Tuner.restore unpickles one: unpickling imports this
