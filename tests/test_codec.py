"""The wire codec: values survive the trip, bad frames become faults, never exceptions."""

from __future__ import annotations

import datetime
import enum
import math

import msgpack
import numpy as np
import pytest

from pipeline.wire import values
from pipeline.wire.codec import (
    EventEncoder,
    Fallback,
    decode_control,
    decode_event,
    decode_frame,
    encode_control,
    encode_event,
    encode_stored,
    frame_events,
)
from pipeline.wire.events import Event, SchemaError


def _trip(payload: dict[str, object]) -> dict[str, object]:
    frame = frame_events("p", 0, [encode_event("result", "p", 0, 1.5, "e", "t", "d", payload)])
    decoded = decode_frame(frame)
    assert decoded.faults == []
    return decoded.events[0].payload


def test_event_fields_round_trip() -> None:
    """Every header field of an event arrives as sent."""
    frame = frame_events("prod", 4, [encode_event("trial_start", "prod", 7, 2.5, "exp", "tid", "tdir", {})])
    decoded = decode_frame(frame)
    event = decoded.events[0]
    assert (decoded.producer, decoded.base) == ("prod", 4)
    assert (event.kind, event.producer, event.seq, event.ts) == ("trial_start", "prod", 7, 2.5)
    assert (event.experiment, event.trial, event.trial_dir) == ("exp", "tid", "tdir")


def test_numpy_arrays_keep_dtype_shape_and_bytes() -> None:
    """Images, videos and histograms arrive as the same typed arrays."""
    image = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    video = np.random.default_rng(0).random((1, 2, 3, 4, 4)).astype(np.float32)
    got = _trip({"image": image, "video": video, "empty": np.zeros((0,), np.int64)})
    for key, want in (("image", image), ("video", video)):
        assert isinstance(got[key], np.ndarray)
        assert got[key].dtype == want.dtype and got[key].shape == want.shape
        assert np.array_equal(got[key], want)
    assert got["empty"].shape == (0,)


def test_numpy_scalars_nan_and_infinities_survive() -> None:
    """numpy scalars keep their type; NaN and infinities stay what they were."""
    got = _trip({"f32": np.float32(0.1), "f64": np.float64(0.25), "i64": np.int64(3),
                 "b": np.bool_(True), "nan": float("nan"), "nan32": np.float32("nan"),
                 "inf": float("inf"), "ninf": -math.inf})
    assert type(got["f32"]) is np.float32 and got["f32"] == np.float32(0.1)
    assert type(got["f64"]) is np.float64 and type(got["i64"]) is np.int64
    assert type(got["b"]) is np.bool_
    assert math.isnan(got["nan"]) and np.isnan(got["nan32"]) and type(got["nan32"]) is np.float32
    assert got["inf"] == math.inf and got["ninf"] == -math.inf


def test_tuples_and_unencodable_values_are_carried_as_tune_writes_them() -> None:
    """A tuple stays a tuple; a datetime becomes the text Tune's encoder would write."""
    when = datetime.datetime(2026, 1, 2, 3, 4, 5)
    got = _trip({"t": (1, 2), "when": when, "big": 2**70, "s": {1, 2}})
    assert got["t"] == (1, 2) and type(got["t"]) is tuple
    assert got["when"] == Fallback(f'"{when}"', str(when))
    assert isinstance(got["big"], Fallback) and got["big"].text == str(2**70)
    assert got["s"].text == "{1, 2}"


class _Mode(str, enum.Enum):
    FAST = "fast"


class _Level(enum.IntEnum):
    HIGH = 3


class _Meters(float):
    pass


def test_subclasses_of_builtins_travel_as_their_base_types_value() -> None:
    """A (str, Enum), an IntEnum and a float subclass arrive as 'fast', 3 and 1.5, as values and keys."""
    got = _trip({"mode": _Mode.FAST, "level": _Level.HIGH, "width": _Meters(1.5),
                 "keys": {_Mode.FAST: 1, _Level.HIGH: 2}, "huge": _Level.HIGH * 2**70,
                 "config": {"nested": [_Mode.FAST, (_Level.HIGH,)]}})
    assert (got["mode"], got["level"], got["width"]) == ("fast", 3, 1.5)
    assert [type(got[k]) for k in ("mode", "level", "width")] == [str, int, float]
    assert got["keys"] == {"fast": 1, 3: 2} and [type(k) for k in got["keys"]] == [str, int]
    assert got["config"] == {"nested": ["fast", (3,)]}
    assert isinstance(got["huge"], Fallback) and got["huge"].text == str(3 * 2**70)


