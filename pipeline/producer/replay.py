"""``tunebus replay``: deliver a spool file a driver left behind, as the producer that wrote it."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from pipeline.producer.sender import Sender, SenderConfig
from pipeline.producer.shard_lookup import SHARD_LOOKUP_TIMEOUT_S, lookup_shards
from pipeline.wire.sockets import CurveKeys
from pipeline.wire.spool import read_spool

__all__ = ["replay"]

log = logging.getLogger(__name__)

SHARD_STREAM = re.compile(r"\.s(\d+)$")
"""A producer id of shard k's part of a stream: ``<stream>.s<k>`` (``pipeline.producer.stream``)."""


def replay(spool: Path, address: str, timeout_s: float, curve_secret_key: str | None = None,
           curve_server_key: str | None = None, *, keep: bool = False) -> tuple[bool, int]:
    """Send every event of ``spool`` to ``address``; remove the file once all are confirmed.

    Events that are not confirmed within ``timeout_s`` stay in ``spool`` (rewritten to
    hold just those), ready for the next replay.

    The events keep their producer id and sequence numbers, so a collector
    that already wrote some of them writes each one once. Returns whether all
    were confirmed, and how many events the spool held.
    """
    producer, items = read_spool(spool)
    curve = CurveKeys.load(curve_secret_key, curve_server_key) if curve_secret_key else None
    _check_shard(spool, producer, address, curve)
    # What is not confirmed goes back into ``spool`` itself (the sender saves it there at close),
    # so the advice it logs names a file that still exists; scratch only holds the live spill.
    with tempfile.TemporaryDirectory(prefix="tunebus-replay-") as scratch:
        config = SenderConfig(max_handoff_events=len(items) + 1, spool_dir=scratch)
        sender = Sender(address, producer, config, curve, spool_file=spool)
        for seq, data in items:
            sender.submit(seq, data)
        delivered = sender.close(timeout_s)
    if delivered and not keep:
        spool.unlink()
    log.info("replayed %d events of %s from %s: %s", len(items), producer, spool,
             "confirmed" if delivered else "not all confirmed")
    return delivered, len(items)


def _check_shard(spool: Path, producer: str, address: str, curve: CurveKeys | None) -> None:
    """Refuse to send shard k's stream to another shard of the same set (ValueError naming the right one).

    Its trials belong to shard k, which may hold some of their events already: another shard
    would write the same trial files as a second writer. Only a stream id ending ``.s<k>`` asks.
    """
    match = SHARD_STREAM.search(producer)
    if match is None:
        return
    index = int(match[1])
    shards = lookup_shards(address, curve, SHARD_LOOKUP_TIMEOUT_S)
    if address in shards and index < len(shards) and shards[index] != address:
        raise ValueError(f"{spool} holds shard {index}'s events ({producer}): replay it "
                         f"--to {shards[index]}, not to shard {shards.index(address)} at {address}")
