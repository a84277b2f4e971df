"""pipeline.testing: the helpers other tests lean on do what they say, and fail loudly when they should."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.testing import FailingSink, RecordingSink, run_cli_here, wait_for, wait_until
from sinks.base import TrialRef

TRIAL = TrialRef("exp", "t1", "t1_dir", Path("exp/t1_dir"))


def test_wait_for_returns_once_true_and_names_what_it_waited_for_on_timeout() -> None:
    """A condition that comes true returns; one that never does is a TimeoutError naming it."""
    calls = iter([False, False, True])
    wait_for(lambda: next(calls), 5, "the third poll")
    with pytest.raises(TimeoutError, match=r"timed out after 0.05s waiting for the moon"):
        wait_for(lambda: False, 0.05, "the moon")


async def test_wait_until_is_the_same_on_the_event_loop() -> None:
    """The async wait gives up the same way, naming what it waited for."""
    with pytest.raises(TimeoutError, match=r"timed out after 0.05s waiting for the sun"):
        await wait_until(lambda: False, 0.05, "the sun")


def test_a_failing_sink_fails_its_first_writes_then_records_like_a_recording_one() -> None:
    """FailingSink raises its error the given number of times, then keeps calls and results in order."""
    sink = FailingSink(2, RuntimeError("locked"))
    for _ in range(2):
        with pytest.raises(RuntimeError, match="locked"):
            sink.write_results(TRIAL, [{"i": 0}])
    sink.open_trial(TRIAL, None)
    sink.write_results(TRIAL, [{"i": 1}, {"i": 2}])
    sink.close_trial(TRIAL, None)
    assert sink.values() == [1, 2] and isinstance(sink, RecordingSink)
    assert sink.calls == [("open", ("exp", "t1")), ("write", 2), ("close", ("exp", "t1"))]


def test_run_cli_here_gives_the_exit_status_and_both_streams() -> None:
    """--help exits 0 with the usage on stdout; a bad command exits 2 with one line on stderr."""
    helped = run_cli_here("--help")
    assert helped.returncode == 0 and "collect" in helped.stdout and helped.stderr == ""
    bad = run_cli_here("frobnicate")
    assert bad.returncode == 2 and bad.stdout == "" and "invalid choice: 'frobnicate'" in bad.stderr
