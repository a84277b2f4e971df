"""The collector side of shards: settings, the hello answered with the map, per-shard state under --out."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pipeline.collector.config import CollectorConfig
from pipeline.collector.shard_state import ShardCountMismatch, check_shard_count
from pipeline.testing import (
    dealer,
    free_address,
    result_event,
    run_cli,
    run_cli_here,
    running_collector,
    start_event,
    wait_until,
)
from pipeline.wire.codec import decode_control, frame_events
from pipeline.wire.shards import SHARDS, hello_frame

TWO = ("tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002")


async def _hello(address: str) -> tuple[str, list[object]]:
    with dealer(address, "hello-1", asynchronous=True) as sock:
        await sock.send(hello_frame("hello-1"))
        return decode_control(await asyncio.wait_for(sock.recv(), 10))


async def test_a_shard_answers_a_hello_with_every_shard_address(tmp_path: Path, address: str) -> None:
    """A DEALER sending an event-less frame to a shard gets ["shards", [every bus address]] back."""
    shards = (address, free_address())
    async with running_collector(tmp_path, address, shard_addresses=shards, shard_index=0):
        assert await _hello(address) == (SHARDS, [list(shards)])


async def test_a_plain_collector_answers_a_hello_with_an_empty_map(tmp_path: Path, address: str) -> None:
    """An unsharded collector answers a hello with an empty list (one shard: itself), and keeps serving."""
    async with running_collector(tmp_path, address, sinks=("json",)) as collector:
        assert await _hello(address) == (SHARDS, [[]])
        with dealer(address, "p", asynchronous=True) as sock:
            await sock.send(frame_events("p", 0, [start_event("p", 0), result_event("p", 1)]))
            await wait_until(lambda: collector.snapshot().sinks["json"].events == 2, 10, "written")
    assert collector.snapshot().quarantined == 0


@pytest.mark.parametrize(("given", "says"), [
    ({"shard_index": 2, "shard_addresses": TWO}, "shard_index 2 is not below the 2 shard_addresses"),
    ({"shard_index": 1}, "shard_index 1 needs shard_addresses"),
    ({"shard_addresses": ("127.0.0.1:7001",)}, "shard_addresses: expected addresses like"),
    ({"shard_addresses": TWO, "shard_status_addresses": TWO[:1]}, "1 shard_status_addresses for 2"),
])
def test_shard_settings_are_checked(given: dict[str, object], says: str) -> None:
    """An index past the map, an index with no map, a non-address, or a status map of another length fail."""
    with pytest.raises(ValueError, match=says):
        CollectorConfig.from_flat(**given)


def test_shard_flags_read_as_a_config(tmp_path: Path) -> None:
    """--shard-index and --shard-addresses a,b are flags of tunebus collect, derived from the settings."""
    from pipeline.entry.commands import collect_config
    from pipeline.entry.parser import parser

    args = parser().parse_args(["collect", "--out", str(tmp_path), "--shard-index", "1",
                                "--shard-addresses", ",".join(TWO),
                                "--shard-status-addresses", ",".join(TWO)])
    config = collect_config(args)
    assert (config.shard_index, config.shard_addresses, config.shard_count) == (1, TWO, 2)
    assert config.shard_status_addresses == TWO


async def test_a_shard_keeps_its_state_in_its_own_directory(tmp_path: Path, address: str) -> None:
    """Shard 1 of 2 keeps ledgers and lock in .tunebus/shard-1 and records the count in shards.json."""
    async with running_collector(tmp_path, address, sinks=("json", "csv"), shard_index=1,
                                 shard_addresses=(free_address(), address)) as collector:
        with dealer(address, "p", asynchronous=True) as sock:
            await sock.send(frame_events("p", 0, [start_event("p", 0), result_event("p", 1)]))
            await wait_until(lambda: collector.snapshot().sinks["csv"].events == 2, 10, "written")
    state = tmp_path / ".tunebus"
    assert json.loads((state / "shards.json").read_text()) == {"count": 2}
    assert {p.name for p in (state / "shard-1").iterdir()} >= {"collector.lock", "ledger-json.json",
                                                                "ledger-csv.json"}
    assert not list(state.glob("ledger-*.json"))


def test_an_out_of_two_shards_refuses_another_count(tmp_path: Path) -> None:
    """An --out recorded for 2 shards refuses 3 and a plain collector; a plain one's ledgers count as 1."""
    check_shard_count(tmp_path, 2)
    check_shard_count(tmp_path, 2)
    with pytest.raises(ShardCountMismatch, match="state of 2 shards and this collector is one of 3"):
        check_shard_count(tmp_path, 3)
    with pytest.raises(ShardCountMismatch, match=r"2 shards and this collector is one of 1 shard \(a plain"):
        check_shard_count(tmp_path, 1)
    plain = tmp_path / "plain"
    (plain / ".tunebus").mkdir(parents=True)
    check_shard_count(plain, 1)
    (plain / ".tunebus" / "ledger-json.json").write_text("{}")
    with pytest.raises(ShardCountMismatch, match=r"1 shard \(a plain collector\) and this .* one of 2"):
        check_shard_count(plain, 2)
    assert not (plain / ".tunebus" / "shards.json").exists()


