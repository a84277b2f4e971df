"""ProducerStream: one id and sequence per shard, trials routed by shard_of, flush under one bound."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq

from pipeline.producer import stream as stream_module
from pipeline.producer.sender import Sender, SenderConfig
from pipeline.producer.stream import ProducerStream
from pipeline.testing import free_address, wait_for
from pipeline.wire.events import Kind
from pipeline.wire.shards import shard_of
from pipeline.wire.sockets import CurveKeys
from tests.shard_routers import ShardRouter

TRIALS = [f"trial_{i:05d}" for i in range(12)]
RESULT, SETUP = Kind.RESULT.value, Kind.SETUP.value


@pytest.fixture
def routers() -> Iterator[tuple[ShardRouter, ShardRouter]]:
    with ShardRouter() as first, ShardRouter() as second:
        yield first, second


def _config(tmp_path: Path) -> SenderConfig:
    return SenderConfig(spool_dir=str(tmp_path / "spool"))


def test_one_shard_keeps_the_stream_id_and_numbers_from_zero(tmp_path: Path) -> None:
    """With one address the producer id is the stream id itself and seqs run 0, 1, 2 on it."""
    with ShardRouter() as router:
        stream = ProducerStream("p.1", (router.address,), _config(tmp_path))
        for trial in ("", *TRIALS[:2]):
            stream.emit(RESULT if trial else SETUP, ("exp", trial, trial), {"x": 1})
        assert stream.streams == ("p.1",) and stream.flush(20.0)
        stream.close()
    assert [(e.producer, e.seq) for e in router.events] == [("p.1", 0), ("p.1", 1), ("p.1", 2)]


def test_trials_go_to_their_shard_and_experiment_events_to_every_shard(
        tmp_path: Path, routers: tuple[ShardRouter, ShardRouter]) -> None:
    """Each trial's events reach shard_of(trial, 2) only, on '<stream>.s<k>' numbered from 0 per shard."""
    stream = ProducerStream("p.2", [r.address for r in routers], _config(tmp_path))
    stream.emit(SETUP, ("", "", ""), {})
    for trial in TRIALS:
        stream.emit(RESULT, ("exp", trial, trial), {"x": 1})
    stream.emit(Kind.EXPERIMENT_END.value, ("exp", "", ""), {"trials": {}})
    assert stream.flush(20.0)
    stream.close()
    assert stream.streams == ("p.2.s0", "p.2.s1")
    for k, router in enumerate(routers):
        mine = [t for t in TRIALS if shard_of(t, 2) == k]
        assert [e.trial for e in router.events] == ["", *mine, ""]
        numbered = [(f"p.2.s{k}", i) for i in range(len(mine) + 2)]
        assert [(e.producer, e.seq) for e in router.events] == numbered


def test_flush_waits_once_for_all_shards_and_a_down_shard_spills_alone(
        tmp_path: Path, routers: tuple[ShardRouter, ShardRouter], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two shards nobody serves: flush(0.5) gives all shards 0.5 s in all; each keeps its own spool."""
    up = routers[0]
    down = (free_address(), free_address())
    stream = ProducerStream("p.3", (up.address, *down), _config(tmp_path))
    for trial in TRIALS:
        stream.emit(RESULT, ("exp", trial, trial), {"x": 1})
    wait_for(lambda: stream.unheard() == down, 30, "the shard that is up to confirm")
    given: list[float] = []
    clock = [100.0]

    def flush_spending_all(sender: Sender, timeout_s: float) -> bool:  # a shard that never confirms
        given.append(timeout_s)
        clock[0] += timeout_s
        return False

    with monkeypatch.context() as patched:  # a clock only the senders' waits move: no wall time measured
        patched.setattr(stream_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
        patched.setattr(Sender, "flush", flush_spending_all)
        assert not stream.flush(0.5)
    assert len(given) == len(stream.senders) == 3
    assert sum(given) == pytest.approx(0.5)  # one bound for the whole flush, not one per shard
    assert stream.unheard() == down and set(stream.pending()) == set(down)
    assert not stream.close()
    saved = sorted(p.name for p in (tmp_path / "spool").glob("*.spool"))
    assert saved == [f"p.3.s{k}.spool" for k in (1, 2) if any(shard_of(t, 3) == k for t in TRIALS)]
    assert [e.trial for e in up.events] == [t for t in TRIALS if shard_of(t, 3) == 0]


def test_a_stream_closed_then_used_again_numbers_on(tmp_path: Path) -> None:
    """close() stops the senders; a later event starts one again with the next seq, not 0 (no repeat)."""
    with ShardRouter() as router:
        stream = ProducerStream("p.4", (router.address,), _config(tmp_path))
        stream.emit(RESULT, ("exp", "t", "t"), {})
        assert stream.close(20.0) and stream.senders == ()
        stream.emit(RESULT, ("exp", "t", "t"), {})
        assert stream.close(20.0)
    assert [e.seq for e in router.events] == [0, 1]


def test_a_failed_sender_drops_and_counts_instead_of_raising(tmp_path: Path) -> None:
    """A sender whose thread failed (Curve keys without the server's) makes emit count a drop."""
    public, secret = zmq.curve_keypair()
    stream = ProducerStream("p.5", ("tcp://127.0.0.1:1",), _config(tmp_path), CurveKeys(public, secret, None))
    stream.emit(RESULT, ("exp", "t", "t"), {})
    wait_for(lambda: not stream.senders[0].running, 20, "the sender to fail")
    before = stream.dropped  # the first event too, when the thread failed before it came
    stream.emit(RESULT, ("exp", "t", "t"), {})  # would raise RuntimeError without the guard
    assert stream.dropped == before + 1
    stream.close()


def test_no_address_is_refused() -> None:
    """A stream needs somewhere to send: an empty address list is a ValueError."""
    with pytest.raises(ValueError, match="at least one address"):
        ProducerStream("p", (), SenderConfig())
