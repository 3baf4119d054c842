"""What one call leaves in the invocation log: bounded, whatever the function printed.

A call's stored log is at most `LOG_CAP` bytes (UTF-8): the error line and
the trace first, each within its own cap (the trace keeps its end, where the
exception is), then as much of the captured output's end as still fits.
Anything cut is marked, with the number of bytes dropped: what the runtime
dropped before (its own note first, sandbox/runtime/call.py) counted in.
"""

from __future__ import annotations

import re

__all__ = ["LOG_CAP", "NOTE", "call_log", "printed"]

LOG_CAP = 16 * 1024
_TRACE_CAP = 8 * 1024
_ERROR_CAP = 2 * 1024
_MARK = "[{n} earlier bytes dropped]\n"
#: The note the runtime puts first when it kept only the end of a call's output.
_RUNTIME_NOTE = re.compile(r"\[([0-9]{1,18}) earlier bytes dropped\]\n")


#: What the node's own lines in a call's log begin with (a refused header, a response the
#: gateway could not send: gateway/invoke.py, response_policy.py).
NOTE = "[donjon]"


def printed(output: str) -> str:
    """What the function printed, its lines that begin as the node's own escaped (`\\`
    first): a function printed `[donjon] ...` lines that passed for the node's."""
    if NOTE not in output:  # the common case: one search
        return output
    escaped = output.replace("\n" + NOTE, "\n\\" + NOTE)
    return "\\" + escaped if escaped.startswith(NOTE) else escaped


def _tail(text: str, cap: int) -> str:
    """The end of `text` within `cap` bytes, marked when something was dropped."""
    data = text.encode("utf-8", "replace")
    if len(data) <= cap:  # as stored: a lone surrogate (an error's, a trace's) is a "?"
        return data.decode("utf-8")
    earlier = 0
    if note := _RUNTIME_NOTE.match(text):  # cut here with the rest: its count is kept
        earlier = int(note.group(1))
        data = text[note.end() :].encode("utf-8", "replace")
    room = max(0, cap - len(_MARK.format(n=earlier + len(data))))
    kept = data[len(data) - room :].decode("utf-8", "ignore")
    return _MARK.format(n=earlier + len(data) - len(kept.encode())) + kept


def call_log(output: str, trace: str = "", error: str = "") -> str:
    """The call's log: output, then trace, then error line, within `LOG_CAP` bytes."""
    if not trace and not error:  # a call that succeeded: its output alone
        return _tail(output, LOG_CAP) if output else ""
    error = _tail(error, _ERROR_CAP)
    trace = _tail(trace, _TRACE_CAP)
    fixed = sum(len(p.encode()) + 1 for p in (trace, error) if p)
    output = _tail(output, LOG_CAP - fixed) if output else ""
    return "\n".join(p for p in (output, trace, error) if p)
