"""The wire codec: events to msgpack bytes and back, numpy and odd values included."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

try:
    import ormsgpack
except ImportError:  # the ``fast`` extra: without it msgpack decodes every frame
    ormsgpack = None  # type: ignore[assignment]

from pipeline.wire.events import KINDS, SCHEMA_VERSION, TRIAL_KINDS, Event, Fallback, SchemaError, check_name

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

EXT_NDARRAY = 1  # [dtype.str, shape, raw bytes in C order]
EXT_NPSCALAR = 2  # [dtype.str, raw bytes]
EXT_TUPLE = 3  # packed list of the items
EXT_FALLBACK = 4  # [JSON text Tune's SafeFallbackEncoder writes, str(value)]
EXT_OBJECT_ARRAY = 5  # [shape, [items in C order]]: each item packed as any value is, never pickled

# Numeric, bool, bytes and unicode dtypes travel; object and structured dtypes never do.
WIRE_DTYPE_KINDS = frozenset("biufcSU")
EVENT_FIELDS = 9
MAX_SAFE_NAMES = 65_536
# (kind, producer, experiment, trial, trial_dir) already checked, each to itself: most events repeat
# those of an event before them.
_SAFE_NAMES: dict[tuple[str, str, str, str, str], tuple[str, str, str, str, str]] = {}
_BY_DIR: dict[str, tuple[str, str, str, str, str]] = {}
"""The entry of ``_SAFE_NAMES`` last checked for each trial directory."""
_new_event = tuple.__new__
_fast_unpackb = ormsgpack.unpackb if ormsgpack is not None else None
_FAST_OPTIONS = ormsgpack.OPT_NON_STR_KEYS if ormsgpack is not None else 0
FRAME_VERSION = 1


def _fallback_json(value: Any) -> str:
    try:
        from ray.tune.utils.util import SafeFallbackEncoder  # type: ignore[attr-defined]
    except ImportError:  # a producer without Ray: the plain text is what Tune would fall back to
        return json.dumps(str(value))
    try:
        return json.dumps(value, cls=SafeFallbackEncoder)
    except Exception:  # noqa: BLE001 - Tune's encoder itself gives up with str()
        return json.dumps(str(value))


def _pack_default(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype.kind in WIRE_DTYPE_KINDS:
        data = [value.dtype.str, list(value.shape), np.ascontiguousarray(value).tobytes()]
        return msgpack.ExtType(EXT_NDARRAY, msgpack.packb(data))
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return msgpack.ExtType(EXT_OBJECT_ARRAY, _packb([list(value.shape), value.ravel().tolist()]))
    if isinstance(value, np.generic) and value.dtype.kind in WIRE_DTYPE_KINDS:
        return msgpack.ExtType(EXT_NPSCALAR, msgpack.packb([value.dtype.str, value.tobytes()]))
    if isinstance(value, Fallback):
        return msgpack.ExtType(EXT_FALLBACK, msgpack.packb([value.json, value.text]))
    if isinstance(value, tuple) and type(value) is tuple:
        return msgpack.ExtType(EXT_TUPLE, _packb(list(value)))
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    # Subclasses of builtins (msgpack's strict types refuse them) travel as their base type's value:
    # a (str, Enum) as 'fast' (str() would give 'Mode.FAST'), an IntEnum or a float subclass as a number.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and type(value) is not int and -(2**63) <= value < 2**64:
        return int.__int__(value)  # (past 64 bits, an int of any type travels as text, below)
    if isinstance(value, float):
        return float.__float__(value)
    text = str(value)
    return msgpack.ExtType(EXT_FALLBACK, msgpack.packb([_fallback_json(value), text]))


def _packb(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, default=_pack_default, strict_types=True)
    return packed


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
        return _packb([SCHEMA_VERSION, kind, producer, seq, ts, experiment, trial, trial_dir, payload])
    except (ValueError, TypeError, OverflowError, UnicodeError, RecursionError):
        # A string with lone surrogates, a cycle, too deep a nest: keep the event, lose the value.
        safe = {"tunebus_unencodable": str(payload)[:65536]}
        return _packb([SCHEMA_VERSION, kind, producer, seq, ts, experiment, trial, trial_dir, safe])


class EventEncoder:
    """``encode_event`` with one msgpack Packer kept between calls (a third less time per event).

    For one thread: the driver's callback hooks, which Tune calls from its loop.
    """

    __slots__ = ("_pack",)

    def __init__(self) -> None:
        self._pack = msgpack.Packer(default=_pack_default, strict_types=True).pack

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
        size = len(_packb(value))
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


def _unpack_ext(code: int, data: bytes) -> Any:
    if code == EXT_NDARRAY:
        dtype_str, shape, raw = msgpack.unpackb(data)
        dtype = _wire_dtype(dtype_str)
        shape = tuple(int(n) for n in shape)
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise SchemaError("bad-array", f"{len(raw)} bytes do not fill {dtype_str}{shape}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    if code == EXT_NPSCALAR:
        dtype_str, raw = msgpack.unpackb(data)
        dtype = _wire_dtype(dtype_str)
        if dtype.itemsize != len(raw):
            raise SchemaError("bad-array", f"{len(raw)} bytes are not one {dtype_str}")
        return np.frombuffer(raw, dtype=dtype)[0]
    if code == EXT_OBJECT_ARRAY:
        return _object_array(_unpackb(data))
    if code == EXT_TUPLE:
        return tuple(_unpackb(data))
    if code == EXT_FALLBACK:
        json_text, text = msgpack.unpackb(data)
        if not (isinstance(json_text, str) and isinstance(text, str)):
            raise SchemaError("bad-type", "fallback texts must be strings")
        return Fallback(json_text, text)
    raise SchemaError("unknown-ext", f"extension type {code}")


def _object_array(data: Any) -> np.ndarray[Any, np.dtype[np.object_]]:
    """An array of dtype=object filled with already decoded items (no pickle, no numpy guessing)."""
    shape, items = data if isinstance(data, list) and len(data) == 2 else (None, None)
    if not (isinstance(shape, list) and isinstance(items, list)
            and all(type(n) is int and n >= 0 for n in shape) and math.prod(shape) == len(items)):
        raise SchemaError("bad-array", "an object array is [shape, items] with shape's count of items")
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array.reshape(shape)


def _wire_dtype(dtype_str: object) -> np.dtype[Any]:
    if not isinstance(dtype_str, str) or len(dtype_str) > 8:
        raise SchemaError("bad-array", f"dtype {dtype_str!r}")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise SchemaError("bad-array", f"dtype {dtype_str!r}") from exc
    if dtype.kind not in WIRE_DTYPE_KINDS or dtype.fields is not None:
        raise SchemaError("bad-array", f"dtype {dtype_str!r} may not travel")
    return dtype


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_unpack_ext, strict_map_key=False, raw=False)


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


def _unpack_checked(data: bytes) -> Any:
    """``data`` unpacked; any malformed byte string is a SchemaError, never another exception.

    With ormsgpack installed (the ``fast`` extra) it decodes first, in half msgpack's time; what
    it refuses (a fault, or a value only msgpack takes: a tuple as a map key) msgpack decodes.
    """
    if _fast_unpackb is not None:
        try:
            return _fast_unpackb(data, ext_hook=_unpack_ext, option=_FAST_OPTIONS)
        except Exception:  # noqa: BLE001, S110 - msgpack below names the fault, or takes the value
            pass
    try:
        return _unpackb(data)
    except SchemaError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed byte string is a fault, not a crash
        raise SchemaError("bad-msgpack", f"{type(exc).__name__}: {exc}"[:200]) from exc


def decode_event(data: bytes) -> Event:
    """One event that ``encode_event`` made; raises SchemaError if it is not one."""
    return _to_event(_unpack_checked(data))


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
        items = _unpack_checked(frame)
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
