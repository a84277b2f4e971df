"""Event names: only single, safe path components pass."""

from __future__ import annotations

import pytest

from pipeline.wire.events import SchemaError, check_name


@pytest.mark.parametrize("name", ["exp", "trainable_1a2b3_00000_0_lr=0.1,x=2_2026-11-22", "a b", "é"])
def test_ordinary_tune_names_pass(name: str) -> None:
    """Tune's own experiment and trial directory names are accepted as they are."""
    assert check_name("trial_dir", name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/abs", "a\\b", "a\x00b", "x" * 256, 5, None])
def test_names_that_could_leave_out_are_refused(name: object) -> None:
    """Empty, dot, separators, NUL, overlong or non-string names raise SchemaError."""
    with pytest.raises(SchemaError, match=r"^bad-(name|type): trial_dir (is empty|.* is not a safe directory "
                                          r"name|must be a string, got (int|NoneType))$"):
        check_name("trial_dir", name)
