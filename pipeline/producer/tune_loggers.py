"""Tune's own JSON/CSV/TensorBoard loggers, left out of the runs a BusCallback is part of."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["leave_out_tune_loggers"]

log = logging.getLogger(__name__)


def leave_out_tune_loggers(marker: type) -> None:
    """Make ``tune.run`` add none of its default logger callbacks to a run holding a ``marker``.

    ``Tuner.fit`` builds a run's callbacks with ``_create_default_callbacks``,
    which appends a ``CSVLoggerCallback``, ``JsonLoggerCallback`` and
    ``TBXLoggerCallback`` unless ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``; no
    callback hook runs before it. This wraps it: for a run whose callbacks hold a
    ``marker``, the loggers it added are taken out again (loggers the user put in
    the list stay). No environment variable is touched, so other runs in the
    process keep Tune's loggers, and it holds wherever the marker came from
    (constructed, or unpickled by ``Tuner.restore``: importing its class installs
    this). Idempotent.
    """
    import ray.tune.tune as tune_module
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    create = getattr(tune_module, "_create_default_callbacks", None)
    if create is None:
        log.warning("tunebus: this Ray has no tune.tune._create_default_callbacks; set "
                    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1 so Tune does not write the same files")
        return
    if getattr(create, "tunebus_marker", None) is marker:
        return
    loggers = (CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback)

    @functools.wraps(create)
    def create_default_callbacks(callbacks: list[Any] | None, **kwargs: Any) -> list[Any]:
        given = {id(c) for c in callbacks or ()}
        made: list[Any] = create(list(callbacks or ()), **kwargs)  # Tune appends to the list in place
        if not any(isinstance(c, marker) and getattr(c, "disable_builtin_loggers", True)
                   for c in callbacks or ()):
            return made
        return [c for c in made if id(c) in given or not isinstance(c, loggers)]

    wrapped: Callable[..., list[Any]] = create_default_callbacks
    wrapped.tunebus_marker = marker  # type: ignore[attr-defined]
    setattr(tune_module, "_create_default_callbacks", wrapped)  # noqa: B010 - ray does not export it
