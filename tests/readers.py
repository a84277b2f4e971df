"""Reading sink output back with each format's own reader: TensorBoard's EventAccumulator, Aim's Repo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SIZE_GUIDANCE = {"scalars": 0, "images": 0, "histograms": 0, "tensors": 0, "compressedHistograms": 0}


def read_tensorboard(trial_dir: Path) -> dict[str, Any]:
    """Everything TensorBoard's EventAccumulator reads from a trial directory, without wall times."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(trial_dir), size_guidance=SIZE_GUIDANCE)
    acc.Reload()
    tags = acc.Tags()
    hparams = {}
    try:
        contents = acc.PluginTagToContent("hparams")
    except KeyError:  # no hparams plugin data in this directory
        contents = {}
    for tag, content in contents.items():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        hparams[tag] = data
    return {
        "scalars": {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]},
        "images": {t: [(e.step, e.width, e.height, e.encoded_image_string) for e in acc.Images(t)]
                   for t in tags["images"]},
        "histograms": {t: [(e.step, e.histogram_value) for e in acc.Histograms(t)]
                       for t in tags["histograms"]},
        "hparams": hparams,
    }


def read_aim(repo: Path) -> list[dict[str, Any]]:
    """Every run in an Aim repo (indexed first with Aim's own CLI), read in a fresh process."""
    aim = str(Path(sys.executable).with_name("aim"))
    subprocess.run([aim, "storage", "--repo", str(repo), "reindex", "--yes"], check=True,
                   capture_output=True, timeout=120)
    done = subprocess.run([sys.executable, "-m", "tests.aim_dump", str(repo)], check=True,
                          capture_output=True, text=True, timeout=120)
    runs: list[dict[str, Any]] = json.loads(done.stdout.splitlines()[-1])
    return runs
