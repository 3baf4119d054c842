"""The peak memory a worker reports with its reply: kept only if it is a plausible figure."""

from __future__ import annotations

import pytest

from donjon.sandbox.errors import FunctionFailed
from donjon.sandbox.replies import reply_result


@pytest.mark.parametrize(
    ("reported", "kept"),
    [(10240, 10240), (0, None), (-5, None), (True, None), ("10240", None), (1 << 41, None)],
)
def test_only_a_whole_positive_number_of_kib_is_kept(reported: object, kept: int | None) -> None:
    """Function code could write its own reply: anything but a plausible count is dropped."""
    result = reply_result({"ok": True, "out": "", "mem_kb": reported}, b"1")
    assert result.memory_kb == kept


def test_a_failed_call_keeps_its_reported_memory() -> None:
    """The error raised for a failed call carries the figure, for the call's REPORT line."""
    with pytest.raises(FunctionFailed) as failed:
        reply_result({"ok": False, "kind": "error", "error": "E: x", "mem_kb": 2048}, b"")
    assert failed.value.memory_kb == 2048
