"""The collector's sequencer alone: in order, repeats, gaps, skipped bases, restored marks, reconnects."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.collector.sequencer import Sequenced, Sequencer
from pipeline.testing import event
from pipeline.wire.events import Event


def _events(producer: str, seqs: Iterable[int]) -> list[Event]:
    return [event("result", {"i": seq}, seq=seq, producer=producer, ts=1.0) for seq in seqs]


def _accept(sequencer: Sequencer, base: int, seqs: Iterable[int], producer: str = "p") -> Sequenced:
    return sequencer.accept(producer, base, _events(producer, seqs))


def _seqs(sequenced: Sequenced) -> list[int]:
    return [event.seq for event in sequenced.events]


def test_events_in_order_are_all_accepted_without_a_reply() -> None:
    """Frames that continue the stream hand on every event and say nothing to the producer."""
    sequencer = Sequencer()
    first = _accept(sequencer, 0, [0, 1, 2])
    second = _accept(sequencer, 0, [3])
    assert _seqs(first) == [0, 1, 2] and _seqs(second) == [3]
    assert first.replies == second.replies == ()
    assert sequencer.expected == {"p": 4} and sequencer.per_producer["p"] == 4
    assert sequencer.duplicates == sequencer.gaps == 0


def test_an_empty_frame_changes_nothing() -> None:
    """A frame without valid events (all quarantined) neither advances nor answers."""
    sequencer = Sequencer()
    assert sequencer.accept("p", 5, []) == Sequenced([])
    assert sequencer.expected == {}


def test_repeats_are_dropped_and_the_last_ack_is_sent_again() -> None:
    """Events already taken are counted as duplicates; the producer is told again what is written."""
    sequencer = Sequencer()
    _accept(sequencer, 0, [0, 1, 2, 3])
    assert sequencer.acks_due(lambda producer: 2) == [("p", 2)]
    again = _accept(sequencer, 2, [2, 3, 4])
    assert _seqs(again) == [4] and again.replies == (("ack", 2),)
    assert sequencer.duplicates == 2 and sequencer.per_producer["p"] == 5


def test_repeats_before_any_ack_get_no_reply() -> None:
    """With nothing acknowledged yet there is no ack to repeat; the ack loop will send one."""
    sequencer = Sequencer()
    _accept(sequencer, 0, [0, 1])
    again = _accept(sequencer, 0, [0, 1])
    assert again == Sequenced([]) and sequencer.duplicates == 2


def test_a_gap_is_answered_with_nack_at_the_first_missing_seq() -> None:
    """Events past a gap are refused and the producer is asked to resend from the first missing one."""
    sequencer = Sequencer()
    _accept(sequencer, 0, [0, 1])
    refused = _accept(sequencer, 0, [3, 4])
    assert refused == Sequenced([], (("nack", 2),)) and sequencer.gaps == 1
    sequencer.acks_due(lambda producer: 1)
    partly = _accept(sequencer, 0, [2, 4, 5])
    assert _seqs(partly) == [2] and partly.replies == (("nack", 3), ("ack", 1))
    assert sequencer.gaps == 2 and sequencer.expected["p"] == 3
    assert _seqs(_accept(sequencer, 0, [3, 4, 5])) == [3, 4, 5]


def test_a_base_that_skips_ahead_counts_the_events_the_producer_dropped() -> None:
    """A frame based past the expected seq continues from its base and counts the skipped events."""
    sequencer = Sequencer()
    _accept(sequencer, 0, [0, 1])
    skipped = _accept(sequencer, 5, [5, 6])
    assert _seqs(skipped) == [5, 6] and skipped.replies == ()
    assert sequencer.dropped["p"] == 3 and sequencer.gaps == 0 and sequencer.expected["p"] == 7


def test_a_new_producer_starts_at_its_first_frames_base() -> None:
    """The first frame of an unknown producer sets where its stream starts; nothing counts as dropped."""
    sequencer = Sequencer()
    assert _seqs(_accept(sequencer, 7, [7, 8])) == [7, 8]
    assert sequencer.dropped["p"] == 0 and sequencer.expected["p"] == 9


def test_restored_marks_continue_after_what_is_written() -> None:
    """Seeded with the ledger's marks, a restarted collector re-acks what it wrote and takes the rest."""
    sequencer = Sequencer({"p": 9, "q": 0})
    assert sequencer.expected == {"p": 10, "q": 1} and sequencer.acked == {"p": 9, "q": 0}
    resent = _accept(sequencer, 8, [8, 9, 10])
    assert _seqs(resent) == [10] and resent.replies == (("ack", 9),)
    assert sequencer.duplicates == 2 and sequencer.dropped["p"] == 0


def test_a_reconnecting_producer_resends_from_its_first_unacked_event() -> None:
    """After an ack was lost on a reconnect, the producer's resend is deduplicated and re-acked."""
    sequencer = Sequencer()
    _accept(sequencer, 0, [0, 1, 2, 3, 4])
    assert sequencer.acks_due(lambda producer: 4) == [("p", 4)]  # lost on the way
    resent = _accept(sequencer, 0, [0, 1, 2, 3, 4, 5])
    assert _seqs(resent) == [5] and resent.replies == (("ack", 4),)
    assert sequencer.per_producer["p"] == 6 and sequencer.duplicates == 5


def test_acks_are_due_only_when_a_producers_written_mark_moves() -> None:
    """acks_due names each producer whose written mark passed its last ack, once."""
    sequencer = Sequencer({"q": 3})
    _accept(sequencer, 0, [0, 1], producer="p")
    marks = {"p": 1, "q": 3}
    assert sequencer.acks_due(marks.__getitem__) == [("p", 1)]
    assert sequencer.acks_due(marks.__getitem__) == []
    marks["q"] = 5
    assert sequencer.acks_due(marks.__getitem__) == [("q", 5)] and sequencer.acked == {"p": 1, "q": 5}
    assert _accept(sequencer, 2, [2, 3], producer="p").replies == ()  # in order: acked later, by mark


def test_producers_are_sequenced_independently() -> None:
    """One producer's gap does not hold back another's events."""
    sequencer = Sequencer()
    _accept(sequencer, 0, [0], producer="a")
    assert _accept(sequencer, 0, [2], producer="a").replies == (("nack", 1),)
    assert _seqs(_accept(sequencer, 0, [0, 1], producer="b")) == [0, 1]
    assert sequencer.expected == {"a": 1, "b": 2}


def test_a_shard_stops_a_stream_before_a_trial_it_does_not_own() -> None:
    """With ``owns``, another shard's trial's first event is not taken, ends the frame, holds the producer."""
    sequencer = Sequencer(owns={"mine": True, "theirs": False})
    frame = [event("setup", seq=0), event("result", seq=1, trial="mine"),
             event("result", seq=2, trial="theirs"), event("result", seq=3, trial="mine")]
    first = sequencer.accept("p", 0, frame)
    assert _seqs(first) == [0, 1] and first.foreign is frame[2] and first.replies == ()
    again = sequencer.accept("p", 0, frame)  # the producer resends: still held, nothing taken twice
    assert _seqs(again) == [] and again.foreign is frame[2] and sequencer.duplicates == 2
    assert sequencer.held == {"p": frame[2]} and sequencer.expected == {"p": 2}
    skipped = sequencer.accept("p", 3, frame[3:])  # it gave the event up (its full policy): on again
    assert _seqs(skipped) == [3] and skipped.foreign is None and sequencer.held == {}
