"""tunebus collect --config FILE.toml: every setting from the file, flags win, bad files are one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.collector import config as config_module
from pipeline.collector.assembly import batch_policy
from pipeline.collector.config import CollectorConfig, collector_settings, settings_argv
from pipeline.collector.filter_spec import FilterChain, parse_filters
from pipeline.collector.settings import Choice, Flag, Integer, Names, Number, Setting, Text
from pipeline.collector.sink_worker import BatchPolicy
from pipeline.entry.cli import collect_config, parser
from pipeline.entry.config_file import read_config
from pipeline.testing import free_address, run_cli_here, wait_for


def _sample(setting: Setting) -> Any:
    """A value for ``setting`` that is not its default (the sinks include aim, for aim's options)."""
    kind = setting.kind
    if isinstance(kind, Flag):
        return True
    if isinstance(kind, Integer):
        return (kind.minimum or 0) + 7
    if isinstance(kind, Number):
        return 2.5
    if isinstance(kind, Choice):
        return kind.options[0]
    if isinstance(kind, Names):
        return ("json", "aim") if kind.known is not None else ("loss", "acc")
    if isinstance(kind, Text) and kind.prefixes:
        return "tcp://127.0.0.1:7"
    if isinstance(kind, FilterChain):
        return "every_s=5"
    return "somewhere"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def _parsed(argv: list[str]) -> CollectorConfig:
    """``tunebus collect ARGV`` as the command builds its configuration."""
    given = vars(parser().parse_args(["collect", *argv]))
    return CollectorConfig.from_flat(**{k: v for k, v in given.items()
                                        if k not in ("command", "config", "argv")})


@pytest.mark.parametrize("spelling", ["dashes", "underscores", "sink tables"])
def test_every_collect_setting_can_come_from_the_file(tmp_path: Path, spelling: str) -> None:
    """A file naming every declared setting reads as the same values given as flags on the command line."""
    values = {s.key: _sample(s) for s in collector_settings()}
    lines = [f"{k.replace('_', '-') if spelling == 'dashes' else k} = {_toml(v)}\n" for k, v in values.items()
             if spelling != "sink tables" or not k.startswith("aim_")]
    if spelling == "sink tables":
        lines.insert(0, "[collect]\n")
        lines += ["[sinks.aim]\n", *(f"{k[4:]} = {_toml(v)}\n" for k, v in values.items()
                                     if k.startswith("aim_"))]
    path = tmp_path / "collect.toml"
    path.write_text("".join(lines))
    from_file = read_config(path)
    assert set(from_file) == set(values)
    from_flags = vars(parser().parse_args(["collect", *settings_argv(**values)]))
    assert from_file == {k: v for k, v in from_flags.items() if k not in ("command", "config", "argv")}


@pytest.mark.slow  # a collector child process
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
    ("no_such_flag = 1\n", "unknown key 'no_such_flag'; known keys: out, bind, sinks, max-queue-events"),
    ("max-queue-events = 0\n", "max-queue-events: expected an integer >= 1, got 0"),
    ("batch_linger_s = \"soon\"\n", "batch_linger_s: expected a number >= 0, got 'soon'"),
    ("aim-durable = \"yes\"\n", "aim-durable: expected true or false, got 'yes'"),
    ("log-level = \"LOUD\"\n", "log-level: expected one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"),
    ("sinks = [\"json\", \"nope\"]\n", "sinks: unknown sink 'nope'; choose from aim, csv, json, tensorboard"),
    ("metrics-port = 70000\n", "metrics-port: expected an integer 0..65535, got 70000"),
    ("bind = [1, 2]\n", "bind: expected an address like tcp://127.0.0.1:5555, got [1, 2]"),
    ("bind = \n", "not valid TOML"),
    ("sinks = [\"aim\"]\n[sinks.aim]\nrepo = \"r\"\n",
     "tables both at the top level: put the list under [collect]"),
    ("[sinks.aim]\nrepos = \"r\"\n",
     "[sinks.aim]: unknown key 'repos'; known keys: repo, metrics, experiment-name, durable"),
    ("[sinks.nope]\nx = 1\n", "[sinks.nope]: unknown sink 'nope'; choose from aim, csv, json, tensorboard"),
    ("[sinks.aim]\nmetrics = [1]\n", "[sinks.aim] metrics: expected comma-separated result keys, got [1]"),
    ("aim-repo = \"a\"\n[sinks.aim]\nrepo = \"b\"\n", "aim-repo is given twice, flat and in [sinks.aim]"),
    ("[sinks.aim]\nrepo = \"r\"\n", "--aim-repo for the aim sink, which is not in sinks (json,csv,"),
    ("bind = \"tcp://127.0.0.1:1\"\n[collect]\nbind = \"tcp://127.0.0.1:2\"\n",
     "bind is given both at the top level and under [collect]"),
])
def test_a_bad_file_is_one_line_and_exit_2(tmp_path: Path, text: str, says: str) -> None:
    """Each bad key, value, table or syntax: exit status 2 and one error line that says what is wrong."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = run_cli_here("collect", "--config", str(path), "--out", str(tmp_path / "out"))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("tunebus collect: error:") and says in lines[0], lines


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    """--config naming no file: exit status 2 and one line naming it."""
    done = run_cli_here("collect", "--config", str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"tunebus collect: error: cannot read config '{tmp_path / 'nope.toml'}': No such file or directory"]


def test_a_collect_table_sits_beside_sink_tables_and_top_level_keys(tmp_path: Path) -> None:
    """[collect] next to [sinks.aim] and a top-level key: all read; aim's table gives aim's options."""
    path = tmp_path / "collect.toml"
    path.write_text(f'log-level = "DEBUG"\n[collect]\nout = "{tmp_path}"\nsinks = ["json", "aim"]\n'
                    f'[sinks.aim]\nrepo = "{tmp_path / "aim"}"\nmetrics = ["loss"]\ndurable = true\n')
    config = CollectorConfig.from_flat(**read_config(path))
    assert (config.out, config.sinks, config.log_level) == (tmp_path, ("json", "aim"), "DEBUG")
    assert config.sink_options == {"json": {"filters": (), "process": None, "nice": 19}, "aim": {
        "repo": tmp_path / "aim", "metrics": ("loss",), "experiment_name": None, "durable": True,
        "filters": (), "process": None, "nice": 19}}


def test_flat_aim_flags_fill_the_same_options_as_the_sink_table(tmp_path: Path) -> None:
    """--aim-repo, --aim-metrics and --aim-durable on the command line give what [sinks.aim] gives."""
    config = _parsed(["--out", str(tmp_path), "--sinks", "json,aim", "--aim-repo", str(tmp_path / "aim"),
                      "--aim-metrics", "loss", "--aim-durable"])
    path = tmp_path / "collect.toml"
    path.write_text(f'[collect]\nout = "{tmp_path}"\nsinks = ["json", "aim"]\n'
                    f'[sinks.aim]\nrepo = "{tmp_path / "aim"}"\nmetrics = ["loss"]\ndurable = true\n')
    assert config == CollectorConfig.from_flat(**read_config(path))
    assert config.sink_options["aim"] == {"repo": tmp_path / "aim", "metrics": ("loss",),
                                          "experiment_name": None, "durable": True, "filters": (),
                                          "process": None, "nice": 19}


def test_defaults_come_from_the_declarations(tmp_path: Path) -> None:
    """No flag given: every setting is its declared default, and the batch policy is built from them."""
    config = _parsed(["--out", str(tmp_path)])
    for declared in collector_settings(with_sinks=False):
        if declared.name != "out":
            assert getattr(config, declared.name) == declared.default, declared.name
    assert batch_policy(config) == BatchPolicy(config.batch_max_events, config.batch_linger_s,
                                               config.max_queue_events)


def test_the_ray_actor_takes_the_same_settings_and_checks_them_before_starting(tmp_path: Path) -> None:
    """start_collector_on_ray's keyword settings become collect flags that parse to the same config."""
    from pipeline.entry.ray_actor import start_collector_on_ray

    settings = {"sinks": ("json", "aim"), "max_queue_events": 10, "batch_linger_s": 0.2,
                "aim_metrics": ("loss",), "aim_durable": True, "log_level": "DEBUG"}
    argv = settings_argv(**settings)
    assert "--aim-durable" in argv and argv[argv.index("--max-queue-events") + 1] == "10"
    assert _parsed(["--out", str(tmp_path), *argv]) == CollectorConfig.from_flat(out=tmp_path, **settings)
    with pytest.raises(ValueError, match="max_queue_events: expected an integer >= 1, got 0"):
        start_collector_on_ray(tmp_path, max_queue_events=0)
    with pytest.raises(ValueError, match="unknown setting 'max_queue'; known settings: out, bind, sinks"):
        start_collector_on_ray(tmp_path, max_queue=10)


