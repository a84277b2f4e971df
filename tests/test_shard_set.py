"""tunebus collect --shards N: ports per shard, one shard's kill -9 survived exactly once, status, stop."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.collector.config import CollectorConfig
from pipeline.entry.child_process import RESTARTS, RestartPolicy
from pipeline.entry.shard_set import ShardPlan, ShardSet, child_argv, plan_shards
from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import free_ports, run_cli, start_shard_set, wait_for
from pipeline.wire.codec import encode_event
from pipeline.wire.shards import shard_of

TRIALS = tuple(f"t{n}" for n in range(6))
RESULTS = 400


def test_shard_k_binds_every_port_plus_k() -> None:
    """Bus, status and metrics ports go up by the shard's index; an ipc path gets .k; each child the map."""
    config = CollectorConfig(bind="tcp://0.0.0.0:6000", status_bind="ipc:///tmp/tb-status", metrics_port=9100)
    plan = plan_shards(config, 3)
    assert plan.binds == ("tcp://0.0.0.0:6000", "tcp://0.0.0.0:6001", "tcp://0.0.0.0:6002")
    assert plan.status_binds == ("ipc:///tmp/tb-status", "ipc:///tmp/tb-status.1", "ipc:///tmp/tb-status.2")
    assert plan.metrics_ports == (9100, 9101, 9102)
    assert plan.overrides(2) == ["--bind", "tcp://0.0.0.0:6002", "--status-bind", "ipc:///tmp/tb-status.2",
                                 "--shard-index", "2", "--shard-addresses", ",".join(plan.binds),
                                 "--shard-status-addresses", ",".join(plan.status_binds),
                                 "--metrics-port", "9102"]
    assert plan_shards(CollectorConfig(status_bind=""), 2).overrides(1)[:4] == [
        "--bind", "tcp://127.0.0.1:5556", "--status-bind", ""]


@pytest.mark.parametrize(("given", "says"), [
    ({"bind": "tcp://127.0.0.1:0"}, "--bind tcp://127.0.0.1:0: --shards needs a fixed port"),
    ({"status_bind": "tcp://127.0.0.1:0"}, "--status-bind tcp://127.0.0.1:0: --shards needs a fixed port"),
    ({"metrics_port": 0}, "--metrics-port 0: --shards needs a fixed port"),
    ({"bind": "inproc://bus"}, "--shards needs tcp:// or ipc:// addresses"),
    ({}, "tcp://127.0.0.1:5556 would be both a shard's bus and another's status socket"),
    ({"shard_addresses": ("tcp://a:1", "tcp://a:2")}, "--shards sets --shard-index"),
])
def test_a_set_of_shards_refuses_what_it_cannot_number(given: dict[str, object], says: str) -> None:
    """Port 0 (the others could not be found from the first), inproc, and a hand-made map are refused."""
    with pytest.raises(ValueError, match=says):
        plan_shards(CollectorConfig.from_flat(**given), 2)


def test_a_child_gets_the_flags_as_typed_without_shards() -> None:
    """--shards N and --shards=N are taken out; every other flag goes to each child as typed."""
    assert child_argv(["--out", "x", "--shards", "2", "--sinks", "json", "--shards=3"]) == [
        "--out", "x", "--sinks", "json"]


def _events(stream: int) -> list[bytes]:
    """The starts, interleaved results and ends of the trials shard ``stream`` of 2 owns, sequenced."""
    producer = f"p.s{stream}"
    mine = [t for t in TRIALS if shard_of(t, 2) == stream]
    items: list[tuple[str, str, dict[str, object]]] = [("trial_start", t, {"config": {"t": t}}) for t in mine]
    items += [("result", t, {"i": i, "training_iteration": i + 1}) for i in range(RESULTS) for t in mine]
    items += [("trial_complete", t, {}) for t in mine]
    return [encode_event(kind, producer, seq, 1000.0 + seq, "exp", t, f"{t}_dir", payload)
            for seq, (kind, t, payload) in enumerate(items)]


def _rows(out: Path, trials: list[str]) -> int:
    return sum(len(p.read_bytes().splitlines()) for t in trials
               for p in [out / "exp" / f"{t}_dir" / "result.json"] if p.exists())


def _lock_pid(out: Path, shard: int) -> int:
    text = (out / ".tunebus" / f"shard-{shard}" / "collector.lock").read_text().split()
    return int(text[0]) if text else 0


