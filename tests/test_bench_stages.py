"""``python -m bench.stages --quick`` measures every stage of the collector's path, in process."""

from __future__ import annotations

from bench.stages import STAGES, main


def test_every_stage_is_measured_for_one_and_eight_trials() -> None:
    """Both runs write every result and give each stage a CPU time per result."""
    record = main(["--quick"])
    assert [run["trials"] for run in record["runs"]] == [1, 8]
    for run in record["runs"]:
        assert run["results"] == 2 * 5_000
        assert set(run["us_per_result"]) == set(STAGES)
        assert all(us >= 0 for us in run["us_per_result"].values()) and run["total_us_per_result"] > 0
