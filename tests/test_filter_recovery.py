"""Filtered files across collector crashes: kill -9 and restarts write what an unbroken run writes."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import pytest

from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import free_address, run_cli, start_collector, wait_for
from pipeline.wire.codec import encode_event
from tests.readers import read_tensorboard

TRIALS = ("t1", "t2")
RESULTS = 1_200
CHUNKS = 3
CONFIG = """
[collect]
sinks = ["json", "csv", "tensorboard"]
log-interval-s = 0

[sinks.json]
filters = [{ smooth = "loss", coeff = 0.9 }, { aggregate = "loss|acc", window = 7 }]

[sinks.csv]
filters = ["none", { every_s = 2 }, { aggregate = "loss", window_s = 5 }, { smooth = "loss_mean" }]

[sinks.tensorboard]
filters = [
  { keep = ["loss", "acc"] },
  { smooth = "loss", coeff = 0.9 },
]
"""


def _stream() -> list[bytes]:
    """Two trials' start, interleaved results (event time 0.5 s apart, some NaN), their ends."""
    def event(seq: int, kind: str, trial: str, ts: float, payload: dict[str, object]) -> bytes:
        return encode_event(kind, "p", seq, ts, "exp", trial, f"{trial}_dir", payload)

    events = [(kind, t, 1000.0, {"config": {"k": t}}) for t in TRIALS for kind in ["trial_start"]]
    for i in range(RESULTS):
        for n, t in enumerate(TRIALS):
            loss = math.nan if i % 97 == 13 else 1.0 / (1 + i) + n + (i % 5) * 0.01
            events.append(("result", t, 1000.0 + 0.5 * i, {
                "loss": loss, "acc": i / RESULTS, "training_iteration": i + 1, "nested": {"loss": -loss}}))
    events += [("trial_complete", t, 1000.0 + 0.5 * RESULTS, {"evaluated_params": {"k": t}}) for t in TRIALS]
    return [event(seq, *e) for seq, e in enumerate(events)]


def _collect(out: Path, config: Path, kill: bool, tmp: Path) -> None:
    """Send the stream in chunks; with ``kill``, kill -9 the collector after each chunk's first rows."""
    address = free_address()
    procs = [start_collector(address, out, "--config", str(config))]
    sender = Sender(address, "p", SenderConfig(spool_dir=str(tmp / f"spool-{out.name}"), resend_after_s=0.5))
    stream = _stream()
    step = len(stream) // CHUNKS + 1
    try:
        for at in range(0, len(stream), step):
            for seq in range(at, min(at + step, len(stream))):
                sender.submit(seq, stream[seq])
            if kill and at + step < len(stream):  # mid-stream: later chunks are not even sent yet
                _wait_past(out, _rows(out))
                procs[-1].send_signal(signal.SIGKILL)
                procs[-1].wait(timeout=30)
                procs.append(start_collector(address, out, "--config", str(config)))
        assert sender.flush(120), "the collector never acknowledged the whole stream"
    finally:
        sender.close()
        procs[-1].send_signal(signal.SIGTERM)
        assert procs[-1].wait(timeout=60) == 0
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def _rows(out: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in out.glob("exp/*/result.json"))


def _wait_past(out: Path, rows: int) -> None:
    wait_for(lambda: _rows(out) > rows, 60, "rows of this chunk")


@pytest.mark.slow  # two runs of collector child processes
def test_kill_9_mid_stream_leaves_smoothed_and_aggregated_files_as_an_unbroken_run(tmp_path: Path) -> None:
    """Two kill -9s mid-stream: result.json, progress.csv and TensorBoard scalars equal an unbroken run's."""
    config = tmp_path / "collector.toml"
    config.write_text(CONFIG)
    unbroken, killed = tmp_path / "unbroken", tmp_path / "killed"
    _collect(unbroken, config, kill=False, tmp=tmp_path)
    _collect(killed, config, kill=True, tmp=tmp_path)
    for trial in TRIALS:
        for name in ("result.json", "progress.csv"):
            want = (unbroken / "exp" / f"{trial}_dir" / name).read_bytes()
            assert (killed / "exp" / f"{trial}_dir" / name).read_bytes() == want, f"{trial} {name}"
        scalars = read_tensorboard(killed / "exp" / f"{trial}_dir")["scalars"]
        assert scalars == read_tensorboard(unbroken / "exp" / f"{trial}_dir")["scalars"]
        assert sorted(scalars) == ["ray/tune/acc", "ray/tune/loss", "ray/tune/loss_smoothed_0.9"]
    rows = (unbroken / "exp" / "t1_dir" / "result.json").read_text().splitlines()
    assert len(rows) == math.ceil(RESULTS / 7) and '"loss_smoothed_0.9_mean"' in rows[0]


@pytest.mark.slow  # a collector child process
def test_a_wrong_filter_stops_the_collector_with_one_line(tmp_path: Path) -> None:
    """An unknown filter name in [sinks.<name>] is one line on stderr and exit status 2."""
    config = tmp_path / "bad.toml"
    config.write_text('[sinks.tensorboard]\nfilters = [{ smoth = "loss" }]\n')
    done = run_cli("collect", "--bind", free_address(), "--out", str(tmp_path / "out"), "--status-bind", "",
                   "--config", str(config))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "names no filter; name one of keep" in lines[0], done.stderr
