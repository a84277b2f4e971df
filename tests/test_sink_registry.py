"""The sink registry: entry points in group tunebus.sinks, and a third-party sink with its own options."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import EXPERIMENT, TRIAL_DIR, submit_results
from sinks import GROUP, make_sink, sink_class, sink_names
from sinks.base import Sink
from sinks.json import JsonSink
from tests.conftest import REPO

COUNT = 20

PLUGIN = '''
"""A third-party sink: counts the results it is given into <out>/<label>.count."""
from pipeline.collector.settings import Text
from sinks.base import Setting, Sink


class CountingSink(Sink):
    name = "counting"
    options = (Setting("label", Text(metavar="WORD"), "results", "file name of the count"),)

    def __init__(self, out, label="results"):
        self.path, self.rows = out / f"{label}.count", 0

    def write_results(self, trial, results):
        self.rows += len(results)

    def flush(self):
        self.path.write_text(str(self.rows))
'''


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose sys.path holds an installed third-party package declaring the sink 'counting'."""
    site = tmp_path / "site"
    info = site / "counting_sink-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "counting_sink.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: counting-sink\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\ncounting = counting_sink:CountingSink\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join((str(site), REPO)))


def test_the_built_in_sinks_are_found_through_their_entry_points() -> None:
    """json, csv, tensorboard and aim are tunebus's own entry points, and load as Sink subclasses."""
    declared = {point.name: point.value for point in entry_points(group=GROUP)}
    assert declared["json"] == "sinks.json:JsonSink"
    assert {"json", "csv", "tensorboard", "aim"} <= set(declared) <= set(sink_names())
    assert sink_class("json") is JsonSink and isinstance(make_sink("json", Path("unused")), JsonSink)
    assert all(issubclass(sink_class(name), Sink) for name in ("json", "csv", "tensorboard", "aim"))
    with pytest.raises(ValueError, match="unknown sink 'nope'; choose from aim, csv, json, tensorboard"):
        sink_class("nope")


def test_other_commands_load_no_sink_and_collect_loads_no_aim() -> None:
    """Only collect loads the sinks (for their options); even then aim loads only when built."""
    code = ("import sys; from pipeline.entry.cli import parser; p = parser(); p.parse_args(['status']); "
            "print('sinks.tensorboard' in sys.modules); p.parse_args(['collect']); "
            "print('sinks.tensorboard' in sys.modules, 'sinks.aim' in sys.modules, 'aim' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.split() == ["False", "True", "True", "False"]


def test_a_third_party_sink_shows_in_collect_help_with_its_options(plugin_env: dict[str, str]) -> None:
    """An installed package's entry point adds its sink to --sinks and its options as flags."""
    done = subprocess.run([sys.executable, "-m", "pipeline.entry.cli", "collect", "--help"], env=plugin_env,
                          capture_output=True, text=True, timeout=60, check=True)
    text = " ".join(done.stdout.split())
    assert "one or more of aim, counting, csv, json, tensorboard" in text
    assert "--counting-label WORD file name of the count (default: results)" in text


def test_a_third_party_sink_writes_what_the_collector_gives_it(tmp_path: Path, address: str,
                                                                plugin_env: dict[str, str]) -> None:
    """``--sinks json,counting --counting-label tally``: the third-party sink gets every result, durably."""
    out = tmp_path / "out"
    config = tmp_path / "collect.toml"
    config.write_text('[collect]\nsinks = ["json", "counting"]\n[sinks.counting]\nlabel = "tally"\n')
    collector = subprocess.Popen([sys.executable, "-m", "pipeline.entry.cli", "collect", "--bind", address,
                                  "--out", str(out), "--config", str(config), "--status-bind", ""],
                                 env=plugin_env)
    sender = Sender(address, "p1", SenderConfig(spool_dir=str(tmp_path / "spool")))
    try:
        submit_results(sender, COUNT)
        assert sender.flush(60), "the collector never acknowledged the results"
    finally:
        sender.close()
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(60) == 0
    assert (out / "tally.count").read_text() == str(COUNT)
    rows = (out / EXPERIMENT / TRIAL_DIR / "result.json").read_text().splitlines()
    assert [json.loads(row)["i"] for row in rows] == list(range(1, COUNT + 1))


def test_a_benchmark_registers_its_own_sink_for_its_collector_only() -> None:
    """bench.collect adds the 'slow' sink through register_sink; plain tunebus does not know it."""
    bench = subprocess.run([sys.executable, "-m", "bench.collect", "collect", "--help"], capture_output=True,
                           text=True, timeout=60, check=True)
    assert "csv, json, slow, tensorboard" in " ".join(bench.stdout.split())
    assert "slow" not in sink_names()
