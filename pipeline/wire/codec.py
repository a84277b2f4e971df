"""The wire codec: events to msgpack bytes and back, numpy and odd values included."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from pipeline.wire.events import KINDS, SCHEMA_VERSION, TRIAL_KINDS, Event, Fallback, SchemaError, check_name
from pipeline.wire.values import (
    EXT_FALLBACK,
    EXT_NDARRAY,
    EXT_NPSCALAR,
    EXT_OBJECT_ARRAY,
    EXT_TUPLE,
    pack_default,
    packb,
    unpack_checked,
)

__all__ = [
    "EXT_FALLBACK",
    "EXT_NDARRAY",
    "EXT_NPSCALAR",
    "EXT_OBJECT_ARRAY",
    "EXT_TUPLE",
    "EventEncoder",
    "Frame",
    "decode_control",
    "decode_event",
    "decode_frame",
    "encode_control",
    "encode_event",
    "encode_stored",
    "frame_events",
]

EVENT_FIELDS = 9
MAX_SAFE_NAMES = 65_536
# (kind, producer, experiment, trial, trial_dir) already checked, each to itself: most events repeat
# those of an event before them.
_SAFE_NAMES: dict[tuple[str, str, str, str, str], tuple[str, str, str, str, str]] = {}
_BY_DIR: dict[str, tuple[str, str, str, str, str]] = {}
"""The entry of ``_SAFE_NAMES`` last checked for each trial directory."""
_new_event = tuple.__new__
FRAME_VERSION = 1


def encode_event(
    kind: str,
    producer: str,
    seq: int,
    ts: float,
    experiment: str,
    trial: str,
    trial_dir: str,
    payload: dict[str, Any],
) -> bytes:
    """One event as the msgpack array the wire carries; never raises for odd values."""
    try:
        return packb([SCHEMA_VERSION, kind, producer, seq, ts, experiment, trial, trial_dir, payload])
    except (ValueError, TypeError, OverflowError, UnicodeError, RecursionError):
        # A string with lone surrogates, a cycle, too deep a nest: keep the event, lose the value.
        safe = {"tunebus_unencodable": str(payload)[:65536]}
        return packb([SCHEMA_VERSION, kind, producer, seq, ts, experiment, trial, trial_dir, safe])


class EventEncoder:
    """``encode_event`` with one msgpack Packer kept between calls (a third less time per event).

    For one thread: the driver's callback hooks, which Tune calls from its loop.
    """

    __slots__ = ("_pack",)

    def __init__(self) -> None:
        self._pack = msgpack.Packer(default=pack_default, strict_types=True).pack

    def encode(self, kind: str, producer: str, seq: int, ts: float, experiment: str, trial: str,
               trial_dir: str, payload: dict[str, Any]) -> bytes:
        """The bytes ``encode_event`` gives for the same arguments."""
        try:
            packed: bytes = self._pack([SCHEMA_VERSION, kind, producer, seq, ts, experiment, trial,
                                        trial_dir, payload])
        except (ValueError, TypeError, OverflowError, UnicodeError, RecursionError):  # afresh
            return encode_event(kind, producer, seq, ts, experiment, trial, trial_dir, payload)
        return packed


def encode_stored(event: Event, max_bytes: int | None = None) -> bytes:
    """A decoded event encoded again: for the collector's disk (backlog, quarantine), or by
    the sender to bring it under ``max_bytes``.

    Past ``max_bytes`` the largest values (arrays, bytes, strings, lists) are replaced by
    a note of their size, so the event still travels and its row is still written.
    """
    head = (event.kind, event.producer, event.seq, event.ts, event.experiment, event.trial,
            event.trial_dir)
    packed = encode_event(*head, event.payload)
    if max_bytes is None or len(packed) <= max_bytes:
        return packed
    packed = encode_event(*head, _shrunk(event.payload, max(1, max_bytes // 16)))
    if len(packed) <= max_bytes:
        return packed
    return encode_event(*head, {"tunebus_oversized": f"{len(packed)} bytes"})


def _shrunk(value: Any, limit: int) -> Any:
    """``value`` with every bulky leaf over ``limit`` packed bytes replaced by a note of its size."""
    if isinstance(value, dict):
        return {k: _shrunk(v, limit) for k, v in value.items()}
    if isinstance(value, (np.ndarray, bytes, str, list, tuple)):
        size = len(packb(value))
        if size > limit:
            note = f"<tunebus: {type(value).__name__} of {size} bytes left out: over the event size limit>"
            return Fallback(json.dumps(note), note)
    return value


def frame_events(producer: str, base: int, encoded: list[bytes]) -> bytes:
    """``[version, producer, base, [events...]]``: many encoded events in one frame, not re-encoded.

    ``base`` is the lowest seq the producer still holds: everything below it
    is written (or dropped), so a collector that knows less starts there.
    """
    packer = msgpack.Packer()
    head: bytes = packer.pack_array_header(4) + packer.pack(FRAME_VERSION) + packer.pack(producer)
    tail: bytes = packer.pack(base) + packer.pack_array_header(len(encoded))
    return head + tail + b"".join(encoded)


def _to_event(item: Any) -> Event:
    """The event ``item`` (a decoded wire array) is, every field checked; raises SchemaError."""
    if not isinstance(item, list) or not item:
        raise SchemaError("bad-shape", f"an event is an array, got {type(item).__name__}")
    if item[0] != SCHEMA_VERSION:
        raise SchemaError("unknown-version", f"schema version {item[0]!r}")
    if len(item) != EVENT_FIELDS:
        raise SchemaError("bad-shape", f"an event has {EVENT_FIELDS} fields, got {len(item)}")
    _, kind, producer, seq, ts, experiment, trial, trial_dir, payload = item
    if not isinstance(kind, str) or kind not in KINDS:  # (a list is no kind, and unhashable)
        raise SchemaError("unknown-kind", f"kind {kind!r}")
    if not isinstance(producer, str) or not producer or len(producer) > 255:
        raise SchemaError("bad-type", "producer must be a non-empty string")
    if type(seq) is not int or seq < 0 or type(ts) not in (float, int):
        raise SchemaError("bad-type", "seq must be a non-negative integer, ts a number")
    if not isinstance(payload, dict):
        raise SchemaError("bad-type", "payload must be a map")
    in_trial = kind in TRIAL_KINDS
    check_name("experiment", experiment, allow_empty=kind == "setup")
    check_name("trial", trial, allow_empty=not in_trial)
    check_name("trial_dir", trial_dir, allow_empty=not in_trial)
    if len(_SAFE_NAMES) >= MAX_SAFE_NAMES:
        _SAFE_NAMES.clear()
        _BY_DIR.clear()
    names = _SAFE_NAMES.setdefault((kind, producer, experiment, trial, trial_dir),
                                   (kind, producer, experiment, trial, trial_dir))
    _BY_DIR[names[4]] = names
    return _new_event(Event, (names[0], names[1], seq, float(ts), names[2], names[3], names[4], payload,
                              SCHEMA_VERSION))


def _to_events(items: list[Any], producer: str, events: list[Event], faults: list[SchemaError]) -> None:
    """Append each of ``items`` that is a valid event of ``producer`` to ``events``, the faults to ``faults``.

    The usual event repeats the kind, producer and names of one before it: those found in
    ``_SAFE_NAMES`` were checked then, and the event takes that entry's strings (so later
    dicts keyed by them hash and compare them at once). The rest go through ``_to_event``.
    """
    append, known, by_dir, new = events.append, _SAFE_NAMES.get, _BY_DIR.get, _new_event
    for item in items:
        if type(item) is list and len(item) == EVENT_FIELDS:
            version, kind, sender, seq, ts, experiment, trial, trial_dir, payload = item
            try:
                # The last checked names of this trial directory, compared field by field, are
                # cheaper than hashing five new strings for ``_SAFE_NAMES``.
                names = by_dir(trial_dir)
                if names is None or not (type(trial) is type(kind) is type(sender) is type(experiment) is str
                                         and names[3] == trial and names[0] == kind and names[1] == sender
                                         and names[2] == experiment):
                    names = known((kind, sender, experiment, trial, trial_dir))
                    if names is not None:
                        _BY_DIR[names[4]] = names
            except TypeError:  # an unhashable field: ``_to_event`` says which
                names = None
            if (names is not None and version == SCHEMA_VERSION and type(seq) is int and seq >= 0
                    and type(payload) is dict and (type(ts) is float or type(ts) is int)
                    and sender == producer):
                append(new(Event, (names[0], names[1], seq, float(ts), names[2], names[3], names[4],
                                   payload, SCHEMA_VERSION)))
                continue
        try:
            event = _to_event(item)
        except SchemaError as exc:
            faults.append(exc)
            continue
        if event.producer != producer:
            faults.append(SchemaError("producer-mismatch",
                                      f"event of {event.producer!r} in a frame of {producer!r}"))
            continue
        append(event)


def decode_event(data: bytes) -> Event:
    """One event that ``encode_event`` made; raises SchemaError if it is not one."""
    return _to_event(unpack_checked(data))


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame: who sent it, from which seq on, its valid events and its faults."""

    producer: str
    base: int
    events: list[Event]
    faults: list[SchemaError]


