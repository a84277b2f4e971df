"""A non-durable sink in its own process at lower priority: started, fed, watched and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.collector.frame_log import FrameLog, Position
from pipeline.collector.settings import Choice, Integer, Setting
from pipeline.collector.snapshot import SinkSnapshot
from pipeline.wire.codec import encode_stored, frame_events
from pipeline.wire.events import Event

__all__ = ["PROCESS_SETTINGS", "ChildSpec", "SinkProcess", "Switch", "child_spec", "take_backlog"]

log = logging.getLogger(__name__)

MAX_RESTART_DELAY_S = 30.0
STOP_WAIT_S = 10.0
DRAIN_TRIES = 3
"""Failed children in a row, with nothing written, after which a drain gives up (the log stays on disk)."""
DRAINED = 0
STOPPED = 3
"""The child's exit codes: it wrote everything the log held (asked by closing its stdin), or it
stopped early on SIGTERM."""


@dataclass(frozen=True, slots=True)
class Switch(Choice):
    """On or off (TOML true/false, or the words on/off, true/false, yes/no); kept as ``"on"``/``"off"``,
    so that off survives the trip to flags (``--aim-process off``) as a value, not an absent flag."""

    options: tuple[str, ...] = ("off", "on")
    metavar: str = "ON|OFF"

    def expected(self) -> str:
        return "on or off"

    def from_value(self, value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        word = value.strip().lower() if isinstance(value, str) else None
        if word in ("on", "true", "yes", "1"):
            return "on"
        if word in ("off", "false", "no", "0"):
            return "off"
        raise self.bad(value)


PROCESS_SETTINGS = (
    Setting("process", Switch(), None, "run this sink in its own process at lower priority, fed from "
            "disk, so it lags and catches up instead of taking CPU from Tune (only a sink that is not "
            "durable)", default_text="on for aim, off for the others"),
    Setting("nice", Integer(0, 19), 19, "how much lower the priority of this sink's own process is "
            "(os.nice; 19, the lowest, keeps Aim off Tune's cores: at 10 the 32x300 sweep took 1.29x)"),
)
"""Every sink's ``process`` and ``nice`` options (``--aim-process off``, ``--aim-nice 19``)."""


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """Everything the sink's process needs, as JSON on its command line."""

    sink: str
    target: str
    """``module:Class`` of the sink (a sink registered in the collector's process only is found too)."""
    out: str
    state: str
    log: str
    options: dict[str, Any]
    paths: dict[str, str]
    batch: tuple[int, float]
    files: int
    quarantine_max_bytes: int
    nice: int
    parent: int
    log_level: str


@dataclass(slots=True)
class ChildStats:
    """What one sink process reported last (its counters start at zero)."""

    events: int = 0
    batches: int = 0
    errors: int = 0
    poisoned: int = 0
    busy_s: float = 0.0
    bytes: int | None = None
    last_error: str = ""

    def add(self, other: ChildStats) -> None:
        self.events += other.events
        self.batches += other.batches
        self.errors += other.errors
        self.poisoned += other.poisoned
        self.busy_s += other.busy_s
        if other.bytes is not None:
            self.bytes = (self.bytes or 0) + other.bytes
        self.last_error = other.last_error or self.last_error


