"""``python -m pipeline.collector.sink_child SPEC``: a sink's own niced process, writing the frame log."""

from __future__ import annotations

import asyncio
import collections
import ctypes
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import IO, Any

from pipeline.collector.config import EVERY_SINK, sink_settings
from pipeline.collector.filter_spec import parse_filters
from pipeline.collector.frame_log import FrameLogReader, Position, Record
from pipeline.collector.quarantine import Quarantine
from pipeline.collector.sink_process import DRAINED, STOPPED, ChildSpec
from pipeline.collector.sink_worker import BatchPolicy, SinkWorker
from pipeline.wire.codec import decode_frame
from pipeline.wire.events import Event
from sinks import make_sink, register_sink
from sinks.base import TrialFiles
from sinks.open_files import OpenFiles

__all__ = ["accepted", "main"]

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
POLL_S = 0.05
"""How often a reader that has caught up looks for more (this process is niced: it may lag)."""
REPORT_S = 1.0
READ_RECORDS = 16


def accepted(record: Record) -> list[Event]:
    """The events the collector took from the record's frame: its run ``first..last``, as the
    sequencer took them (repeats below the next seq skipped, nothing past a gap)."""
    expected, events = record.first, []
    for event in decode_frame(record.frame).events:
        if event.seq < expected:
            continue
        if event.seq > expected or expected > record.last:
            break
        events.append(event)
        expected += 1
    return events


class Child:
    """Feeds a ``SinkWorker`` from the log, commits what it wrote, reports to the collector."""

    def __init__(self, spec: ChildSpec, report_to: IO[str]) -> None:
        register_sink(spec.sink, spec.target)
        known = {s.name: s for s in sink_settings(spec.sink)}
        options = {name: known[name].check(value) for name, value in spec.options.items() if name in known}
        shared = {s.name for s in EVERY_SINK}
        kwargs: dict[str, Any] = {k: v for k, v in options.items() if k not in shared}
        kwargs.update({k: Path(v) for k, v in spec.paths.items()})
        out, state = Path(spec.out), Path(spec.state)
        sink = make_sink(spec.sink, out, **kwargs)
        sink.files = OpenFiles(spec.files)
        quarantine = Quarantine(state, spec.quarantine_max_bytes)
        max_events, linger_s = spec.batch
        self.reader = FrameLogReader(Path(spec.log))
        self.worker = SinkWorker(sink, TrialFiles(out), BatchPolicy(max_events, linger_s, 2 * max_events),
                                 filters=parse_filters(options.get("filters", ())), durable=False,
                                 on_progress=self._written, on_poison=quarantine.add_refused,
                                 filter_state_path=state / f"filters-{spec.sink}.json")
        self.report_to = report_to
        self.put = 0
        self.marks: collections.deque[tuple[int, Position]] = collections.deque()
        self.draining = asyncio.Event()
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        writing = asyncio.create_task(self.worker.run())
        reporting = asyncio.create_task(self._report_every())
        try:
            await self._feed()
            await self.worker.queue.close()
            await writing
        finally:
            reporting.cancel()
            self.reader.close()
        drained = not self.stopping.is_set()
        if drained:
            self.reader.drop_read()
        self._report()
        return DRAINED if drained else STOPPED

    async def _feed(self) -> None:
        """Records into the worker's queue until the log is closed and read to its end (or SIGTERM)."""
        while not self.stopping.is_set():
            closed = self.draining.is_set()  # looked at before reading: what the log holds now is all
            records = self.reader.read(READ_RECORDS)
            for record in records:
                events = accepted(record)
                if events:
                    await self.worker.queue.put(events)
                self.put += len(events)
                self.marks.append((self.put, record.after))
            if not records:
                if closed:
                    return
                await _first(self.draining.wait(), self.stopping.wait(), timeout_s=POLL_S)

    def _written(self) -> None:
        """A batch is written: commit the position after the last whole record it finished."""
        done = self.put - len(self.worker.queue)
        position = None
        while self.marks and self.marks[0][0] <= done:
            position = self.marks.popleft()[1]
        if position is not None:
            self.reader.commit(position)
        self._report()

    def _report(self) -> None:
        stats = self.worker.stats
        position = self.reader.committed
        line = {"at": position.at, "read": position.events, "events": stats.events,
                "batches": stats.batches, "errors": stats.errors, "poisoned": stats.poisoned,
                "busy_s": stats.busy_s, "bytes": self.worker.sink.bytes_written,
                "last_error": stats.last_error}
        try:
            self.report_to.write(json.dumps(line) + "\n")
            self.report_to.flush()
        except (BrokenPipeError, ValueError):  # the collector is gone: PDEATHSIG follows
            pass

    async def _report_every(self) -> None:
        while True:
            await asyncio.sleep(REPORT_S)
            self._report()


async def _first(*waits: Any, timeout_s: float) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _serve(spec: ChildSpec, report_to: IO[str]) -> int:
    loop = asyncio.get_running_loop()
    child = Child(spec, report_to)
    loop.add_signal_handler(signal.SIGTERM, child.stopping.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        while await reader.read(4096):
            pass
        child.draining.set()  # the collector closed the log (or is gone)

    watching = asyncio.create_task(watch_stdin())
    try:
        return await child.run()
    finally:
        watching.cancel()


def _die_with(parent: int) -> None:
    """Have Linux kill this process when the collector dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    raw = json.loads((argv if argv is not None else sys.argv[1:])[0])
    raw["batch"] = tuple(raw["batch"])
    spec = ChildSpec(**raw)
    _die_with(spec.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the collector's: it drains this process
    report_to = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything the sink prints goes to the collector's log, not into the reports
    logging.basicConfig(level=spec.log_level,
                        format=f"%(asctime)s sink-{spec.sink}[%(process)d] %(name)s "
                               "%(levelname)s %(message)s")
    log.info("sink %s writing from %s at nice %d", spec.sink, spec.log, os.getpriority(os.PRIO_PROCESS, 0))
    return asyncio.run(_serve(spec, report_to))


if __name__ == "__main__":
    sys.exit(main())
