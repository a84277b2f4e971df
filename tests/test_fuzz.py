"""Hostile input: over 10,000 generated frames at a live collector, then a real sweep still logs."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ray import tune

from pipeline import BusCallback
from pipeline.collector.quarantine import read_quarantine
from pipeline.testing import dealer, free_address, start_collector, wait_for
from pipeline.wire.codec import encode_event, frame_events
from tests.trainables import until_told

pytestmark = pytest.mark.slow  # a collector child process fed generated frames for ~20 s

EXAMPLES, FRAMES_PER_EXAMPLE, VARIANTS = 60, 20, 10  # 12,000 frames
EVIL_NAMES = ["..", ".", "", "/etc", "a/b", "a\\b", "a\x00b", "x" * 300, "../../escape", "ok"]
KINDS = ["result", "trial_start", "trial_complete", "experiment_end", "setup", "bogus", 7]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
                    st.text(max_size=20), st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
names = st.sampled_from(EVIL_NAMES) | st.text(max_size=12)
events = st.builds(
    lambda v, k, s, e, t, d, p: [v, k, "fuzz", s, 0.0, e, t, d, p],
    st.sampled_from([1, 1, 1, 0, 2]), st.sampled_from(KINDS), st.integers(-5, 50),
    names, names, names, st.one_of(st.dictionaries(st.text(max_size=8), values, max_size=4), values))
near_valid = st.builds(lambda evs, base: msgpack.packb([1, "fuzz", base, evs], default=repr),
                       st.lists(events, max_size=3), st.integers(-1, 50))
valid = frame_events("fuzz", 0, [encode_event("result", "fuzz", 0, 0.0, "exp", "t", "d", {"a": 1})])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


frames = st.one_of(st.binary(max_size=300), near_valid, mutated(),
                   values.map(lambda v: msgpack.packb(v, default=repr)))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Any]]:
    """One collector for the whole fuzz run, and a raw socket to throw frames with."""
    root = tmp_path_factory.mktemp("fuzz")
    address = free_address()
    proc = start_collector(address, root / "out", "--log-level", "ERROR")
    with dealer(address, "fuzz", send_hwm=0) as sock:
        yield address, root, (proc, sock)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(batch=st.lists(frames, min_size=FRAMES_PER_EXAMPLE, max_size=FRAMES_PER_EXAMPLE),
       seed=st.integers(0, 2**32))
def test_generated_frames_never_stop_the_collector(live: tuple[str, Path, Any], batch: list[bytes],
                                                   seed: int) -> None:
    """Every generated frame, and byte-flipped cuts of it, is taken without crashing the collector."""
    _, _, (proc, sock) = live
    rng = random.Random(seed)
    for frame in batch:
        sock.send(frame)
        for _ in range(VARIANTS - 1):
            variant = bytearray(frame[: rng.randint(0, len(frame))])
            if variant:
                variant[rng.randrange(len(variant))] = rng.randrange(256)
            sock.send(bytes(variant))
    assert proc.poll() is None


def test_after_the_fuzz_a_real_sweep_logs_and_nothing_left_out(ray_session: None,
                                                               live: tuple[str, Path, Any]) -> None:
    """The fuzzed collector still writes a real sweep; nothing was written outside --out."""
    address, root, (proc, _) = live
    out = root / "out"
    quarantine = out / ".tunebus" / "quarantine.msgpack"
    wait_for(quarantine.exists, 60, "quarantined frames")
    stop_file = root / "stop"
    stop_file.touch()
    grid = tune.Tuner(
        until_told,
        param_space={"k": 1, "min_iters": 15, "stop_file": str(stop_file), "sleep_s": 0.0},
        run_config=tune.RunConfig(name="after_fuzz", storage_path=str(out), verbose=0,
                                  callbacks=[BusCallback(address, end_timeout_s=120)]),
    ).fit()
    assert proc.poll() is None
    wait_for(lambda: len(read_quarantine(quarantine)) > EXAMPLES * FRAMES_PER_EXAMPLE * VARIANTS // 2,
             120, "most fuzz frames quarantined")
    (result,) = list(grid)
    assert len(result.metrics_dataframe) == result.metrics["training_iteration"] >= 15
    assert sorted(p.name for p in root.iterdir()) == ["out", "stop"]
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
