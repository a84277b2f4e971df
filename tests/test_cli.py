"""The command line: complete help, and one readable line with a non-zero exit for bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.collector.config import collector_settings
from pipeline.testing import run_cli, run_cli_here


def _documented(help_text: str) -> dict[str, str]:
    """Each argument in ``help_text``'s usage (flags and positionals), mapped to the text documenting it."""
    usage, body = help_text.split("\n\n", 1)
    entries: list[list[str]] = []
    for line in body.splitlines():
        if re.match(r"^  \S", line):
            entries.append([line.strip()])
        elif line.startswith("    ") and entries:
            entries[-1].append(line.strip())
    documented = {}
    for entry in entries:
        invocation, _, text = entry[0].partition("  ")
        for name in re.findall(r"-{0,2}[a-z][a-z0-9_-]*", invocation):
            documented[name] = " ".join([text.strip(), *entry[1:]]).strip()
    command = " ".join(usage.split()).split(" ", 3)[3]
    return {name: documented.get(name, "") for name in re.findall(r"-{0,2}[a-z][a-z0-9_-]*", command)}


def test_help_documents_every_flag_of_every_command() -> None:
    """--help names every command, and each command's help documents every argument it accepts."""
    done = run_cli_here("--help")
    top = done.stdout
    assert done.returncode == 0
    commands = re.search(r"\{([a-z,]+)\}", top)
    assert commands is not None
    names = commands.group(1).split(",")
    assert set(names) == {"collect", "demo", "replay", "keygen", "bench", "status", "stop"}
    for command in names:
        done = run_cli_here(command, "--help")
        out = done.stdout
        assert done.returncode == 0
        documented = _documented(out)
        assert len(documented) >= 3, (command, out)
        for flag, text in documented.items():
            assert len(text) > 10, f"tunebus {command} {flag} is not documented"


def test_collect_help_has_every_declared_setting_with_its_default() -> None:
    """Every collector setting and sink option has its flag in collect --help, with its default."""
    documented = _documented(run_cli_here("collect", "--help").stdout)
    for declared in collector_settings():
        text = documented[declared.flag]
        assert declared.help in text and "(default: " in text, (declared.flag, text)
    assert "one or more of aim, csv, json, tensorboard" in documented["--sinks"]
    assert set(documented) == {"-h", "--shards", "--config", "--filter",
                               *(s.flag for s in collector_settings())}


@pytest.mark.parametrize(("args", "says"), [
    (("collect", "--sinks", "json,nope"), "--sinks: unknown sink 'nope'; choose from aim, csv, json"),
    (("collect", "--max-queue-events", "0"), "--max-queue-events: expected an integer >= 1, got '0'"),
    (("collect", "--batch-linger-s", "-1"), "--batch-linger-s: expected a number >= 0, got '-1'"),
    (("collect", "--bind", "http://x"), "--bind: expected an address like tcp://127.0.0.1:5555"),
    (("collect", "--no-such-flag"), "tunebus collect: error: unrecognized arguments: --no-such-flag"),
    (("collect", "--curve-secret-key", "k"), "--curve-secret-key and --curve-clients go together"),
    (("collect", "--aim-durable"), "--aim-durable for the aim sink, which is not in sinks"),
    (("collect", "--out", "/dev/null"), "--out: expected a directory, got the file '/dev/null'"),
    (("replay", "/no/such/spool", "--to", "tcp://127.0.0.1:9"), "tunebus replay: error:"),
    (("status", "--timeout-s", "abc"), "status: error: --timeout-s: expected a number >= 0, got 'abc'"),
    (("demo", "--trials", "0"), "tunebus demo: error: --trials: expected an integer >= 1, got '0'"),
    (("frobnicate",), "tunebus: error: command: invalid choice: 'frobnicate'"),
    (("--frobnicate",), "tunebus: error: unrecognized arguments: --frobnicate"),
    ((), "tunebus: error: choose a command: collect, demo, replay, keygen, bench, status"),
])
def test_bad_input_exits_non_zero_with_one_line(args: tuple[str, ...], says: str) -> None:
    """Each bad flag or value: exit status 2, and exactly one line on stderr naming the flag as typed."""
    done = run_cli_here(*args)
    err = done.stderr
    assert done.returncode == 2
    assert len(err.strip().splitlines()) == 1, err
    assert says in err, err
    assert "invalid _" not in err and "required: command" not in err


@pytest.mark.slow  # a collector child process
@pytest.mark.parametrize(("flags", "said"), [
    (("--curve-secret-key", "/no/such.key_secret", "--curve-clients", "/"),
     "--curve-secret-key: no such file: '/no/such.key_secret'"),
    (("--curve-secret-key", "{file}", "--curve-clients", "{file}"),
     "--curve-clients: expected a directory of public .key files, got '{file}'"),
])
def test_a_wrong_curve_key_path_is_one_line_naming_the_flag(
        address: str, tmp_path: Path, flags: tuple[str, ...], said: str) -> None:
    """A missing key file or a file for the clients folder: exit 1, one line naming the flag."""
    file = tmp_path / "collector.key_secret"
    file.write_text("not checked before the clients folder\n")
    flags = tuple(f.format(file=file) for f in flags)
    done = run_cli("collect", "--bind", address, "--out", str(tmp_path / "out"), *flags)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"tunebus collect: error: {said.format(file=file)}"


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
