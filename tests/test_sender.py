"""The sender thread: sleeps while there is nothing to do, wakes at once, shrinks oversized events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from pipeline.producer.sender import Sender, SenderConfig
from pipeline.testing import start_event, submit_results, wait_for
from pipeline.wire.codec import decode_frame, encode_event

LONG_S = 60.0  # far longer than any wait below: only a wake-up can beat it
BUSY_WAKES = 50
"""Send intervals (5 ms each) a busy sender wakes for while the idle one must sleep through."""


@pytest.fixture
def router() -> Iterator[tuple[zmq.Socket[Any], str]]:
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(linger=0)
    ctx.term()


def _sleepy_sender(address: str, tmp_path: Path) -> Sender:
    return Sender(address, "sleepy", SenderConfig(spool_dir=str(tmp_path / "spool"),
                                                  idle_poll_s=LONG_S, resend_after_s=LONG_S))


def test_an_idle_sender_sleeps_while_a_busy_one_polls_every_interval(
        tmp_path: Path, router: tuple[zmq.Socket[Any], str]) -> None:
    """With nothing to send the thread stays asleep while a sender awaiting an ack wakes every 5 ms."""
    sock, address = router
    idle = _sleepy_sender(address, tmp_path)
    busy = Sender(address, "busy", SenderConfig(spool_dir=str(tmp_path / "busy"), send_interval_s=0.005,
                                                resend_after_s=LONG_S))
    busy.submit(0, start_event("busy"))
    assert sock.poll(int(LONG_S * 1000)), "the busy sender sent nothing"
    wait_for(lambda: idle.asleep, LONG_S, "the idle sender went to sleep")
    slept_at = idle.stats().polls
    woke = busy.stats().polls
    wait_for(lambda: busy.stats().polls >= woke + BUSY_WAKES, LONG_S,
             f"the busy sender woke {BUSY_WAKES} times")  # unacked: it polls every send interval
    assert idle.asleep and idle.stats().polls == slept_at, "the idle sender woke while the busy one polled"
    busy.close()
    idle.close()


def test_a_submit_wakes_a_sleeping_sender(tmp_path: Path, router: tuple[zmq.Socket[Any], str]) -> None:
    """An event submitted to a sleeping sender reaches the collector long before its idle poll ends."""
    sock, address = router
    sender = _sleepy_sender(address, tmp_path)
    wait_for(lambda: sender.asleep, LONG_S, "the sender went to sleep")
    sender.submit(0, start_event("sleepy"))
    assert sock.poll(int(LONG_S / 3 * 1000)), "the sender slept through the submit"
    identity, frame = sock.recv_multipart()
    assert identity == b"sleepy" and msgpack.unpackb(frame)[1] == "sleepy"
    sock.send_multipart([identity, msgpack.packb(["ack", 0])])
    assert sender.flush(LONG_S / 3)
    began = time.monotonic()
    sender.close()
    assert time.monotonic() - began < LONG_S / 3, "close did not wake the sender"
    assert not sender.running


def test_acks_do_not_make_a_sender_send_more_often_than_its_interval(
        tmp_path: Path, router: tuple[zmq.Socket[Any], str]) -> None:
    """An ack answered at once by a new submit waits for the send interval: frames per second stay bounded."""
    sock, address = router
    sender = Sender(address, "lingers", SenderConfig(spool_dir=str(tmp_path / "spool"), send_interval_s=0.2,
                                                     resend_after_s=LONG_S))
    seq, frames = 0, 0
    sender.submit(seq, start_event("lingers"))
    deadline = time.monotonic() + 1.0
    while (left := deadline - time.monotonic()) > 0:
        if not sock.poll(int(left * 1000) + 1):
            break
        identity, raw = sock.recv_multipart()
        frames += 1
        seq = decode_frame(raw).events[-1].seq
        sock.send_multipart([identity, msgpack.packb(["ack", seq])])
        seq += 1
        sender.submit(seq, start_event("lingers", seq))  # each ack would otherwise send the next frame
    sender.close()
    assert 2 <= frames <= 1.0 / 0.2 + 2, f"{frames} frames in 1 s with a 0.2 s send interval"


def test_an_event_over_max_event_bytes_leaves_with_its_bulky_values_noted(
        tmp_path: Path, router: tuple[zmq.Socket[Any], str]) -> None:
    """The sender thread, not the driver, brings an oversized event under the limit before it travels."""
    sock, address = router
    sender = Sender(address, "big", SenderConfig(spool_dir=str(tmp_path / "spool"), max_event_bytes=1 << 16))
    payload = {"loss": 0.5, "frames": np.zeros(100_000, dtype=np.uint8), "training_iteration": 1}
    sender.submit(0, encode_event("result", "big", 0, 1.0, "e", "t", "d", payload))
    assert sock.poll(20_000), "nothing was sent"
    _, raw = sock.recv_multipart()
    [event] = decode_frame(raw).events
    assert len(raw) < 1 << 16 and event.payload["loss"] == 0.5
    assert "ndarray of 100" in str(event.payload["frames"])
    sender.close()


def test_a_spill_file_outlives_a_failed_save(tmp_path: Path, address: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """When saving the undelivered events fails, the .live spill they came from is still on disk."""
    from pipeline.producer import sender as sender_module

    def failing_write(*args: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(sender_module, "write_spool", failing_write)
    sender = Sender(address, "p1", SenderConfig(spool_dir=str(tmp_path / "spool"), max_buffer_events=5))
    submit_results(sender, 50)
    wait_for(lambda: sender.stats().spooled > 0, 20, "events spilled past memory")
    sender.close()
    assert (tmp_path / "spool" / "p1.live").stat().st_size > 0