@pytest.mark.slow
def test_a_plain_collector_on_a_sharded_out_exits_1_naming_both_counts(tmp_path: Path) -> None:
    """tunebus collect over an --out of 2 shards exits 1 with one line naming 2 and 1."""
    check_shard_count(tmp_path, 2)
    done = run_cli("collect", "--out", str(tmp_path), "--bind", free_address(), "--status-bind", "")
    assert done.returncode == 1, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "error" in x]
    assert "2 shards" in line and "1 shard (a plain collector)" in line
    assert not list((tmp_path / ".tunebus").glob("*.lock"))


async def test_status_follows_the_map_and_shows_a_silent_shard_as_such(tmp_path: Path, address: str) -> None:
    """tunebus status of shard 0 asks shard 1 too; a shard that does not answer is shown, not an error."""
    from pipeline.ops.shard_status import ask_every_shard
    from pipeline.ops.status_table import render_shards

    status, silent = free_address(), free_address()
    async with running_collector(tmp_path, address, shard_addresses=(address, free_address()),
                                 status_bind=status, shard_status_addresses=(status, silent)):
        answers = await asyncio.to_thread(ask_every_shard, status, 1.0)
        as_json = await asyncio.to_thread(run_cli_here, "status", status, "--json", "--timeout-s", "1")
    assert as_json.returncode == 0, as_json.stderr
    shard0, shard1 = json.loads(as_json.stdout)
    assert shard0["shard"] == {"index": 0, "count": 2, "status_addresses": [status, silent]}
    assert shard1 == {"address": silent, "error": f"no answer from {silent} within 1s"}
    assert [(a.index, a.address, a.status is not None) for a in answers] == [(0, status, True),
                                                                              (1, silent, False)]
    assert answers[0].status is not None and answers[0].status.shard.count == 2
    shown = render_shards(answers)
    assert shown.startswith("2 shards, 1 answering: 0 events, 0 events/s in all")
    assert f"== shard 1 of 2, status {silent}: NO ANSWER (no answer from {silent} within 1s)" in shown


def test_shards_refuse_an_out_a_plain_collector_has_just_taken(tmp_path: Path) -> None:
    """A plain collector holding --out's lock, before any ledger of it exists, keeps shards out."""
    from pipeline.collector.out_lock import OutLock

    lock = OutLock(tmp_path / ".tunebus", "tcp://127.0.0.1:1")
    try:
        with pytest.raises(ShardCountMismatch, match=r"in use by a plain collector \(pid \d+\) and this"):
            check_shard_count(tmp_path, 2)
    finally:
        lock.release()
    check_shard_count(tmp_path, 2)