@dataclass
class SinkProcess:
    """What the collector holds of a sink that runs in its own process.

    The collector appends every frame it accepted to the sink's ``FrameLog`` (the frame's own
    bytes: nothing is encoded again) and never waits for the sink, unless the log holds
    ``max_bytes`` unread (backpressure, as a full backlog). The child, niced, reads the log,
    runs the sink's filters and the sink in a ``SinkWorker`` of its own, commits how far it
    has written, and reports its counters on its stdout, a JSON line at a time. A child that
    dies is started again and resumes from its last commit (at least once); closing its stdin
    asks it to write everything the log holds and exit. On Linux it is killed with the
    collector (``PR_SET_PDEATHSIG``), so it never outlives it.
    """

    spec: ChildSpec
    frames: FrameLog
    filters: tuple[str, ...] = ()
    durable: bool = False
    marks: dict[str, int] = field(default_factory=dict)
    """Never set: acknowledgements do not wait for a sink that is not durable."""
    ledger: None = None
    restarts: int = 0

    def __post_init__(self) -> None:
        self.queue = self  # what the fan-out closes and measures, as a SinkWorker's queue
        self._closed = False
        self._room = asyncio.Event()
        self._done = ChildStats()
        self._current = ChildStats()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def name(self) -> str:
        return self.spec.sink

    def __len__(self) -> int:
        return self.frames.unread_events

    async def put(self, events: Sequence[Event], frame: bytes | None = None) -> None:
        """Append ``frame`` (the received frame ``events`` were accepted from) to the log; without one,
        the events encoded as frames. Waits only while the log is full."""
        if not events:
            return
        for raw, first, last in _frames(events, frame):
            while not self.frames.has_room(len(raw)):
                self._room.clear()
                await self._room.wait()
            self.frames.append(raw, first, last)

    async def close(self) -> None:
        """No more frames: the child writes what the log holds, then exits."""
        self._closed = True
        self.frames.close()
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()

    async def run(self) -> None:
        """Start the child, and again whenever it dies, until it has drained the closed log."""
        failures = 0
        try:
            while True:
                try:
                    proc = self._proc = await self._spawn()
                except OSError as exc:  # no process to be had (fork refused): try again later
                    failures += 1
                    log.error("sink %s: could not start its process: %s", self.name, exc)
                    await asyncio.sleep(min(MAX_RESTART_DELAY_S, 0.1 * 2 ** failures))
                    continue
                if self._closed and proc.stdin is not None:
                    proc.stdin.close()
                wrote = await self._follow(proc)
                code = await proc.wait()
                self._retire()
                if code == DRAINED and self._closed:
                    return
                failures = 0 if wrote else failures + 1
                if self._closed and failures >= DRAIN_TRIES:
                    log.error("sink %s: its process failed %d times in a row while draining; %d events "
                              "stay in %s for the next start", self.name, failures,
                              self.frames.unread_events, self.frames.directory)
                    return
                delay = min(MAX_RESTART_DELAY_S, 0.1 * 2 ** failures)
                self.restarts += 1
                log.error("sink %s: its process (pid %d) exited with %s; starting it again in %.1fs, "
                          "from what it last committed", self.name, proc.pid, code, delay)
                await asyncio.sleep(delay)
        finally:
            await self._stop_child()
            self.frames.close()

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pipeline.collector.sink_child", json.dumps(asdict(self.spec)),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        try:  # from here on, its imports (seconds, for aim) included
            priority = min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.spec.nice)
            os.setpriority(os.PRIO_PROCESS, proc.pid, priority)
        except OSError as exc:
            log.warning("sink %s: could not lower its process's priority: %s", self.name, exc)
        return proc

    async def _follow(self, proc: asyncio.subprocess.Process) -> bool:
        """Take the child's progress lines until it exits; whether it wrote anything."""
        assert proc.stdout is not None
        wrote = False
        while line := await proc.stdout.readline():
            try:
                report = json.loads(line)
                position = Position(int(report.pop("at")), int(report.pop("read")))
                stats = ChildStats(**report)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("sink %s: its process said something unexpected: %r (%s)", self.name,
                            line[:200], exc)
                continue
            wrote = wrote or stats.events > self._current.events
            self._current = stats
            self.frames.advanced(position)
            self._room.set()
        return wrote

    def _retire(self) -> None:
        self._done.add(self._current)
        self._current = ChildStats()

    async def _stop_child(self) -> None:
        """The collector is going away without a drain: ask the child to stop, kill it if it will not."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_WAIT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def snapshot(self, received: int) -> SinkSnapshot:
        """This sink's counters, as a ``SinkWorker`` gives them; its lag is what the log holds unwritten."""
        done, now = self._done, self._current
        unread = self.frames.unread_events
        counted = done.bytes is not None or now.bytes is not None
        written_bytes = (done.bytes or 0) + (now.bytes or 0) if counted else None
        return SinkSnapshot(
            events=done.events + now.events, batches=done.batches + now.batches,
            errors=done.errors + now.errors, poisoned=done.poisoned + now.poisoned, queued=unread,
            lag=unread, busy_s=done.busy_s + now.busy_s, durable=False,
            last_error=now.last_error or done.last_error, bytes=written_bytes, backlog=unread,
            filters=self.filters)


def _frames(events: Sequence[Event], frame: bytes | None) -> list[tuple[bytes, int, int]]:
    """What goes into the log: the received frame with its accepted run, or each producer's run encoded."""
    if frame is not None:
        return [(frame, events[0].seq, events[-1].seq)]
    runs: list[tuple[bytes, int, int]] = []
    start = 0
    for i in range(1, len(events) + 1):
        if i == len(events) or events[i].producer != events[start].producer \
                or events[i].seq != events[i - 1].seq + 1:
            run = events[start:i]
            raw = frame_events(run[0].producer, run[0].seq, [encode_stored(e) for e in run])
            runs.append((raw, run[0].seq, run[-1].seq))
            start = i
    return runs


def child_spec(sink: str, target: str, out: Path, state: Path, options: dict[str, Any],
               paths: dict[str, Path], batch: tuple[int, float], files: int, quarantine_max_bytes: int,
               log_level: str) -> ChildSpec:
    """The child's spec from the collector's typed settings (paths as text, tuples as lists)."""
    return ChildSpec(sink=sink, target=target, out=str(out), state=str(state),
                     log=str(state / f"sink-{sink}"), options=json.loads(json.dumps(options, default=str)),
                     paths={k: str(v) for k, v in paths.items()}, batch=batch, files=files,
                     quarantine_max_bytes=quarantine_max_bytes, nice=int(options.get("nice", 19)),
                     parent=os.getpid(), log_level=log_level)


def take_backlog(frames: FrameLog, path: Path, max_bytes: int) -> int:
    """Move what a collector running the sink in process left in its backlog (``path``) into the
    frame log, in order, so switching the sink to its own process loses nothing; returns the count."""
    if not path.exists():
        return 0
    from pipeline.collector.backlog import SinkBacklog

    backlog, moved = SinkBacklog(path, max(1, max_bytes)), 0
    while events := backlog.pop(5_000):
        for raw, first, last in _frames(events, None):
            frames.append(raw, first, last)
        moved += len(events)
    backlog.close()
    return moved
