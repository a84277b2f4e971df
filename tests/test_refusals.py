"""Refused CurveZMQ clients: each logged once with what to check, and counted in status and metrics."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import pytest
import zmq

from pipeline.collector.refusals import Refusals
from pipeline.ops.status_table import render_status
from pipeline.testing import dealer, running_collector, wait_until
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
    caplog.set_level(logging.WARNING, logger="pipeline.collector.refusals")
    options = {"curve_secret_key": keys / "server.key_secret", "curve_clients": clients,
               "sinks": ("json",)}
    clients_keys = [None, (stranger[0], stranger[1], stranger[0]),  # no Curve; the wrong server key
                    (stranger[0], stranger[1], server)]  # a key not admitted
    async with running_collector(tmp_path / "out", address, **options) as collector:
        with contextlib.ExitStack() as stack:
            for n, curve in enumerate(clients_keys):
                stack.enter_context(dealer(address, f"bad{n}", curve=curve)).send(b"hello")
            await wait_until(lambda: len(collector.refusals.by_reason) >= 2, 20, "a refusal of each kind")
            snapshot = collector.snapshot()
    messages = [r.getMessage() for r in caplog.records]
    assert any("is not in --curve-clients" in m for m in messages)
    assert any("no Curve keys or the wrong server key" in m for m in messages)
    assert len(messages) == len(set(messages))
    assert snapshot.refused >= 2 and snapshot.events == 0 and snapshot.bus == address
    assert f"refused clients {snapshot.refused} " in render_status(snapshot)
