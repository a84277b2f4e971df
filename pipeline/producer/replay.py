"""``tunebus replay``: deliver a spool file a driver left behind, as the producer that wrote it."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from pipeline.producer.sender import Sender, SenderConfig
from pipeline.wire.sockets import CurveKeys
from pipeline.wire.spool import read_spool

__all__ = ["replay"]

log = logging.getLogger(__name__)


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
