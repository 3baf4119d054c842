"""The invocation log of one call: bounded, trace kept, cuts marked."""

from __future__ import annotations

from donjon.gateway.calllog import LOG_CAP, call_log


def test_small_logs_are_kept_whole() -> None:
    """Output, trace and error under the cap are stored as they are, in that order."""
    assert call_log("out", "trace", "Error: boom") == "out\ntrace\nError: boom"


def test_huge_output_keeps_its_end_and_the_whole_trace() -> None:
    """A megabyte of output is cut to fit the cap; the trace and error stay; the cut is marked."""
    trace = "Traceback (most recent call last):\n" + "  line\n" * 500
    log = call_log("y" * 1_000_000 + "LAST", trace, "FunctionFailed: boom")
    assert len(log.encode()) <= LOG_CAP
    assert trace in log
    assert log.endswith("FunctionFailed: boom")
    assert "LAST" in log
    assert log.startswith("[") and "earlier bytes dropped]" in log


def test_oversized_trace_and_error_are_capped_too() -> None:
    """A forged reply's trace or error cannot take the whole log, nor go past the cap."""
    log = call_log("o" * 100_000, "t" * 100_000 + "END", "e" * 100_000)
    assert len(log.encode()) <= LOG_CAP
    assert "END" in log
    assert log.count("earlier bytes dropped") == 3


def test_multibyte_output_is_cut_on_a_character_boundary() -> None:
    """Cutting never leaves half a UTF-8 character behind."""
    log = call_log("é" * 50_000)
    assert len(log.encode()) <= LOG_CAP
    log.encode("utf-8", "strict")


def test_the_runtimes_cut_is_counted_in_the_mark() -> None:
    """Output the runtime already cut (its note first, as runtime/call.py writes it) cut
    again here: the one mark counts every byte dropped, the runtime's too. Before, 5 MB
    printed showed as "[49182 earlier bytes dropped]"."""
    kept = "x" * 65536
    log = call_log("[4934464 earlier bytes dropped]\n" + kept)
    assert len(log.encode()) <= LOG_CAP
    note, _, rest = log.partition("\n")
    assert rest == kept[len(kept) - len(rest) :]
    assert note == f"[{4934464 + len(kept) - len(rest)} earlier bytes dropped]"
