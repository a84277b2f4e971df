"""How values travel: msgpack with five extension types (numpy arrays and scalars, tuples,
Tune's fallback text, object arrays), packed and unpacked, every extension checked."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import numpy as np

try:
    import ormsgpack
except ImportError:  # the ``fast`` extra: without it msgpack decodes every frame
    ormsgpack = None  # type: ignore[assignment]

from pipeline.wire.events import Fallback, SchemaError

__all__ = ["EXT_FALLBACK", "EXT_NDARRAY", "EXT_NPSCALAR", "EXT_OBJECT_ARRAY", "EXT_TUPLE", "WIRE_DTYPE_KINDS",
           "pack_default", "packb", "unpack_checked", "unpackb"]

EXT_NDARRAY = 1  # [dtype.str, shape, raw bytes in C order]
EXT_NPSCALAR = 2  # [dtype.str, raw bytes]
EXT_TUPLE = 3  # packed list of the items
EXT_FALLBACK = 4  # [JSON text Tune's SafeFallbackEncoder writes, str(value)]
EXT_OBJECT_ARRAY = 5  # [shape, [items in C order]]: each item packed as any value is, never pickled

# Numeric, bool, bytes and unicode dtypes travel; object and structured dtypes never do.
WIRE_DTYPE_KINDS = frozenset("biufcSU")
_fast_unpackb = ormsgpack.unpackb if ormsgpack is not None else None
_FAST_OPTIONS = ormsgpack.OPT_NON_STR_KEYS if ormsgpack is not None else 0


def _fallback_json(value: Any) -> str:
    try:
        from ray.tune.utils.util import SafeFallbackEncoder  # type: ignore[attr-defined]
    except ImportError:  # a producer without Ray: the plain text is what Tune would fall back to
        return json.dumps(str(value))
    try:
        return json.dumps(value, cls=SafeFallbackEncoder)
    except Exception:  # noqa: BLE001 - Tune's encoder itself gives up with str()
        return json.dumps(str(value))


def pack_default(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype.kind in WIRE_DTYPE_KINDS:
        data = [value.dtype.str, list(value.shape), np.ascontiguousarray(value).tobytes()]
        return msgpack.ExtType(EXT_NDARRAY, msgpack.packb(data))
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return msgpack.ExtType(EXT_OBJECT_ARRAY, packb([list(value.shape), value.ravel().tolist()]))
    if isinstance(value, np.generic) and value.dtype.kind in WIRE_DTYPE_KINDS:
        return msgpack.ExtType(EXT_NPSCALAR, msgpack.packb([value.dtype.str, value.tobytes()]))
    if isinstance(value, Fallback):
        return msgpack.ExtType(EXT_FALLBACK, msgpack.packb([value.json, value.text]))
    if isinstance(value, tuple) and type(value) is tuple:
        return msgpack.ExtType(EXT_TUPLE, packb(list(value)))
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


def packb(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, default=pack_default, strict_types=True)
    return packed


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
        return _object_array(unpackb(data))
    if code == EXT_TUPLE:
        return tuple(unpackb(data))
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


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_unpack_ext, strict_map_key=False, raw=False)


def unpack_checked(data: bytes) -> Any:
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
        return unpackb(data)
    except SchemaError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed byte string is a fault, not a crash
        raise SchemaError("bad-msgpack", f"{type(exc).__name__}: {exc}"[:200]) from exc
