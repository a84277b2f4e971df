"""The process boundary holds: the collector imports no Ray or Tune, and collector code no driver code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

LOADED = """
import sys
import pipeline.entry.cli, pipeline.collector.assembly, pipeline.collector.receiver
from pipeline.entry.cli import main
{extra}
print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"ray", "tune", "torch", "aim"}}))
"""


def _top_level_modules(extra: str = "") -> str:
    done = subprocess.run([sys.executable, "-c", LOADED.format(extra=extra)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # a fresh interpreter
def test_the_collector_entry_point_loads_no_ray_or_tune() -> None:
    """Importing what ``tunebus collect`` runs, and building a collector's sinks, pulls in no Ray or Tune."""
    built = ("import tempfile; from pipeline.collector.assembly import CollectorConfig, build_collector\n"
             "build_collector(CollectorConfig(out=tempfile.mkdtemp(), bind='tcp://127.0.0.1:0',"
             " status_bind=''))")
    assert _top_level_modules() == "[]"
    assert _top_level_modules(built) == "[]"


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            names.add(".".join(p for p in (base, node.module or "") if p))
    return names


def test_collector_side_code_never_imports_the_producer_side() -> None:
    """No module under pipeline/collector or sinks/ imports Ray, Tune or pipeline.producer."""
    offenders = {str(path.relative_to(REPO)): sorted(bad)
                 for folder in ("pipeline/collector", "sinks") for path in (REPO / folder).rglob("*.py")
                 if (bad := {m for m in _imported(path)
                             if m.split(".")[0] == "ray" or m.startswith("pipeline.producer")})}
    assert offenders == {}
