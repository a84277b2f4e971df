"""BusCallback: Tune's callback hooks turned into bus events at the cost of one encode."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

from ray import cloudpickle
from ray.tune import Callback

from pipeline.producer.bus_target import BusTarget, check_callback_args, given_curve, publish_target
from pipeline.producer.sender import SenderConfig
from pipeline.producer.shard_lookup import SHARD_LOOKUP_TIMEOUT_S, lookup_shards
from pipeline.producer.stream import UNHEARD_END_TIMEOUT_S, Emit, ProducerStream
from pipeline.producer.tune_loggers import leave_out_tune_loggers
from pipeline.wire.codec import EventEncoder
from pipeline.wire.events import Kind
from pipeline.wire.sockets import DEFAULT_ADDRESS, CurveKeys

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["UNHEARD_END_TIMEOUT_S", "BusCallback"]

log = logging.getLogger(__name__)

RESULT = Kind.RESULT.value
"""Read once: an enum member's ``.value`` is a Python-level property, 0.4 us on the hot path."""


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
        shard_lookup_timeout_s: how long ``setup`` waits for the collector at
            ``address`` to name its shards (each trial then goes to the shard
            that owns it, and the map reaches this job's ``pipeline.log``
            workers). No answer in time (an older collector, or none yet): every
            trial goes to ``address``. 0 does not ask.
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
        shard_lookup_timeout_s: float = SHARD_LOOKUP_TIMEOUT_S,
    ) -> None:
        check_callback_args(address, end_timeout_s, shard_lookup_timeout_s)
        self.address = address
        self.end_timeout_s = end_timeout_s
        self.shard_lookup_timeout_s = shard_lookup_timeout_s
        self.sender_config = sender or SenderConfig()
        self.curve = given_curve(curve, curve_secret_key, curve_server_key)
        self.producer = uuid.uuid4().hex[:16]
        self.disable_builtin_loggers = disable_builtin_loggers
        self._reset()

    def _reset(self) -> None:
        self._out: ProducerStream | None = None
        self._send: Emit | None = None
        """``self._out.emit`` once started: read in one step on the hot path."""
        self._stream = ""
        self._shards: tuple[str, ...] = ()
        self._dropped_before = 0
        self._heads: dict[str, tuple[str, str, str]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_out", "_send", "_stream", "_shards", "_dropped_before", "_heads"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("shard_lookup_timeout_s", SHARD_LOOKUP_TIMEOUT_S)  # a tuner.pkl of before
        self._reset()

    def get_state(self) -> dict[str, Any]:
        return {"producer": self.producer}

    def set_state(self, state: dict[str, Any]) -> None:
        self.producer = str(state.get("producer", self.producer))

    @property
    def stream(self) -> str:
        """This process's producer id on the bus: the stable id plus a per-process suffix.

        With several collector shards, shard ``k``'s events travel as ``<stream>.s<k>``.
        """
        return self._stream

    @property
    def shards(self) -> tuple[str, ...]:
        """The bus address of every collector shard this process sends to (empty before ``setup``)."""
        return self._shards

    @property
    def dropped(self) -> int:
        """Events given up because the sender thread was behind or had failed (logged once)."""
        return self._dropped_before + (self._out.dropped if self._out is not None else 0)

    def _start(self) -> ProducerStream:
        # A new stream per process: sequence numbers restart at 0 and never collide with
        # what a previous driver of the same experiment (before Tuner.restore) sent. The
        # shard map is asked for once per process, so a restored driver asks again.
        self.close()
        self._shards = lookup_shards(self.address, self.curve, self.shard_lookup_timeout_s)
        self._stream = f"{self.producer}.{uuid.uuid4().hex[:8]}"
        self._out = ProducerStream(self._stream, self._shards, self.sender_config,
                                   self.curve, encode=EventEncoder().encode, may_block=True,
                                   dropping="events are being dropped")
        self._send = self._out.emit
        return self._out

    def _emit(self, kind: str, head: tuple[str, str, str], payload: dict[str, Any]) -> None:
        (self._send or self._start().emit)(kind, head, payload)

    def _head(self, trial: Trial) -> tuple[str, str, str]:
        """The trial's names on the bus; kept in ``_heads`` only once the trial was started."""
        head = self._heads.get(trial.trial_id)
        if head is None:
            trial_dir = trial.storage.trial_dir_name if trial.storage else None
            head = (str(trial.experiment_dir_name), str(trial.trial_id), str(trial_dir))
        return head

    def setup(self, stop: Any = None, num_samples: int | None = None,
              total_num_samples: int | None = None, **info: Any) -> None:
        self._publish(self._start().addresses)
        payload = {"stop": stop, "num_samples": num_samples, "total_num_samples": total_num_samples,
                   "host": socket.gethostname(), "pid": os.getpid()}
        self._emit(Kind.SETUP.value, ("", "", ""), payload)

    def _publish(self, shards: tuple[str, ...]) -> None:
        """Tell this Ray job's workers where ``pipeline.log`` sends to (``pipeline.producer.bus_target``).

        The shard map travels along, so the workers route every trial as the driver does.
        """
        try:
            publish_target(BusTarget(self.address, self.curve, self.sender_config, shards))
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
        (self._send or self._start().emit)(RESULT, head, result)

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
        if self._out is not None:
            for address in self._out.unheard():
                # No collector ever answered there: waiting the whole timeout would only slow fit() down.
                log.warning("tunebus: no collector at %s has answered; not waiting for one", address)
        self._flush(self.end_timeout_s, UNHEARD_END_TIMEOUT_S)
        self.close()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the collector confirms every event so far is written; False on timeout."""
        return self._flush(timeout_s, None)

    def _flush(self, timeout_s: float, unheard_timeout_s: float | None) -> bool:
        if self._out is None or self._out.flush(timeout_s, unheard_timeout_s=unheard_timeout_s):
            return True
        for address, held in self._out.pending().items():
            log.warning("tunebus: %d events not yet confirmed by the collector at %s after %.1fs",
                        held, address, timeout_s)
        return False

    def close(self) -> None:
        """Stop the sender threads; safe to call twice."""
        out, self._out, self._send = self._out, None, None
        if out is not None:
            out.close()
            self._dropped_before += out.dropped


leave_out_tune_loggers(BusCallback)  # also when Tuner.restore unpickles one: unpickling imports this
