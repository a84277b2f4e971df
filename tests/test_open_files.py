"""The open-file budget: few files open, reopened to append, EMFILE taken as back-pressure."""

from __future__ import annotations

import csv
import errno
import json
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest
from tensorboardX.proto.event_pb2 import Event as TbEvent

from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import event
from pipeline.wire.codec import encode_event
from sinks import make_sink
from sinks.base import TrialFiles, close_all, deliver
from sinks.open_files import OpenFiles, PooledFile
from sinks.tb_events import FILE_SUFFIX, read_records

TRIALS = 1_000
RESULTS = 3
FILE_LIMIT = 256


def test_files_past_the_limit_are_closed_and_reopened_to_append(tmp_path: Path) -> None:
    """Five files through a budget of two: never more than two open, every byte where it was written."""
    pool = OpenFiles(2)
    files = [pool.open(tmp_path / f"{i}.txt", "a", newline="") for i in range(5)]
    for row in range(3):
        for i, f in enumerate(files):
            f.write(f"{i},{row}\r\n")
            assert len(pool) <= 2
    for f in files:
        f.close()
        f.close()
    assert [(tmp_path / f"{i}.txt").read_bytes() for i in range(5)] == [
        b"".join(f"{i},{row}\r\n".encode() for row in range(3)) for i in range(5)]
    assert pool.reopened > 0 and len(pool) == 0


def test_running_out_of_descriptors_closes_the_oldest_and_retries(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """EMFILE on open closes the least recently used file and opens again, instead of failing."""
    pool = OpenFiles(10)
    first = pool.open(tmp_path / "a", "ab")
    first.write(b"a")
    opened = PooledFile.open_with
    refusals = iter([OSError(errno.EMFILE, "Too many open files")])

    def refuse_once(self: PooledFile, mode: str) -> IO[Any]:
        error = next(refusals, None)
        if error is not None:
            raise error
        return opened(self, mode)

    monkeypatch.setattr(PooledFile, "open_with", refuse_once)
    second = pool.open(tmp_path / "b", "xb")
    assert first.file is None and len(pool) == 1  # the oldest made room
    second.write(b"b")
    first.write(b"a")
    for f in (first, second):
        f.close()
    assert ((tmp_path / "a").read_bytes(), (tmp_path / "b").read_bytes()) == (b"aa", b"b")


def _sink_files(tmp_path: Path, name: str, budget: int) -> dict[str, bytes]:
    """Five interleaved trials (a column arriving late) through sink ``name`` holding ``budget`` files."""
    out = tmp_path / f"{name}-{budget}"
    sink, files = make_sink(name, out), TrialFiles(out)
    sink.files = OpenFiles(budget)
    events = [event("trial_start", {"config": {"k": t}}, seq=t, trial=f"t{t}") for t in range(5)]
    events += [event("result", {"training_iteration": n + 1, "loss": n / 3, **({"late": n} if n > 2 else {})},
                     seq=10 + 5 * n + t, trial=f"t{t}") for n in range(6) for t in range(5)]
    for at in range(0, len(events), 7):
        deliver(sink, events[at:at + 7], files)
    close_all(sink, files)
    # An event file's name holds the second it was made: the two runs may straddle one.
    return {re.sub(r"tfevents\.\d+\.", "tfevents.T.", str(p.relative_to(out))): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["json", "csv", "tensorboard"])
def test_a_sink_holding_one_file_writes_what_it_writes_holding_all(tmp_path: Path, name: str) -> None:
    """Files closed and reopened all the time (CSV widened, one TensorBoard file per trial): the same."""
    few, many = _sink_files(tmp_path, name, 1), _sink_files(tmp_path, name, 100)
    assert few.keys() == many.keys() and len(few) >= 5
    if name != "tensorboard":  # event files hold wall times
        assert few == many
    else:
        assert [len(v) for v in few.values()] == [len(v) for v in many.values()]


@pytest.mark.parametrize("name", ["json", "csv"])
def test_a_batch_for_one_trial_reopens_at_most_its_file(tmp_path: Path, name: str) -> None:
    """200 open trials on a budget of 16: writing one of them does not open the others again."""
    sink, trials = make_sink(name, tmp_path), TrialFiles(tmp_path)
    sink.files = OpenFiles(16)
    deliver(sink, [event("trial_start", trial=f"t{i}", seq=i) for i in range(200)], trials)
    deliver(sink, [event("result", {"training_iteration": 1}, trial=f"t{i}", seq=200 + i)
                   for i in range(200)], trials)
    before = sink.files.reopened
    deliver(sink, [event("result", {"training_iteration": 2}, trial="t7", seq=400)], trials)
    assert sink.files.reopened - before <= 1
    close_all(sink, trials)


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


def _events(producer: str) -> list[bytes]:
    """1,000 trials started, then their results interleaved, then every trial completed."""
    heads = [("e", f"t{i:04d}", f"trial_{i:04d}") for i in range(TRIALS)]
    kinds: list[tuple[str, tuple[str, str, str], dict[str, Any]]] = [
        ("trial_start", h, {"config": {"k": i}}) for i, h in enumerate(heads)]
    kinds += [("result", h, {"training_iteration": n + 1, "loss": i + n / 10})
              for n in range(RESULTS) for i, h in enumerate(heads)]
    kinds += [("trial_complete", h, {}) for h in heads]
    return [encode_event(kind, producer, seq, 1.0, *head, payload)
            for seq, (kind, head, payload) in enumerate(kinds)]


@pytest.mark.slow
def test_a_thousand_open_trials_under_256_descriptors_write_every_row(tmp_path: Path, address: str) -> None:
    """A real collector limited to 256 files: every row of 1,000 open trials in JSON, CSV and TensorBoard."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.entry.cli", "collect", "--bind", address, "--out", str(out),
           "--status-bind", "", "--sinks", "json,csv,tensorboard", "--log-level", "WARNING"]
    collector = subprocess.Popen(cmd, preexec_fn=_limit_files)
    sender = Sender(address, "p", SenderConfig(spool_dir=str(tmp_path / "spool")))
    try:
        for seq, encoded in enumerate(_events("p")):
            sender.submit(seq, encoded)
        assert sender.flush(240), "the collector did not acknowledge every event"
    finally:
        sender.close()
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=60)
    for i in range(TRIALS):
        trial = out / "e" / f"trial_{i:04d}"
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        assert [r["loss"] for r in rows] == [i + n / 10 for n in range(RESULTS)]
        with (trial / "progress.csv").open(newline="") as f:
            assert [float(r["loss"]) for r in csv.DictReader(f)] == [i + n / 10 for n in range(RESULTS)]
        (event_file,) = trial.glob(f"events.out.tfevents.*{FILE_SUFFIX}*")
        steps = [e.step for e in map(TbEvent.FromString, read_records(event_file))
                 if any(v.tag == "ray/tune/loss" for v in e.summary.value)]
        assert steps == [n + 1 for n in range(RESULTS)]
