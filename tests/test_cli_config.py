"""tunebus collect --config FILE.toml: every flag from the file, flags win, bad files are one line."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.entry.cli import parser
from pipeline.entry.config_file import toml_defaults
from pipeline.testing import free_address, run_cli, wait_for

SAMPLES = {"metrics_port": 9100}
"""TOML values for flags whose default is None or empty (any other such flag gets a plain word)."""


def _collect_parser() -> argparse.ArgumentParser:
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    collect: argparse.ArgumentParser = commands.choices["collect"]
    return collect


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


@pytest.mark.parametrize("spelling", ["dashes", "underscores"])
def test_every_collect_flag_can_come_from_the_file(tmp_path: Path, spelling: str) -> None:
    """A file naming every collect flag parses to what the same values give on the command line."""
    collect = _collect_parser()
    actions = [a for a in collect._actions if a.option_strings and a.dest not in ("help", "config")]
    values = {a.dest: True if a.nargs == 0 else a.default if a.default not in (None, ())
              else SAMPLES.get(a.dest, "somewhere") for a in actions}
    key = (lambda d: d.replace("_", "-")) if spelling == "dashes" else (lambda d: d)
    path = tmp_path / "collect.toml"
    path.write_text("".join(f"{key(d)} = {_toml(v)}\n" for d, v in values.items()))
    from_file = toml_defaults(path, collect)
    argv: list[str] = []
    for action in actions:
        value = values[action.dest]
        if action.nargs == 0:
            argv.append(action.option_strings[0])
        else:
            text = ",".join(value) if isinstance(value, tuple) else str(value)
            argv += [action.option_strings[0], text]
    from_flags = vars(collect.parse_args(argv))
    assert set(from_file) == {a.dest for a in actions}
    assert from_file == {d: from_flags[d] for d in from_file}


def test_flags_override_the_file_and_the_effective_config_is_printed(tmp_path: Path) -> None:
    """The file sets bind, sinks and status; a flag overrides its linger; the start log shows both."""
    bind, status_bind = free_address(), free_address()
    path = tmp_path / "collect.toml"
    path.write_text(f'[collect]\nbind = "{bind}"\nsinks = ["json"]\nstatus-bind = "{status_bind}"\n'
                    f'batch_linger_s = 0.2\nout = "{tmp_path / "out"}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.entry.cli", "collect", "--config", str(path),
                             "--batch-linger-s", "0.3"], stderr=subprocess.PIPE, text=True)
    try:
        from pipeline.collector.snapshot import CollectorSnapshot
        from pipeline.ops.status_client import ask_status

        answers: list[CollectorSnapshot] = []

        def answered() -> bool:
            try:
                answers.append(ask_status(status_bind, 0.5))
            except TimeoutError:
                return False
            return True

        wait_for(answered, 30, "the collector configured by the file")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert answers[-1].bus == bind and list(answers[-1].sinks) == ["json"]
    effective = next(line for line in stderr.splitlines() if "effective config:" in line)
    assert "batch_linger_s=0.3" in effective and "sinks=('json',)" in effective
    assert f"status_bind='{status_bind}'" in effective


@pytest.mark.parametrize(("text", "says"), [
    ("no_such_flag = 1\n", "unknown key 'no_such_flag'"),
    ("max-queue-events = 0\n", "max-queue-events = 0: must be at least 1"),
    ("batch_linger_s = \"soon\"\n", "batch_linger_s = 'soon'"),
    ("aim-durable = \"yes\"\n", "aim-durable must be true or false"),
    ("log-level = \"LOUD\"\n", "choose from"),
    ("sinks = [\"json\", \"nope\"]\n", "unknown sink 'nope'"),
    ("metrics-port = 70000\n", "must be a port 0..65535"),
    ("bind = [1, 2]\n", "must be a string, a number or a list of strings"),
    ("bind = \n", "not valid TOML"),
])
def test_a_bad_file_is_one_line_and_exit_2(tmp_path: Path, text: str, says: str) -> None:
    """Each bad key, value or syntax: exit status 2 and one error line that says what is wrong."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = run_cli("collect", "--config", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunebus collect: error:") and says in lines[0], lines


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    """--config naming no file: exit status 2 and one line naming it."""
    done = run_cli("collect", "--config", str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"tunebus collect: error: cannot read config '{tmp_path / 'nope.toml'}': No such file or directory"]
