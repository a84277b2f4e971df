"""Refused CurveZMQ clients: each logged once with what to check, and counted in status and metrics."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import zmq

from pipeline.collector.refusals import Refusals
from pipeline.ops.status_table import render_status
from pipeline.testing import running_collector, wait_for
from pipeline.wire.sockets import make_keys


def test_each_client_and_reason_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Repeated refusals of one client log one line; every refusal is counted."""
    refusals = Refusals()
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            refusals("10.0.0.5", "Unknown key: client key abc... is not in --curve-clients")
        refusals("10.0.0.6", "Unknown key: client key def... is not in --curve-clients")
    assert refusals.total == 6 and refusals.by_reason == {"Unknown key": 6}
    assert [r.getMessage() for r in caplog.records] == [
        "refused a client at 10.0.0.5: Unknown key: client key abc... is not in --curve-clients",
        "refused a client at 10.0.0.6: Unknown key: client key def... is not in --curve-clients"]


def _dealer(ctx: zmq.Context[Any], address: str, keys: tuple[bytes, bytes, bytes] | None) -> zmq.Socket[Any]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys
    sock.connect(address)
    sock.send(b"hello")
    return sock


async def test_bad_clients_are_named_in_the_log_and_counted(tmp_path: Path, address: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """No Curve, the wrong server key and an unlisted key each get a warning saying what to check."""
    keys, clients = tmp_path / "keys", tmp_path / "clients"
    make_keys(keys, "server")
    make_keys(keys, "stranger")
    make_keys(clients, "driver")
    os.replace(clients / "driver.key_secret", keys / "driver.key_secret")
    server = zmq.auth.load_certificate(str(keys / "server.key"))[0]
    stranger = zmq.auth.load_certificate(str(keys / "stranger.key_secret"))
    ctx: zmq.Context[Any] = zmq.Context()
    caplog.set_level(logging.WARNING, logger="pipeline.collector.refusals")
    options = {"curve_secret_key": keys / "server.key_secret", "curve_clients": clients,
               "sinks": ("json",)}
    try:
        async with running_collector(tmp_path / "out", address, **options) as collector:
            socks = [_dealer(ctx, address, None),
                     _dealer(ctx, address, (stranger[0], stranger[1], stranger[0])),  # wrong server key
                     _dealer(ctx, address, (stranger[0], stranger[1], server))]  # not admitted
            await asyncio.to_thread(wait_for, lambda: len(collector.refusals.by_reason) >= 2, 20,
                                    "a refusal of each kind")
            snapshot = collector.snapshot()
            for sock in socks:
                sock.close()
    finally:
        ctx.term()
    messages = [r.getMessage() for r in caplog.records]
    assert any("is not in --curve-clients" in m for m in messages)
    assert any("no Curve keys or the wrong server key" in m for m in messages)
    assert len(messages) == len(set(messages))
    assert snapshot.refused >= 2 and snapshot.events == 0 and snapshot.bus == address
    assert "refused clients" in render_status(snapshot)
