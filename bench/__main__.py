"""``python -m bench``: run every benchmark in its own process and print each one's JSON line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, RESULTS_DIR, child_env

__all__ = ["BENCHES", "available", "main", "run_one"]

BENCHES = ("driver_cost", "throughput", "latency", "isolation", "sweep", "saturation", "sinks", "filters",
           "worker_log", "many_trials", "shards")
"""In run order; ``sinks`` (per-sink results/s against Tune's callbacks) runs when bench/sinks.py exists."""
TIMEOUT_S = {True: 300, False: 3_600}


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return [name for name in BENCHES if (here / f"{name}.py").exists()]


def run_one(name: str, quick: bool, plots: bool) -> dict[str, Any]:
    """``python -m bench.<name>`` in a fresh process (its own Ray, its own collector); its JSON line."""
    flags = [*(["--quick"] if quick else []), *(["--plots"] if plots else [])]
    env = child_env()
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", f"bench.{name}", *flags], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True, timeout=TIMEOUT_S[quick])
    except subprocess.TimeoutExpired:
        return {"bench": name, "error": f"timed out after {TIMEOUT_S[quick]}s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            try:
                record: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue
            if done.returncode != 0:
                record["error"] = f"exit status {done.returncode}"
            return record
    return {"bench": name, "error": f"exit status {done.returncode}, no JSON line",
            "elapsed_s": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None, prog: str = "python -m bench") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds each: proves the scripts work")
    parser.add_argument("--only", action="append", choices=BENCHES, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHES)}")
    parser.add_argument("--plots", action="store_true", help="also save PNG plots in bench/results/")
    args = parser.parse_args(argv)
    names = [n for n in available() if not args.only or n in args.only]
    missing = sorted(set(args.only or ()) - set(names))
    if missing:
        parser.error(f"no such benchmark here: {', '.join(missing)}")
    records = []
    for name in names:
        record = run_one(name, args.quick, args.plots)
        records.append(record)
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    summary = RESULTS_DIR / f"summary{'-quick' if args.quick else ''}.json"
    summary.write_text(json.dumps(records, indent=2) + "\n")
    failed = [r["bench"] for r in records if "error" in r]
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
