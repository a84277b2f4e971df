"""The Ray actors' key set and shard binds, without Ray: one key set per shard, fixed ports moved by index."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq.auth

from pipeline.entry.ray_actor import shard_bind, shard_name
from pipeline.entry.ray_keys import CURVE_FLAGS, make_key_set, write_key_set
from pipeline.wire.sockets import CurveKeys


def test_one_key_set_written_for_two_shards_gives_both_the_same_collector_and_admitted_client(
        tmp_path: Path) -> None:
    """Each shard's directory holds the same collector pair and the client's public key only, secret
    0600; the flags name them; the client pair handed out matches; nothing secret in a repr."""
    keys = make_key_set()
    written = []
    for k in range(2):
        directory = tmp_path / f"shard-{k}"
        directory.mkdir(mode=0o700)
        flags = write_key_set(directory, keys)
        assert flags == (CURVE_FLAGS[0], str(directory / "collector.key_secret"),
                         CURVE_FLAGS[1], str(directory / "clients"))
        assert (directory / "collector.key_secret").stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in directory.rglob("*")) == [
            "client.key", "clients", "collector.key", "collector.key_secret"]
        written.append(CurveKeys.load(directory / "collector.key_secret"))
        admitted = zmq.auth.load_certificate(str(directory / "clients" / "client.key"))[0]
        assert admitted == keys.client.public
    assert written[0] == written[1] and written[0].public == keys.client.server_public
    assert keys.client.secret.decode() not in repr(keys) and keys.server_secret.decode() not in repr(keys)


def test_a_key_set_is_written_once_per_directory(tmp_path: Path) -> None:
    """Writing into a directory that has keys already is refused, not overwritten."""
    keys = make_key_set()
    write_key_set(tmp_path, keys)
    with pytest.raises(FileExistsError, match="clients"):
        write_key_set(tmp_path, keys)


@pytest.mark.parametrize(("bind", "index", "expected"), [
    (None, 1, None),
    ("tcp://0.0.0.0:5555", 0, "tcp://0.0.0.0:5555"),
    ("tcp://0.0.0.0:5555", 2, "tcp://0.0.0.0:5557"),
    ("tcp://127.0.0.1:0", 3, "tcp://127.0.0.1:0"),
    ("tcp://*:*", 1, "tcp://*:*"),
])
def test_a_fixed_port_moves_up_by_the_shard_index_and_port_0_stays(
        bind: str | None, index: int, expected: str | None) -> None:
    """Shard k binds a fixed port + k, as ``tunebus collect --shards`` does; a free port stays free."""
    assert shard_bind(bind, index) == expected


def test_shard_0_is_called_by_the_name_and_the_others_after_it() -> None:
    """``name`` for shard 0, ``name-shard-k`` for shard k."""
    assert [shard_name("c", k) for k in range(3)] == ["c", "c-shard-1", "c-shard-2"]
