"""One collector per --out: a second is refused naming the first, a killed one never blocks a restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from pipeline.collector.out_lock import LOCK_FILE, OutLock, OutLocked
from pipeline.testing import free_address, run_cli, start_collector, wait_for


def _holds(out: Path, pid: int, address: str) -> bool:
    """The lock file names ``pid`` and ``address`` is bound (so its signal handlers are set)."""
    path = out / ".tunebus" / LOCK_FILE
    if not (path.exists() and path.read_text().startswith(f"{pid} tcp://")):
        return False
    host, port = address.removeprefix("tcp://").split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) == 0


def _collect(out: Path, address: str, status_bind: str = "") -> subprocess.CompletedProcess[str]:
    return run_cli("collect", "--bind", address, "--out", str(out), "--status-bind", status_bind,
                   "--log-level", "WARNING")


def test_a_second_lock_on_one_out_names_the_holder(tmp_path: Path) -> None:
    """The second OutLock on a state directory raises, quoting the holder's pid and address."""
    first = OutLock(tmp_path / ".tunebus", "tcp://127.0.0.1:1")
    with pytest.raises(OutLocked, match=f"in use by another collector \\(pid {os.getpid()}, "
                                        "bind tcp://127.0.0.1:1\\)"):
        OutLock(tmp_path / ".tunebus", "tcp://127.0.0.1:2")
    first.release()
    OutLock(tmp_path / ".tunebus", "tcp://127.0.0.1:2").release()


@pytest.mark.slow  # collector child processes
def test_a_second_collector_on_one_out_exits_with_one_line(tmp_path: Path, address: str) -> None:
    """Two ``tunebus collect`` on one --out: the second exits 1 with one line naming pid and bind."""
    first = start_collector(address, tmp_path, "--status-bind", "")
    try:
        wait_for(lambda: _holds(tmp_path, first.pid, address), 30, "the first collector's lock")
        second = _collect(tmp_path, free_address())
    finally:
        first.terminate()
        assert first.wait(timeout=60) == 0
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"tunebus collect: error: {tmp_path} is in use by another collector "
        f"(pid {first.pid}, bind {address}); one collector per --out"]


@pytest.mark.slow  # collector child processes
def test_a_killed_collector_does_not_block_a_restart(tmp_path: Path, address: str) -> None:
    """After kill -9 of the holder, a new collector on the same --out starts and stops cleanly."""
    killed = start_collector(address, tmp_path, "--status-bind", "")
    try:
        wait_for(lambda: _holds(tmp_path, killed.pid, address), 30, "the first collector's lock")
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    again = start_collector(address, tmp_path, "--status-bind", "")
    try:
        wait_for(lambda: _holds(tmp_path, again.pid, address), 30, "the restarted collector's lock")
    finally:
        again.terminate()
        assert again.wait(timeout=60) == 0


@pytest.mark.slow  # collector child processes
def test_a_start_on_a_busy_port_leaves_no_state_directory(tmp_path: Path) -> None:
    """A collector that cannot bind exits 1 and leaves no fresh --out or .tunebus behind."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = _collect(tmp_path / "out", f"tcp://127.0.0.1:{busy.getsockname()[1]}")
    assert done.returncode == 1
    assert "cannot bind" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a collector child process
def test_a_start_on_a_taken_status_port_leaves_no_state_directory(tmp_path: Path) -> None:
    """A collector whose status port is taken exits 1 and leaves no fresh --out behind either."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = _collect(tmp_path / "out", free_address(), f"tcp://127.0.0.1:{busy.getsockname()[1]}")
    assert done.returncode == 1
    assert not (tmp_path / "out").exists()