def test_an_option_of_every_sink_is_one_declaration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One EVERY_SINK entry gives each sink a flag and a table key, for its worker, not its constructor."""
    filters = Setting("filters", Names(what="filter"), (), "what to drop")
    monkeypatch.setattr(config_module, "EVERY_SINK", (filters,))
    path = tmp_path / "collect.toml"
    path.write_text(f'[collect]\nout = "{tmp_path}"\nsinks = ["json", "csv"]\n'
                    '[sinks.json]\nfilters = ["nan"]\n')
    from_file = CollectorConfig.from_flat(**read_config(path))
    assert from_file == _parsed(["--out", str(tmp_path), "--sinks", "json,csv", "--json-filters", "nan"])
    assert from_file.worker_options("json") == {"filters": ("nan",)}
    assert from_file.worker_options("csv") == {"filters": ()}
    assert from_file.sink_kwargs("json") == {}
    shown = run_cli_here("collect", "--help")
    assert shown.returncode == 0
    assert "--aim-filters NAMES" in shown.stdout and "--tensorboard-filters NAMES" in shown.stdout


README_FILTERS = """\
[sinks.tensorboard]
filters = [
  { keep = ["loss", "acc"] },
  { smooth = "loss", coeff = 0.9 },
]
[sinks.aim]
filters = [{ every_s = 5 }]
"""


def _chains(config: CollectorConfig) -> dict[str, list[str]]:
    return {sink: [str(f) for f in parse_filters(options["filters"])]
            for sink, options in config.sink_options.items()}


def test_the_readme_filters_example_and_the_filter_flags_give_the_same_chains(tmp_path: Path) -> None:
    """The README's [sinks.<name>] filters verbatim, and --filter flags, give each sink its chain in order."""
    path = tmp_path / "collect.toml"
    path.write_text(README_FILTERS)
    sinks = ["--out", str(tmp_path), "--sinks", "json,tensorboard,aim"]
    from_file = collect_config(parser().parse_args(["collect", *sinks, "--config", str(path)]))
    flags = ["--filter", "tensorboard:keep=loss,acc", "--filter", "tensorboard:smooth=loss:coeff=0.9",
             "--filter", "aim:every_s=5"]
    from_flags = collect_config(parser().parse_args(["collect", *sinks, *flags]))
    want = {"json": [], "tensorboard": ["keep=loss,acc", "smooth=loss coeff=0.9"], "aim": ["every_s=5"]}
    assert _chains(from_file) == _chains(from_flags) == want
    both = collect_config(parser().parse_args(["collect", *sinks, "--config", str(path),
                                               "--filter", "tensorboard:none"]))
    assert _chains(both)["tensorboard"] == ["none"] and _chains(both)["aim"] == ["every_s=5"]


@pytest.mark.parametrize(("argv", "says"), [
    (["--filter", "tensorboard:smoth=loss"], "filters: filter 1 {'smoth': 'loss'} names no filter"),
    (["--filter", "nope:every_s=5"], "--filter nope:every_s=5: unknown sink 'nope'; choose from aim, csv"),
    (["--filter", "every_s=5"], "--filter takes SINK:NAME=VALUE[:OPTION=VALUE]"),
    (["--tensorboard-filters", "every_s=-1"], "--tensorboard-filters: filter 1 (every_s): every_s must be"),
    (["--csv-filters", '[{"aggregate": "("}]'], "filter 1 (aggregate): bad regular expression '('"),
])
def test_a_wrong_filter_flag_is_one_line_and_exit_2(argv: list[str], says: str) -> None:
    """Unknown filters and sinks, bad numbers and bad regexes in flags stop collect with one line."""
    done = run_cli_here("collect", "--status-bind", "", *argv)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and says in lines[0], lines
