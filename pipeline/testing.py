"""Test helpers for tunebus and the sinks written for it: collectors, addresses, fakes, events, waits."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio

from pipeline.wire.codec import encode_event
from pipeline.wire.events import Event
from pipeline.wire.sockets import CurveKeys, make_keys
from sinks.base import Sink, TrialRef

if TYPE_CHECKING:
    from pipeline.collector.receiver import Collector
    from pipeline.producer.sender import Sender

# Public and stable like the rest of ``pipeline`` (as ``structlog.testing`` or
# OpenTelemetry's ``InMemorySpanExporter``): the project's own tests and benchmarks
# use these, and so can a third-party sink's tests. Nothing here imports Ray or Tune.
__all__ = ["EXPERIMENT", "TRIAL", "TRIAL_DIR", "CurvePair", "FailingSink", "GatedSink", "RecordingSink",
           "curve_pair", "dealer", "event", "free_address", "free_ports", "result_event", "result_events",
           "run_cli", "run_cli_here", "running_collector", "start_collector", "start_event",
           "start_shard_set", "submit_results", "wait_for", "wait_until", "written"]

EXPERIMENT = "exp"
TRIAL = "t1"
TRIAL_DIR = "t1_dir"
POLL_INTERVAL_S = 0.02
COLLECTOR_START_TIMEOUT_S = 10.0
COLLECTOR_STOP_TIMEOUT_S = 30.0


def free_address() -> str:
    """A loopback TCP address nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports nobody listens on right now (for shards)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first


# -- collectors ---------------------------------------------------------------------------------

@asynccontextmanager
async def running_collector(out: Path, address: str, **options: Any) -> AsyncIterator[Collector]:
    """A collector served in-process on ``address`` for the block, stopped (drained) when it ends.

    ``options`` are settings by their flat names (``sinks=("json", "aim"), aim_durable=True``);
    the status socket is off unless ``status_bind`` is given (the default address would be
    shared by every test).
    """
    from pipeline.collector.assembly import CollectorConfig, build_collector

    options.setdefault("status_bind", "")
    collector = build_collector(CollectorConfig.from_flat(out=out, bind=address, **options))
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    await asyncio.wait_for(collector.ready.wait(), COLLECTOR_START_TIMEOUT_S)
    try:
        yield collector
    finally:
        stop.set()
        await asyncio.wait_for(task, COLLECTOR_STOP_TIMEOUT_S)


