"""Where a shard keeps its state under ``--out``, and the record that every collector there is one of N."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import orjson

from pipeline.collector.out_lock import LOCK_FILE
from sinks.base import STATE_DIR

__all__ = ["SHARDS_FILE", "ShardCountMismatch", "check_shard_count", "shard_state_dir"]

SHARDS_FILE = "shards.json"
"""``<out>/.tunebus/shards.json``: ``{"count": N}``, written by the first shard of N > 1 to start."""


class ShardCountMismatch(ValueError):
    """The ``--out`` holds the state of another number of shards than this collector is one of."""


def shard_state_dir(out: Path, index: int, count: int) -> Path:
    """``<out>/.tunebus`` for a collector alone; ``<out>/.tunebus/shard-<index>`` for a shard of several."""
    state = out / STATE_DIR
    return state / f"shard-{index}" if count > 1 else state


def check_shard_count(out: Path, count: int) -> None:
    """Refuse an ``--out`` written by another number of shards; record ``count`` there when it is > 1.

    Each shard's ledgers name only the trials routed to it: a collector that took over
    such an ``--out`` with another count would route trials to state that does not know
    them (and write some twice). An ``--out`` with no record but a lone collector's
    ledgers counts as one shard; one with neither takes any count.

    Raises:
        ShardCountMismatch: naming both counts.
    """
    state = out / STATE_DIR
    recorded = _recorded(state)
    if recorded is not None and recorded != count:
        raise ShardCountMismatch(
            f"{out} holds the state of {_shards(recorded)} and this collector is one of {_shards(count)}: "
            f"start {recorded} shard(s) on it (tunebus collect --shards {recorded}) or use another --out")
    if recorded is None and count > 1:
        holder = _plain_holder(state)
        if holder is not None:  # started a moment ago: no ledger of it yet
            raise ShardCountMismatch(f"{out} is in use by a plain collector (pid {holder}) and this "
                                     f"collector is one of {_shards(count)}: stop it first or use "
                                     "another --out")
        state.mkdir(parents=True, exist_ok=True)
        tmp = state / f"{SHARDS_FILE}.{os.getpid()}.tmp"
        tmp.write_bytes(orjson.dumps({"count": count}))
        os.replace(tmp, state / SHARDS_FILE)  # shards starting together write the same record


def _recorded(state: Path) -> int | None:
    path = state / SHARDS_FILE
    if path.exists():
        try:
            count = orjson.loads(path.read_bytes())["count"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ShardCountMismatch(f"{path} is not a shard record ({exc}); remove it if no shard "
                                     "ran here") from None
        if not isinstance(count, int) or count < 1:
            raise ShardCountMismatch(f"{path} records {count!r} shards; remove it if no shard ran here")
        return count
    return 1 if any(state.glob("ledger-*.json")) else None


def _plain_holder(state: Path) -> str | None:
    """The pid of a plain collector holding ``<out>/.tunebus``'s lock, None if none does. Probed
    shared, so shards starting together do not refuse each other."""
    try:
        fd = os.open(state / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return (os.pread(fd, 64, 0).decode(errors="replace").split() or ["?"])[0]
    finally:
        os.close(fd)
    return None


def _shards(count: int) -> str:
    return "1 shard (a plain collector)" if count == 1 else f"{count} shards"