class _Huge(enum.IntEnum):
    BIG = 2**70


def test_an_int_subclass_past_64_bits_costs_only_its_own_value() -> None:
    """An IntEnum past 64 bits travels as text; the rest of the payload arrives as sent."""
    got = _trip({"big": _Huge.BIG, "b": 1})
    assert got["b"] == 1 and isinstance(got["big"], Fallback) and got["big"].text == str(_Huge.BIG)


def test_an_object_array_that_holds_itself_is_noted_not_raised() -> None:
    """A cyclic object array gives the unencodable note, from both encoders, instead of an error."""
    cyclic = np.empty(1, dtype=object)
    cyclic[0] = cyclic
    assert "tunebus_unencodable" in _trip({"x": cyclic})
    packed = EventEncoder().encode("result", "p", 0, 1.5, "e", "t", "d", {"x": cyclic})
    assert "tunebus_unencodable" in decode_event(packed).payload


def test_an_object_array_arrives_as_an_object_array_of_its_items() -> None:
    """dtype=object keeps its shape and items (numbers, strings, odd values), packed, never pickled."""
    when = datetime.datetime(2026, 1, 2)
    sent = np.array([[1, 2.5, "x"], [None, when, _Level.HIGH]], dtype=object)
    got = _trip({"objects": sent, "empty": np.empty((0, 2), dtype=object)})["objects"]
    assert isinstance(got, np.ndarray) and got.dtype == object and got.shape == (2, 3)
    assert got[0].tolist() == [1, 2.5, "x"] and got[1, 0] is None and got[1, 2] == 3
    assert got[1, 1] == Fallback(f'"{when}"', str(when))
    assert _trip({"empty": np.empty((0, 2), dtype=object)})["empty"].shape == (0, 2)


def test_encoding_never_raises_in_the_driver() -> None:
    """A cyclic payload still encodes (its value is replaced by a marker), never crashing Tune."""
    cyclic: list[object] = []
    cyclic.append(cyclic)
    got = _trip({"cycle": cyclic})
    assert "tunebus_unencodable" in got


def test_the_reused_packer_encodes_as_encode_event_even_after_a_failure() -> None:
    """EventEncoder gives encode_event's bytes for plain, odd and unencodable payloads, in any order."""
    cyclic: list[object] = []
    cyclic.append(cyclic)
    payloads: list[dict[str, object]] = [
        {"loss": 0.5, "nested": {"a": [1, (2, 3)]}}, {"bad": "\ud800"}, {"f32": np.float32(0.1)},
        {"cycle": cyclic}, {"mode": _Mode.FAST, "big": 2**70, "arr": np.arange(3)}, {"loss": 0.25}]
    encoder = EventEncoder()
    for seq, payload in enumerate(payloads * 2):
        head = ("result", "p", seq, 1.5, "e", "t", "d")
        assert encoder.encode(*head, payload) == encode_event(*head, payload)