@pytest.mark.slow  # a supervisor and its collector child processes
def test_kill_9_of_one_shard_is_restarted_and_every_row_is_written_once(tmp_path: Path) -> None:
    """Shard 1 killed mid-stream: the set restarts it, each file holds every row once; status, stop."""
    assert {shard_of(t, 2) for t in TRIALS} == {0, 1}
    bus, status = free_ports(2), free_ports(2)
    out = tmp_path / "out"
    supervisor = start_shard_set(out, 2, bus, status)
    streams = [_events(0), _events(1)]
    senders = [Sender(f"tcp://127.0.0.1:{bus + k}", f"p.s{k}",
                      SenderConfig(spool_dir=str(tmp_path / "spool"), resend_after_s=0.5)) for k in (0, 1)]
    theirs = [t for t in TRIALS if shard_of(t, 2) == 1]
    try:
        for sender, stream in zip(senders, streams):
            for seq, encoded in enumerate(stream[:len(stream) // 2]):
                sender.submit(seq, encoded)
        wait_for(lambda: _rows(out, theirs) > 0 and _lock_pid(out, 1), 60, "shard 1 to write rows")
        killed = _lock_pid(out, 1)
        subprocess.run(["kill", "-9", str(killed)], check=True)
        for sender, stream in zip(senders, streams):
            for seq in range(len(stream) // 2, len(stream)):
                sender.submit(seq, stream[seq])
        assert all(sender.flush(120) for sender in senders), "the shards never acknowledged every event"
        assert _lock_pid(out, 1) != killed

        shown = run_cli("status", f"tcp://127.0.0.1:{status}")
        assert shown.returncode == 0, shown.stderr
        assert "2 shards, 2 answering" in shown.stdout
        assert f"shard 1 of 2, status tcp://127.0.0.1:{status + 1}" in shown.stdout
        stopped = run_cli("stop", f"tcp://127.0.0.1:{status}")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert stopped.stdout.count("wrote everything it held and stopped") == 2
        assert supervisor.wait(timeout=60) == 0
    finally:
        for sender in senders:
            sender.close()
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(timeout=60)
    assert json.loads((out / ".tunebus" / "shards.json").read_text()) == {"count": 2}
    for trial in TRIALS:
        trial_dir = out / "exp" / f"{trial}_dir"
        rows = [json.loads(line)["i"] for line in (trial_dir / "result.json").read_text().splitlines()]
        assert rows == list(range(RESULTS)), trial
        with (trial_dir / "progress.csv").open() as f:
            assert [int(r["i"]) for r in csv.DictReader(f)] == list(range(RESULTS)), trial


@pytest.mark.slow  # a supervisor and its collector child processes
def test_sigterm_to_the_set_drains_every_shard_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM to the supervisor: every shard writes what it got, the set exits 0; an --out of 2 refuses 1."""
    bus = free_ports(2)
    out = tmp_path / "out"
    supervisor = subprocess.Popen([sys.executable, "-m", "pipeline.entry.cli", "collect", "--shards", "2",
                                   "--bind", f"tcp://127.0.0.1:{bus}", "--status-bind", "", "--out", str(out),
                                   "--sinks", "json", "--log-interval-s", "0"])
    spool = SenderConfig(spool_dir=str(tmp_path / "spool"))
    senders = [Sender(f"tcp://127.0.0.1:{bus + k}", f"p.s{k}", spool) for k in (0, 1)]
    try:
        for sender, stream in zip(senders, [_events(0), _events(1)]):
            for seq, encoded in enumerate(stream):
                sender.submit(seq, encoded)
        assert all(sender.flush(120) for sender in senders)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
    finally:
        for sender in senders:
            sender.close()
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(timeout=60)
    assert all(_rows(out, [t]) == RESULTS for t in TRIALS)
    plain = run_cli("collect", "--out", str(out), "--bind", f"tcp://127.0.0.1:{bus}", "--status-bind", "")
    assert plain.returncode == 1
    assert "holds the state of 2 shards and this collector is one of 1 shard" in plain.stderr


def test_collect_with_shards_and_port_0_exits_2_in_one_line(tmp_path: Path) -> None:
    """tunebus collect --shards 2 --bind ...:0 says why on one line and starts nothing."""
    from pipeline.testing import run_cli_here

    done = run_cli_here("collect", "--shards", "2", "--bind", "tcp://127.0.0.1:0", "--status-bind", "",
                        "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tunebus collect: error: --bind tcp://127.0.0.1:0: --shards needs a fixed port (shard k binds "
        "port + k), not 0"]
    assert not (tmp_path / "out").exists()


class _Scripted(ShardSet):
    """A set whose shard k runs ``scripts[k]`` (Python source) instead of a collector."""

    def __init__(self, scripts: list[str], max_restarts: int = 2) -> None:
        plan = ShardPlan(tuple(f"tcp://127.0.0.1:{k + 1}" for k in range(len(scripts))),
                         ("",) * len(scripts), (None,) * len(scripts))
        super().__init__(plan, [], max_restarts=max_restarts, first_delay_s=0.01)
        self.scripts = scripts

    def command(self, index: int) -> list[str]:
        return [sys.executable, "-c", self.scripts[index]]


KILLS_ITSELF = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
WAITS_FOR_SIGTERM = ("import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
                     "signal.pause()")


def test_a_shard_killed_again_and_again_is_restarted_a_bounded_number_of_times() -> None:
    """A shard that keeps dying by a signal is restarted max_restarts times, then the set stops, exit 1."""
    shards = _Scripted([WAITS_FOR_SIGTERM, KILLS_ITSELF], max_restarts=2)
    assert shards.run() == 1
    assert shards.restarts == [0, 2]


def test_a_shard_that_exits_0_stops_the_set_and_one_that_fails_stops_it_with_its_status() -> None:
    """Exit 0 (a drain asked by tunebus stop) stops the others, status 0; exit 3 stops them, status 3."""
    assert _Scripted([WAITS_FOR_SIGTERM, "raise SystemExit(0)"]).run() == 0
    assert _Scripted([WAITS_FOR_SIGTERM, "raise SystemExit(3)"]).run() == 3


def test_the_restart_policy_both_supervisors_use_doubles_its_wait_caps_it_and_gives_up() -> None:
    """0.5, 1, 2, 4 s then the cap; a child restarted max_restarts times is not restarted again."""
    policy = RestartPolicy(max_restarts=3, first_delay_s=0.5, max_delay_s=3.0)
    assert [policy.delay_s(n) for n in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert [policy.exhausted(n) for n in range(5)] == [False, False, False, True, True]
    assert RESTARTS.delay_s(100) == RESTARTS.max_delay_s