def start_collector(address: str, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``tunebus collect --bind address --out out *extra`` in a child process.

    With no status socket unless ``extra`` asks for one: the default port is one per machine.
    """
    status = () if "--status-bind" in extra else ("--status-bind", "")
    cmd = [sys.executable, "-m", "pipeline.entry.cli", "collect", "--bind", address,
           "--out", str(out), *status, *extra]
    return subprocess.Popen(cmd)


def start_shard_set(out: Path, shards: int, bus_port: int, status_port: int,
                    sinks: str = "json,csv") -> subprocess.Popen[bytes]:
    """``tunebus collect --shards N`` on loopback ports from ``bus_port``/``status_port`` up, in a child."""
    return subprocess.Popen([sys.executable, "-m", "pipeline.entry.cli", "collect", "--shards", str(shards),
                             "--bind", f"tcp://127.0.0.1:{bus_port}", "--status-bind",
                             f"tcp://127.0.0.1:{status_port}", "--out", str(out), "--sinks", sinks,
                             "--log-interval-s", "0"])


def run_cli(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``tunebus *args`` in a child process, its output captured as text."""
    return subprocess.run([sys.executable, "-m", "pipeline.entry.cli", *args], capture_output=True,
                          text=True, timeout=timeout_s, check=False)


def run_cli_here(*args: str) -> subprocess.CompletedProcess[str]:
    """``tunebus *args`` in this process, output captured: for commands that end before serving anything."""
    from pipeline.entry.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            if isinstance(exc.code, str):
                print(exc.code, file=err)
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess(["tunebus", *args], code, out.getvalue(), err.getvalue())


@contextmanager
def dealer(address: str, identity: str, *, asynchronous: bool = False, linger_ms: int = 0,
           send_hwm: int | None = None, curve: tuple[bytes, bytes, bytes] | None = None,
           ) -> Iterator[zmq.Socket[Any]]:
    """A raw producer socket (DEALER named ``identity``) connected to ``address``, closed after.

    ``send_hwm``: frames queued before sends block (0: no limit); ZeroMQ's default otherwise.
    ``curve``: the client's public and secret key and the server's public key, for CurveZMQ.
    """
    ctx: zmq.Context[Any] = zmq.asyncio.Context() if asynchronous else zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt(zmq.ROUTING_ID, identity.encode())
    if send_hwm is not None:
        sock.setsockopt(zmq.SNDHWM, send_hwm)
    if curve is not None:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = curve
    sock.connect(address)
    try:
        yield sock
    finally:
        sock.close(linger=linger_ms)
        ctx.term()


@dataclass(frozen=True, slots=True)
class CurvePair:
    """A collector's CurveZMQ key file and admitted-clients folder, and an admitted driver's keys."""

    server_secret: Path
    clients: Path
    driver: CurveKeys

    def collector_options(self) -> dict[str, Path]:
        """The collector settings that require these keys."""
        return {"curve_secret_key": self.server_secret, "curve_clients": self.clients}


def curve_pair(root: Path) -> CurvePair:
    """Keys under ``root`` as the README's recipe makes them: the driver's secret never in ``clients``."""
    keys, clients = root / "keys", root / "clients"
    make_keys(keys, "server")
    make_keys(keys, "driver")
    clients.mkdir(parents=True, exist_ok=True)
    shutil.copy(keys / "driver.key", clients / "driver.key")
    return CurvePair(keys / "server.key_secret", clients,
                     CurveKeys.load(keys / "driver.key_secret", keys / "server.key"))


# -- waiting on conditions ----------------------------------------------------------------------

def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


async def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """``wait_for`` on the event loop: polls without blocking it."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_S)


# -- events -------------------------------------------------------------------------------------

def start_event(producer: str, seq: int = 0) -> bytes:
    """An encoded ``trial_start`` of the test trial, with a config and a pickled params blob."""
    return encode_event("trial_start", producer, seq, time.time(), EXPERIMENT, TRIAL, TRIAL_DIR,
                        {"config": {"lr": 0.1}, "params_pkl": b"\x80\x04N."})


def result_event(producer: str, seq: int) -> bytes:
    """An encoded ``result`` of the test trial whose ``i`` and iteration are ``seq``."""
    return encode_event("result", producer, seq, time.time(), EXPERIMENT, TRIAL, TRIAL_DIR,
                        {"i": seq, "training_iteration": seq})


def event(kind: str, payload: dict[str, Any] | None = None, *, seq: int = 0, producer: str = "p",
          ts: float = 0.0, experiment: str = EXPERIMENT, trial: str = TRIAL,
          trial_dir: str | None = None) -> Event:
    """A decoded event of any kind, as the collector hands it to filters and sinks.

    Experiment-level kinds get no trial (``setup`` no experiment either); a trial's
    directory defaults to ``<trial>_dir``.
    """
    if kind in ("setup", "experiment_end"):
        trial, trial_dir = "", ""
        experiment = "" if kind == "setup" else experiment
    return Event(kind, producer, seq, ts, experiment, trial,
                 f"{trial}_dir" if trial_dir is None else trial_dir, payload or {})


def result_events(count: int, producer: str = "p", first: int = 0) -> list[Event]:
    """``count`` decoded results of the test trial, seqs (and ``i``) from ``first`` on."""
    return [Event("result", producer, seq, 1.5, EXPERIMENT, TRIAL, TRIAL_DIR, {"i": seq})
            for seq in range(first, first + count)]


def submit_results(sender: Sender, count: int) -> None:
    """A trial start (seq 0) and ``count`` results (seq 1..count) handed to ``sender``."""
    sender.submit(0, start_event(sender.producer))
    for seq in range(1, count + 1):
        sender.submit(seq, result_event(sender.producer, seq))


def written(out: Path) -> list[int]:
    """The ``i`` of every row in the test trial's result.json under ``out``, in file order."""
    path = out / EXPERIMENT / TRIAL_DIR / "result.json"
    if not path.exists():
        return []
    return [json.loads(line)["i"] for line in path.read_text().splitlines()]


# -- sinks that record --------------------------------------------------------------------------

class RecordingSink(Sink):
    """A sink keeping every call and every result in memory, in order."""

    def __init__(self, name: str = "recording", durable: bool = True) -> None:
        self.name, self.durable = name, durable
        self.calls: list[tuple[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def values(self, key: str = "i") -> list[Any]:
        """``key`` of every result written so far."""
        return [r[key] for r in self.results]

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        self.calls.append(("open", trial.key))

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        self.calls.append(("write", len(results)))
        self.results.extend(results)

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        self.calls.append(("close", trial.key))

    def flush(self) -> None:
        self.calls.append(("flush", None))

    def close(self) -> None:
        self.calls.append(("closed", None))


class FailingSink(RecordingSink):
    """Raises ``error`` on its first ``failures`` writes, then records like ``RecordingSink``."""

    def __init__(self, failures: int, error: Exception | None = None, name: str = "failing") -> None:
        super().__init__(name)
        self.failures = failures
        self.error = error if error is not None else OSError("disk says no")

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        super().write_results(trial, results)


class GatedSink(Sink):
    """Forwards to ``to``, but each write waits until ``gate`` is set: a sink as slow as a test wants."""

    def __init__(self, to: Sink, gate: threading.Event, timeout_s: float = 60.0) -> None:
        self.to, self.gate, self.timeout_s = to, gate, timeout_s
        self.name, self.durable = to.name, to.durable
        self.appends, self.rewrites_head = to.appends, to.rewrites_head

    def open_trial(self, trial: TrialRef, start: Event | None) -> None:
        self.to.open_trial(trial, start)

    def write_results(self, trial: TrialRef, results: list[dict[str, Any]]) -> None:
        if not self.gate.wait(self.timeout_s):
            raise TimeoutError(f"the gate stayed shut for {self.timeout_s:g}s")
        self.to.write_results(trial, results)

    def close_trial(self, trial: TrialRef, end: Event | None) -> None:
        self.to.close_trial(trial, end)

    def flush(self) -> None:
        self.to.flush()

    def close(self) -> None:
        self.to.close()