@pytest.mark.parametrize("frame,fault", [
    (b"\xc1", "bad-msgpack"),
    (msgpack.packb([1, "p", 0]), "bad-shape"),
    (msgpack.packb([9, "p", 0, []]), "unknown-version"),
    (msgpack.packb([1, "", 0, []]), "bad-type"),
    (msgpack.packb([1, "p", 0, [[2, "result"]]]), "unknown-version"),
    (msgpack.packb([1, "p", 0, [[1, "result", "p", -1, 0.0, "e", "t", "d", {}]]]), "bad-type"),
    (msgpack.packb([1, "p", 0, [[1, "result", "p", 1, 0.0, "..", "t", "d", {}]]]), "bad-name"),
    (msgpack.packb([1, "p", 0, [[1, "result", "q", 1, 0.0, "e", "t", "d", {}]]]), "producer-mismatch"),
    (msgpack.packb([1, "p", 0, [[1, "result", "p", 1, 0.0, "e", "t", "d", []]]]), "bad-type"),
    (msgpack.packb([1, "p", 0, [[1, "result", "p", 1, 0.0, "e", "t", "", {}]]]), "bad-name"),
    (msgpack.packb([1, "p", 0, [[1, ["result"], "p", 1, 0.0, "e", "t", "d", {}]]]), "unknown-kind"),
    (msgpack.packb([1, "p", 0, [[1, "result", "p", 1, 0.0, "e", ["t"], "d", {}]]]), "bad-type"),
    (msgpack.packb([1, "p", 0, [[1, "result", "p", 1, 0.0, "e", "t", "d",
                                 {"x": msgpack.ExtType(1, msgpack.packb(["|O", [1], b"x"]))}]]]),
     "bad-array"),
    (msgpack.packb([1, "p", 0, [[1, "result", "p", 1, 0.0, "e", "t", "d",
                                 {"x": msgpack.ExtType(1, msgpack.packb(["<f8", [2], b"x"]))}]]]),
     "bad-array"),
    (msgpack.packb([1, "p", 0, [[1, "result", "p", 1, 0.0, "e", "t", "d",
                                 {"x": msgpack.ExtType(5, msgpack.packb([[3], [1, 2]]))}]]]),
     "bad-array"),
    (msgpack.packb([1, "p", 0, [[1, "result", "p", 1, 0.0, "e", "t", "d",
                                 {"x": msgpack.ExtType(5, msgpack.packb([[-1], []]))}]]]),
     "bad-array"),
])
def test_malformed_frames_become_faults(frame: bytes, fault: str) -> None:
    """Each kind of malformed input is named, not raised."""
    decoded = decode_frame(frame)
    assert decoded.events == []
    assert [f.fault for f in decoded.faults] == [fault]


_ARRAY_OF_RESULT = msgpack.ExtType(1, msgpack.packb(["<U6", [1], np.array(["result"]).tobytes()]))
"""A numpy array that equals "result" element-wise: never a name, however it compares."""


def test_an_event_repeating_checked_names_still_has_every_other_field_checked() -> None:
    """Names seen before skip their checks; a bad version, seq, ts, payload or producer is still a fault."""
    head = ["e", "t", "d"]
    items = [[1, "result", "p", 0, 0.0, *head, {}], [1, _ARRAY_OF_RESULT, "p", 1, 0.0, *head, {}],
             [1, "result", "p", 1, 0.0, "e", _ARRAY_OF_RESULT, "d", {}],
             [2, "result", "p", 1, 0.0, *head, {}],
             [1, "result", "p", -1, 0.0, *head, {}], [1, "result", "p", 1.0, 0.0, *head, {}],
             [1, "result", "p", 1, "0", *head, {}], [1, "result", "p", 1, 0.0, *head, []],
             [1, "result", "q", 1, 0.0, *head, {}], [1, "result", "p", 1, 2, *head, {"a": 1}]]
    decoded = decode_frame(msgpack.packb([1, "p", 0, items]))
    assert [f.fault for f in decoded.faults] == ["unknown-kind", "bad-type", "unknown-version", "bad-type",
                                                 "bad-type", "bad-type", "bad-type", "producer-mismatch"]
    assert decoded.events == [Event("result", "p", 0, 0.0, *head, {}),
                              Event("result", "p", 1, 2.0, *head, {"a": 1})]
    assert type(decoded.events[1].ts) is float


@pytest.mark.parametrize("ext", [msgpack.ExtType(1, msgpack.packb(["|O", [1], b"x" * 8])),
                                 msgpack.ExtType(2, msgpack.packb(["|O", b"x" * 8]))],
                         ids=["array", "scalar"])
def test_object_dtype_is_refused_on_the_wire(ext: msgpack.ExtType) -> None:
    """An array or scalar of Python objects would need pickle; the decoder refuses its dtype."""
    event = msgpack.packb([1, "result", "p", 1, 0.0, "e", "t", "d", {"x": ext}])
    with pytest.raises(SchemaError, match=r"bad-array: dtype '\|O' may not travel"):
        decode_event(event)


