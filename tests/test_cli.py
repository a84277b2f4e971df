"""The command line: complete help, and one readable line with a non-zero exit for bad input."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.collector.assembly import CollectorConfig
from pipeline.testing import run_cli


def test_help_lists_every_command_and_collect_flag() -> None:
    """--help names the commands, and collect --help every flag with its default."""
    top = run_cli("--help")
    assert top.returncode == 0
    for command in ("collect", "demo", "replay", "keygen"):
        assert command in top.stdout
    collect = " ".join(run_cli("collect", "--help").stdout.split())
    flags = ["--" + f.name.replace("_", "-") for f in dataclasses.fields(CollectorConfig)]
    for flag in [*flags, "--log-level", "--config"]:
        assert flag in collect, f"CollectorConfig.{flag} has no flag"
    assert collect.count("(default: ") >= len(flags) - 4  # the key and repo paths have none


@pytest.mark.parametrize("args", [
    ("collect", "--sinks", "json,nope"),
    ("collect", "--max-queue-events", "0"),
    ("collect", "--batch-linger-s", "-1"),
    ("collect", "--bind", "http://x"),
    ("collect", "--no-such-flag"),
    ("collect", "--curve-secret-key", "k"),
    ("replay", "/no/such/spool", "--to", "tcp://127.0.0.1:9"),
    ("frobnicate",),
])
def test_bad_input_exits_non_zero_with_one_line(args: tuple[str, ...]) -> None:
    """Each bad flag or value: exit status 2, and exactly one line on stderr."""
    done = run_cli(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "error" in done.stderr


def test_a_busy_address_is_one_line_too(address: str, tmp_path: object) -> None:
    """Binding an address already in use fails with one line, not a traceback."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(address)
    try:
        done = run_cli("collect", "--bind", address, "--out", str(tmp_path))
    finally:
        sock.close()
        ctx.term()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("tunebus collect: error: cannot bind")


@pytest.mark.ray  # a Tune sweep in a child process
def test_the_demo_runs_a_sweep_and_says_where_the_files_went(tmp_path: Path) -> None:
    """tunebus demo (the README's main job) writes every result and names the experiment folder."""
    done = subprocess.run([sys.executable, "-m", "pipeline.entry.cli", "demo", "--out", str(tmp_path),
                           "--trials", "2", "--iterations", "5"], capture_output=True, text=True,
                          timeout=240, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 trials, 10 results written by the collector" in done.stdout
    [experiment] = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert str(experiment) in done.stdout
    rows = [len((d / "result.json").read_text().splitlines()) for d in experiment.iterdir()
            if (d / "result.json").exists()]
    assert rows == [5, 5]
