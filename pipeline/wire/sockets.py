"""The sockets both ends rely on: the producer's DEALER, the collector's ROUTER, CurveZMQ keys."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
import zmq.auth
import zmq.utils.z85
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import recv_monitor_message

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_STATUS_ADDRESS", "CurveKeys", "collector_socket", "make_keys",
           "producer_socket",
           "start_authenticator", "watch_handshakes", "ZapAuthenticator"]

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
DEFAULT_STATUS_ADDRESS = "tcp://127.0.0.1:5556"
"""Where a collector answers ``tunebus status`` unless told otherwise."""
SEND_HWM_FRAMES = 1_000
RECEIVE_HWM_FRAMES = 1_000


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """A CurveZMQ key pair, and for a client the server's public key."""

    public: bytes
    secret: bytes = field(repr=False)  # never in a log line
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


Refused = Callable[[str, str], None]
"""Told of each refused client: its address (or the bus's, when ZeroMQ gives none) and why."""

HANDSHAKE_FAILURES = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                      | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class ZapAuthenticator(AsyncioAuthenticator):
    """ZAP that also tells ``on_refused`` which client it refused and why (pyzmq only logs at DEBUG)."""

    def __init__(self, ctx: zmq.Context[Any], on_refused: Refused) -> None:
        super().__init__(ctx)
        self.on_refused = on_refused
        self._asking: tuple[str, str] = ("", "")

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        if len(msg) >= 7:  # version, request id, domain, address, identity, mechanism, key
            key = zmq.utils.z85.encode(msg[6]).decode() if len(msg[6]) == 32 else ""
            self._asking = (msg[3].decode(errors="replace"), key)
        await super().handle_zap_message(msg)

    def _send_zap_reply(self, request_id: bytes, status_code: bytes, status_text: bytes,
                        user_id: str = "anonymous") -> None:
        if status_code != b"200":
            address, key = self._asking
            self.on_refused(address, f"{status_text.decode(errors='replace')}: client key {key[:12]}... is "
                                     f"not in --curve-clients")
        super()._send_zap_reply(request_id, status_code, status_text, user_id)


def start_authenticator(ctx: zmq.Context[Any], clients_dir: Path,
                        on_refused: Refused = lambda address, why: None) -> AsyncioAuthenticator:
    """ZAP for ``ctx``: admit only CurveZMQ clients whose public key file is in ``clients_dir``."""
    if not clients_dir.is_dir() or not any(clients_dir.glob("*.key")):
        raise ValueError(f"{clients_dir} holds no client public keys (*.key)")
    secrets = sorted(p.name for p in clients_dir.glob("*.key_secret"))
    if secrets:
        raise ValueError(f"{clients_dir} holds secret keys ({', '.join(secrets)}): only the clients' "
                         f"public .key files belong there; keep each .key_secret on its driver")
    auth = ZapAuthenticator(ctx, on_refused)
    auth.start()
    auth.configure_curve(domain="*", location=str(clients_dir))
    return auth


async def watch_handshakes(sock: zmq.asyncio.Socket, on_refused: Refused) -> None:
    """Tell ``on_refused`` of every failed handshake on ``sock`` until cancelled.

    ZAP names the clients it refuses; a client without Curve, or with the wrong
    server key, fails before ZAP is asked, and ZeroMQ gives no peer address for it.
    """
    monitor = sock.get_monitor_socket(HANDSHAKE_FAILURES)
    try:
        while True:
            event = await recv_monitor_message(monitor)
            if event["event"] != zmq.EVENT_HANDSHAKE_FAILED_AUTH:  # ZAP has said who and why
                on_refused(event["endpoint"].decode(errors="replace"),
                           f"CurveZMQ handshake failed (ZMTP error {event['value']:#x}): the client "
                           f"has no Curve keys or the wrong server key")
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


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
    try:
        if curve is not None:
            if curve.server_public is None:
                raise ValueError("a CurveZMQ client needs the collector's public key")
            sock.curve_publickey, sock.curve_secretkey = curve.public, curve.secret
            sock.curve_serverkey = curve.server_public
        sock.connect(address)
    except BaseException:
        sock.close(linger=0)  # else the context's term() waits for it forever
        raise
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