def test_control_messages_round_trip() -> None:
    """ack and nack decode to their kind and sequence number."""
    assert decode_control(encode_control("ack", 41)) == ("ack", [41])
    with pytest.raises(SchemaError, match="bad-msgpack"):
        decode_control(b"\x93")


def test_an_event_over_the_size_limit_travels_with_its_bulky_values_noted() -> None:
    """Past max_bytes the big array becomes a note of its size; the scalars of the row still arrive."""
    big = np.zeros(300_000, dtype=np.float64)  # 2.4 MB
    event = Event("result", "p", 0, 1.5, "e", "t", "d", {"loss": 0.5, "nest": {"frames": big, "k": "small"}})
    encoded = encode_stored(event, max_bytes=1 << 20)
    assert len(encoded) <= 1 << 20
    payload = decode_frame(frame_events("p", 0, [encoded])).events[0].payload
    assert payload["loss"] == 0.5 and payload["nest"]["k"] == "small"
    note = payload["nest"]["frames"]
    assert isinstance(note, Fallback) and "ndarray of 2400" in note.text


def test_an_event_of_many_middling_values_over_the_limit_is_still_an_event() -> None:
    """When no single value is to blame the payload becomes one note; the event keeps its place."""
    payload = {f"k{i}": "x" * 900 for i in range(2_000)}
    encoded = encode_stored(Event("result", "p", 3, 1.5, "e", "t", "d", payload), max_bytes=64 * 1024)
    event = decode_frame(frame_events("p", 3, [encoded])).events[0]
    assert event.seq == 3 and list(event.payload) == ["tunebus_oversized"]
    assert encode_event("result", "p", 3, 1.5, "e", "t", "d", payload) != encoded  # no limit: all of it


_ODD_PAYLOADS = [
    {"ints": {1: "a", -5: "b", 2**63: "c"}, "bytes": {b"x": b"\x00"}, "floats": {1.5: True, None: None}},
    {"tuple_key": {(1, (2, "x")): "t"}, "nested": [(1,), [(2, 3)], {"d": ()}]},
    {"arrays": np.arange(6.0).reshape(2, 3), "f32": np.float32(1.5),
     "objects": np.array([1, "x"], dtype=object)},
    {"nan": math.nan, "inf": -math.inf, "big": 2**64 - 1, "small": -(2**63), "text": "é" * 300},
    {"fallback": datetime.date(2026, 1, 2), "deep": [[[[[[{"a": [1]}]]]]]], "empty": {}},
]


@pytest.mark.parametrize("payload", _ODD_PAYLOADS)
def test_the_fast_decoder_decodes_as_msgpack_does(payload: dict[str, object],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With ormsgpack installed, every value arrives as msgpack alone decodes it (type and value)."""
    pytest.importorskip("ormsgpack")
    frame = frame_events("p", 0, [encode_event("result", "p", 0, 1.5, "e", "t", "d", payload)])
    fast = decode_frame(frame)
    monkeypatch.setattr(values, "_fast_unpackb", None)
    plain = decode_frame(frame)
    assert fast.faults == plain.faults == []
    assert repr(fast.events) == repr(plain.events)
    assert _types(fast.events[0].payload) == _types(plain.events[0].payload)


def _types(value: object) -> object:
    if isinstance(value, dict):
        return {repr(k): (type(k), _types(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value), [_types(v) for v in value])
    return type(value)


@pytest.mark.parametrize("frame", [
    msgpack.packb([1, "p", 0, [[1, "result", "p", 0, 0.0, "e", "t", "d", msgpack.Timestamp(1, 2)]]]),
    msgpack.packb([1, "p", 0, [[1, "result", "p", 0, 0.0, "e", "t", "d", {"x": msgpack.ExtType(42, b"")}]]]),
    b"\x94\x01\xa1p\x00\x91\xff",
])
def test_what_the_fast_decoder_refuses_msgpack_judges(frame: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame ormsgpack refuses gets msgpack's verdict: the same fault, or the same value."""
    pytest.importorskip("ormsgpack")
    fast = decode_frame(frame)
    monkeypatch.setattr(values, "_fast_unpackb", None)
    plain = decode_frame(frame)
    assert [f.fault for f in fast.faults] == [f.fault for f in plain.faults]
    assert repr(fast.events) == repr(plain.events)
