"""The sockets both ends rely on: the producer's DEALER, the collector's ROUTER, CurveZMQ keys."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_STATUS_ADDRESS", "CurveKeys", "collector_socket", "make_keys",
           "producer_socket",
           "start_authenticator"]

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
DEFAULT_STATUS_ADDRESS = "tcp://127.0.0.1:5556"
"""Where a collector answers ``tunebus status`` unless told otherwise."""
SEND_HWM_FRAMES = 1_000
RECEIVE_HWM_FRAMES = 1_000


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """A CurveZMQ key pair, and for a client the server's public key."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None

    @classmethod
    def load(cls, secret_file: str | Path, server_public_file: str | Path | None = None) -> CurveKeys:
        """Keys from ``tunebus keygen`` files: a ``.key_secret`` and the server's ``.key``."""
        public, secret = zmq.auth.load_certificate(str(secret_file))
        if secret is None:
            raise ValueError(f"{secret_file} holds no secret key (use the .key_secret file)")
        server = zmq.auth.load_certificate(str(server_public_file))[0] if server_public_file else None
        return cls(public, secret, server)


def make_keys(directory: Path, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write a key pair ``<name>.key`` (public) and ``<name>.key_secret`` (mode 0600); return both paths.

    Refuses (ValueError, one line) a name that is not one plain file name, a
    directory that cannot be made, and an existing pair unless ``force``: every
    driver holding the old public key would be locked out.
    """
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
        raise ValueError(f"key name must be a plain file name, got {name!r}")
    directory = Path(directory)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    existing = [str(p) for p in (public, secret) if p.exists()]
    if existing and not force:
        raise ValueError(f"{existing[0]} already exists; replacing it locks out everyone holding the "
                         f"old key (use --force to replace it)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        old_umask = os.umask(0o077)  # the secret key is never readable by others, not even briefly
        try:
            zmq.auth.create_certificates(str(directory), name)
        finally:
            os.umask(old_umask)
        public.chmod(0o644)
    except OSError as exc:
        raise ValueError(f"cannot write keys into {str(directory)!r}: {exc.strerror or exc}") from exc
    return public, secret


def start_authenticator(ctx: zmq.Context[Any], clients_dir: Path) -> AsyncioAuthenticator:
    """ZAP for ``ctx``: admit only CurveZMQ clients whose public key file is in ``clients_dir``."""
    if not clients_dir.is_dir() or not any(clients_dir.glob("*.key")):
        raise ValueError(f"{clients_dir} holds no client public keys (*.key)")
    secrets = sorted(p.name for p in clients_dir.glob("*.key_secret"))
    if secrets:
        raise ValueError(f"{clients_dir} holds secret keys ({', '.join(secrets)}): only the clients' "
                         f"public .key files belong there; keep each .key_secret on its driver")
    auth = AsyncioAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(clients_dir))
    return auth


def producer_socket(ctx: zmq.Context[Any], address: str, producer: str,
                    curve: CurveKeys | None = None) -> zmq.Socket[Any]:
    """A DEALER that queues nothing for an absent collector and never hangs at exit.

    IMMEDIATE keeps frames out of ZeroMQ's pipes until a connection is up, so
    everything not yet delivered stays in the sender's own (bounded) buffer.
    The routing id is the producer id, so acknowledgements find the producer
    again after it reconnects.
    """
    sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.SNDHWM, SEND_HWM_FRAMES)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2_000)
    sock.setsockopt(zmq.ROUTING_ID, producer.encode())
    if curve is not None:
        if curve.server_public is None:
            raise ValueError("a CurveZMQ client needs the collector's public key")
        sock.curve_publickey, sock.curve_secretkey = curve.public, curve.secret
        sock.curve_serverkey = curve.server_public
    sock.connect(address)
    return sock


def collector_socket(
    ctx: zmq.Context[Any], address: str, max_message_bytes: int, curve: CurveKeys | None = None
) -> zmq.Socket[Any]:
    """A ROUTER that lets a reconnecting producer take over its routing id."""
    sock: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.RCVHWM, RECEIVE_HWM_FRAMES)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    if curve is not None:
        sock.curve_publickey, sock.curve_secretkey = curve.public, curve.secret
        sock.curve_server = True
    try:
        sock.bind(address)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise OSError(f"cannot bind {address}: {exc}") from exc
    return sock
