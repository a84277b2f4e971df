"""A sink's queue: bounded in memory, spilling to a disk backlog when the sink may lag."""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Sequence

from pipeline.collector.backlog import SinkBacklog
from pipeline.wire.events import Event

__all__ = ["EventQueue"]


class EventQueue:
    """A FIFO of events bounded by count: ``put`` awaits room, ``get_batch`` awaits a batch.

    With a ``backlog``, events past the bound go to disk instead of waiting (and
    every later event after them, to keep the order); ``put`` waits only when the
    backlog is full as well. ``get_batch`` refills memory from the backlog.
    """

    def __init__(self, max_events: int, backlog: SinkBacklog | None = None) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events!r}")
        self.max_events = max_events
        self.backlog = backlog
        self._items: collections.deque[Event] = collections.deque()
        self._changed = asyncio.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items) + (len(self.backlog) if self.backlog is not None else 0)

    async def put(self, events: Sequence[Event]) -> None:
        """Append ``events``; waits while they do not fit (an empty queue takes any batch)."""
        rest = events
        async with self._changed:
            while rest:
                await self._changed.wait_for(functools.partial(self._has_room, rest))
                rest = self._take(rest)
                self._changed.notify_all()

    def _has_room(self, events: Sequence[Event]) -> bool:
        if self.backlog is None:
            return not self._items or len(self._items) + len(events) <= self.max_events
        return not self.backlog.full or (not len(self.backlog) and len(self._items) < self.max_events)

    def _take(self, events: Sequence[Event]) -> Sequence[Event]:
        """Keep what fits in memory, the rest in the backlog; returns what is left."""
        if self.backlog is None:
            self._items.extend(events)
            return ()
        room = 0 if len(self.backlog) else max(0, self.max_events - len(self._items))
        self._items.extend(events[:room])
        rest = events[room:]
        return rest[self.backlog.push(rest):] if rest else ()

    async def get_batch(self, max_events: int, linger_s: float) -> list[Event]:
        """Up to ``max_events``: waits for one, then up to ``linger_s`` for a full batch.

        Returns an empty list only once the queue is closed and empty.
        """
        async with self._changed:
            await self._changed.wait_for(lambda: len(self) or self._closed)
            if len(self) < max_events and linger_s > 0 and not self._closed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(
                        lambda: len(self) >= max_events or self._closed), linger_s)
                except TimeoutError:
                    pass
            self._refill(max_events)
            items = self._items
            if len(items) <= max_events:  # a sink that keeps up takes all there is, in one copy
                batch = list(items)
                items.clear()
            else:
                batch = [items.popleft() for _ in range(max_events)]
            self._changed.notify_all()
            return batch

    def _refill(self, max_events: int) -> None:
        if self.backlog is not None and len(self._items) < max_events:
            self._items.extend(self.backlog.pop(max_events - len(self._items)))

    async def close(self) -> None:
        """No more puts: ``get_batch`` drains what is left, then returns empty lists."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
