"""The Ray actor's CurveZMQ keys: made in a private temporary directory per actor, deleted after it."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.wire.sockets import CurveKeys, make_keys

__all__ = ["CURVE_FLAGS", "KEYS_PREFIX", "KeySet", "forget_keys", "forget_orphaned_keys", "make_curve_keys",
           "make_key_set", "new_keys_dir", "write_key_set"]

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


@dataclass(frozen=True, slots=True)
class KeySet:
    """A collector's key files and the one client pair it admits: what every shard of a set shares.

    The files' bytes (as ``tunebus keygen`` writes them) travel from the driver that
    starts the shards to each shard's actor over Ray, never through ``out``.
    """

    server_public: bytes = field(repr=False)
    server_secret: bytes = field(repr=False)
    client_public: bytes = field(repr=False)
    client: CurveKeys = field(repr=False)


def make_key_set() -> KeySet:
    """A new collector pair and client pair, made in a private temporary directory that is then deleted."""
    directory = Path(tempfile.mkdtemp(prefix="tunebus-keys-"))
    try:
        server_public, server_secret = make_keys(directory, "collector")
        client_public, client_secret = make_keys(directory, "client")
        return KeySet(server_public.read_bytes(), server_secret.read_bytes(), client_public.read_bytes(),
                      CurveKeys.load(client_secret, server_public))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def write_key_set(directory: Path, keys: KeySet) -> tuple[str, ...]:
    """Write ``keys``' collector pair and admitted client into ``directory``; the collect flags for them.

    The client's secret is not written: the actor holds it in memory and hands it out.
    """
    clients = directory / "clients"
    clients.mkdir(mode=0o700)
    server_secret = directory / "collector.key_secret"
    for path, data, mode in ((directory / "collector.key", keys.server_public, 0o644),
                             (server_secret, keys.server_secret, 0o600),
                             (clients / "client.key", keys.client_public, 0o644)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    return CURVE_FLAGS[0], str(server_secret), CURVE_FLAGS[1], str(clients)


def make_curve_keys(directory: Path) -> tuple[tuple[str, ...], CurveKeys]:
    """The collector's key pair and one admitted client's in ``directory``: the collect flags, the
    client's keys. The client's secret stays in memory only (the actor hands it out)."""
    keys = make_key_set()
    return write_key_set(directory, keys), keys.client


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

