"""The Ray actor's CurveZMQ keys: made in a private temporary directory per actor, deleted after it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pipeline.wire.sockets import CurveKeys, make_keys

__all__ = ["CURVE_FLAGS", "KEYS_PREFIX", "forget_keys", "forget_orphaned_keys", "make_curve_keys",
           "new_keys_dir"]

CURVE_FLAGS = ("--curve-secret-key", "--curve-clients")
KEYS_PREFIX = "tunebus-actor-keys-"
"""``<temp dir>/tunebus-actor-keys-<actor pid>-*``: an actor's keys, while it lives."""


def new_keys_dir() -> Path:
    """A fresh 0700 directory for this process's keys, after deleting those of actors that are gone."""
    forget_orphaned_keys()
    return Path(tempfile.mkdtemp(prefix=f"{KEYS_PREFIX}{os.getpid()}-"))


def forget_keys(directory: Path | None) -> None:
    """Delete an actor's key directory (None: it made none)."""
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def make_curve_keys(directory: Path) -> tuple[tuple[str, ...], CurveKeys]:
    """The collector's key pair and one admitted client's in ``directory``: the collect flags, the
    client's keys. The client's secret stays in memory only (the actor hands it out)."""
    server_public, server_secret = make_keys(directory, "collector")
    client_public, client_secret = make_keys(directory, "client")
    keys = CurveKeys.load(client_secret, server_public)
    client_secret.unlink()
    clients = directory / "clients"
    clients.mkdir(mode=0o700)
    client_public.rename(clients / client_public.name)
    return (CURVE_FLAGS[0], str(server_secret), CURVE_FLAGS[1], str(clients)), keys


def forget_orphaned_keys() -> None:
    """Delete the key directories of actors that are gone without ``stop`` (``ray.kill``)."""
    for directory in Path(tempfile.gettempdir()).glob(f"{KEYS_PREFIX}*-*"):
        pid = directory.name.removeprefix(KEYS_PREFIX).split("-", 1)[0]
        try:
            mine = directory.stat().st_uid == os.getuid()
        except OSError:
            continue
        if mine and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