def decode_frame(frame: bytes) -> Frame:
    """The valid events of a frame, and one error per event (or frame) that is not."""
    try:
        items = unpack_checked(frame)
    except SchemaError as exc:
        return Frame("", -1, [], [exc])
    if not isinstance(items, list) or len(items) != 4 or not isinstance(items[3], list):
        return Frame("", -1, [], [SchemaError("bad-shape", "a frame is [version, producer, base, [events]]")])
    version, producer, base, raw_events = items
    if version != FRAME_VERSION:
        return Frame("", -1, [], [SchemaError("unknown-version", f"frame version {version!r}")])
    if not isinstance(producer, str) or not producer or type(base) is not int or base < 0:
        return Frame("", -1, [], [SchemaError("bad-type", "producer must be a string, base a seq")])
    events: list[Event] = []
    faults: list[SchemaError] = []
    _to_events(raw_events, producer, events, faults)
    return Frame(producer, base, events, faults)


def encode_control(kind: str, *args: int | str) -> bytes:
    """A collector-to-producer message: ``["ack", seq]`` or ``["nack", expected_seq]``."""
    packed: bytes = msgpack.packb([kind, *args])
    return packed


def decode_control(frame: bytes) -> tuple[str, list[Any]]:
    """The kind and arguments of a control message; raises SchemaError if it is not one."""
    try:
        message = msgpack.unpackb(frame)
    except Exception as exc:  # noqa: BLE001
        raise SchemaError("bad-msgpack", str(exc)[:200]) from exc
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise SchemaError("bad-shape", "a control message is [kind, ...]")
    return message[0], message[1:]
