"""A reply whose result the runtime refused as too large: the gateway's error names the limit."""

from __future__ import annotations

import pytest

from donjon.sandbox import FunctionResultTooLarge
from donjon.sandbox.replies import MAX_RESULT, reply_result


def test_a_result_refused_in_the_sandbox_is_function_result_too_large() -> None:
    """kind too_large with its size and limit: FunctionResultTooLarge naming both, output kept."""
    head = {"ok": False, "kind": "too_large", "size": 2048, "limit": 1024, "out": "printed"}
    with pytest.raises(FunctionResultTooLarge) as caught:
        reply_result(head, b"")
    assert "(2048 bytes)" in caught.value.message
    assert "limit of 1024 bytes" in caught.value.message
    assert caught.value.output == "printed"
    assert caught.value.error_type == "Function.ResponseSizeTooLarge"


@pytest.mark.parametrize("limit", ["1024", -1, True, None, 1 << 50])
def test_a_limit_that_is_no_byte_count_names_the_frame_cap(limit: object) -> None:
    """Function code may write its own head: an implausible limit is not repeated."""
    with pytest.raises(FunctionResultTooLarge) as caught:
        reply_result({"ok": False, "kind": "too_large", "limit": limit}, b"")
    assert f"limit of {MAX_RESULT} bytes" in caught.value.message
