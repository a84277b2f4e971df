"""The fan-out: every accepted event to every sink's queue, and the mark acknowledgements carry."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.collector.sink_process import SinkProcess
from pipeline.collector.sink_worker import SinkWorker
from pipeline.wire.events import Event

__all__ = ["Fanout"]


class Fanout:
    """Every event to every sink queue; a producer's mark is the least its durable sinks reached."""

    def __init__(self, workers: Sequence[SinkWorker | SinkProcess]) -> None:
        if not workers:
            raise ValueError("a collector needs at least one sink")
        self.workers = list(workers)

    async def put(self, events: Sequence[Event], frame: bytes | None = None) -> None:
        """Queue ``events`` for every sink; waits while any sink's queue is full. ``frame``: the
        received frame they were accepted from, which a sink in its own process is fed as it is."""
        for worker in self.workers:
            if isinstance(worker, SinkProcess):
                await worker.put(events, frame)
            else:
                await worker.queue.put(events)

    def mark(self, producer: str) -> int:
        """The highest seq of ``producer`` that every durable sink has written (-1: none)."""
        durable = [w for w in self.workers if w.durable] or self.workers
        return min(w.marks.get(producer, -1) for w in durable)

    def restored(self) -> dict[str, int]:
        """Each producer's mark that every durable sink's ledger had at start."""
        durable = [w for w in self.workers if w.durable and w.ledger is not None]
        if not durable:
            return {}
        producers = set.intersection(*(set(w.ledger.marks) for w in durable if w.ledger))
        return {p: min(w.marks[p] for w in durable) for p in producers}

    def depth(self) -> int:
        return max(len(w.queue) for w in self.workers)

    async def drain(self) -> None:
        """Close every queue and wait until each sink has written all it holds and closed."""
        for worker in self.workers:
            await worker.queue.close()
