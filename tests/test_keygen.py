"""``tunebus keygen`` and the client-key folder: no silent overwrite, private secrets, one-line errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq

from pipeline.testing import run_cli_here
from pipeline.wire.sockets import make_keys, start_authenticator


def _keygen(*args: str) -> tuple[int, str]:
    """``tunebus keygen ARGS`` in this process: exit status and stderr."""
    done = run_cli_here("keygen", *args)
    return done.returncode, done.stderr


def test_existing_pair_is_kept_without_force(tmp_path: Path) -> None:
    """A second keygen of the same name refuses in one line and leaves the old pair as it was."""
    assert _keygen(str(tmp_path), "collector")[0] == 0
    before = (tmp_path / "collector.key_secret").read_bytes()
    code, err = _keygen(str(tmp_path), "collector")
    assert code == 2
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert (tmp_path / "collector.key_secret").read_bytes() == before


def test_force_replaces_the_pair(tmp_path: Path) -> None:
    """With --force the pair is written anew."""
    _keygen(str(tmp_path), "collector")
    before = (tmp_path / "collector.key").read_bytes()
    assert _keygen(str(tmp_path), "collector", "--force")[0] == 0
    assert (tmp_path / "collector.key").read_bytes() != before


def test_secret_key_is_private_and_public_key_readable(tmp_path: Path) -> None:
    """The secret key file is 0600, the public one 0644."""
    public, secret = make_keys(tmp_path, "driver1")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644


def test_a_file_in_the_way_is_one_line(tmp_path: Path) -> None:
    """A file where the key folder should be gives one line and exit 2, not a traceback."""
    blocker = tmp_path / "keys"
    blocker.write_text("not a folder")
    code, err = _keygen(str(blocker / "sub"), "collector")
    assert code == 2
    assert err.startswith("tunebus keygen: error: cannot write keys into") and err.count("\n") == 1


@pytest.mark.parametrize("name", ["", "..", ".", "../escape", "a/b", "a\\b"])
def test_names_that_escape_or_hide_are_refused(tmp_path: Path, name: str) -> None:
    """A key name must be one plain file name."""
    with pytest.raises(ValueError, match="key name must be a plain file name"):
        make_keys(tmp_path / "keys", name)
    assert not (tmp_path / "escape.key").exists()


def test_clients_folder_with_a_secret_key_is_refused(tmp_path: Path) -> None:
    """The collector will not admit from a folder that holds a client's secret key."""
    make_keys(tmp_path / "clients", "driver1")
    ctx = zmq.Context()
    try:
        with pytest.raises(ValueError, match=r"secret keys \(driver1.key_secret\)"):
            start_authenticator(ctx, tmp_path / "clients")  # type: ignore[arg-type]
    finally:
        ctx.term()
