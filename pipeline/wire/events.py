"""The event schema: what every message on the bus says, and which names are safe."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

__all__ = [
    "SCHEMA_VERSION",
    "Event",
    "Fallback",
    "Kind",
    "SchemaError",
    "check_name",
]

SCHEMA_VERSION = 1
"""Bumped on any change a version-1 reader would misread; readers reject other versions."""

MAX_NAME_CHARS = 255


class Kind(str, enum.Enum):
    """What happened: one kind per Tune callback hook, and ``log`` for a call of ``pipeline.log``."""

    SETUP = "setup"
    TRIAL_START = "trial_start"
    TRIAL_RESTORE = "trial_restore"
    TRIAL_SAVE = "trial_save"
    CHECKPOINT = "checkpoint"
    RESULT = "result"
    TRIAL_COMPLETE = "trial_complete"
    TRIAL_ERROR = "trial_error"
    TRIAL_RECOVER = "trial_recover"
    EXPERIMENT_END = "experiment_end"
    LOG = "log"
    """Metrics logged from inside a trainable or a Train worker: ``step``, ``rank``,
    ``world_size`` and ``values``. Added after version 1 shipped, without a version bump:
    see the README's wire protocol for what an older collector does with it."""


KINDS = {kind.value: kind for kind in Kind}
TRIAL_KINDS = frozenset(KINDS) - {Kind.SETUP.value, Kind.EXPERIMENT_END.value}


class SchemaError(ValueError):
    """A message that is not a valid event of this schema version."""

    def __init__(self, fault: str, detail: str) -> None:
        super().__init__(f"{fault}: {detail}")
        self.fault = fault


class Event(NamedTuple):
    """One thing that happened in a Tune run, as it travels on the bus.

    ``experiment`` and ``trial_dir`` are Tune's own directory names (relative,
    one path component each); ``trial`` is Tune's trial id. Experiment-level
    kinds carry empty ``trial`` and ``trial_dir``. A named tuple, not a frozen
    dataclass: the collector makes one per event and this is four times cheaper.
    """

    kind: str
    producer: str
    seq: int
    ts: float
    experiment: str
    trial: str
    trial_dir: str
    payload: dict[str, Any]
    version: int = SCHEMA_VERSION

    @property
    def key(self) -> tuple[str, str]:
        return (self.experiment, self.trial)


def check_name(what: str, name: object, *, allow_empty: bool = False) -> str:
    """Return ``name`` if it is one safe path component, else raise SchemaError."""
    if not isinstance(name, str):
        raise SchemaError("bad-type", f"{what} must be a string, got {type(name).__name__}")
    if not name:
        if allow_empty:
            return name
        raise SchemaError("bad-name", f"{what} is empty")
    if (
        len(name) > MAX_NAME_CHARS
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
    ):
        raise SchemaError("bad-name", f"{what} {name[:80]!r} is not a safe directory name")
    return name


class Fallback:
    """A value msgpack cannot carry, kept as the two texts Tune's loggers would write."""

    __slots__ = ("json", "text")

    def __init__(self, json_text: str, text: str) -> None:
        self.json = json_text
        self.text = text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fallback) and (self.json, self.text) == (other.json, other.text)

    def __hash__(self) -> int:
        return hash((self.json, self.text))
