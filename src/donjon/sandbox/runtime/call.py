"""Running one invocation: read the event, call the handler, send the result."""

from __future__ import annotations

import os
import resource
import sys

from . import httpresult, jsonwire, lambda_env
from .context import Context, Secrets
from .frames import FrameError, FrameReader, recv_frame, send_frames, send_reply
from .policy_hooks import CallWatch

_NO_WATCH = CallWatch({})

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .sockets import Socket


MAX_OUTPUT = 64 * 1024
MAX_RESULT = 6 * 1024 * 1024  # the gateway reads no more (sandbox/replies.py)
MAX_HEAD = 256 * 1024  # the gateway reads no more of a reply's head (sandbox/replies.py)
#: How a warm call's end-of-call frame starts (the call's token follows); no head does.
END = b"\x00end:"
#: The head's start for a call that returned its result (never changed: copied to add to).
_OK: dict[str, Any] = {"ok": True}


class CapturedOutput:
    """fd 1 and 2 point at a fresh memfd for the length of one call.

    Outside calls a worker's fd 1 and 2 are /dev/null, so restoring needs no
    saved copies for the handler to find.
    """

    def __init__(self) -> None:
        _flush()
        self._fd = os.memfd_create("output", os.MFD_CLOEXEC)
        os.dup2(self._fd, 1)
        os.dup2(self._fd, 2)

    def collect(self) -> str:
        _flush()
        size = os.lseek(self._fd, 0, os.SEEK_END)
        os.lseek(self._fd, max(0, size - MAX_OUTPUT), os.SEEK_SET)
        data = os.read(self._fd, MAX_OUTPUT)
        text = data.decode("utf-8", "replace")
        if size > MAX_OUTPUT:
            text = f"[{size - MAX_OUTPUT} earlier bytes dropped]\n" + text
        return text

    def restore(self) -> None:
        # Closed first: a handler holding every descriptor RLIMIT_NOFILE allows must
        # not make this open fail.
        if self._fd > 2:
            os.close(self._fd)
        # The handler may have closed fd 1 or 2: /dev/null then lands there itself.
        null = os.open("/dev/null", os.O_WRONLY)
        for fd in (1, 2):
            if fd != null:
                os.dup2(null, fd)
        if null > 2:
            os.close(null)


class ReusedOutput:
    """A warm worker's output capture: one memfd for its life, fd 1 and 2 on it.

    Per call fd 1 and 2 are pointed at it again (the handler may have closed or
    replaced them) and every call begins with it empty, its offset at 0. A call
    that wrote to it has it emptied when its output is collected; what is
    written between calls lands in it too and is dropped when the next call
    begins, as /dev/null would drop it. So a silent call costs two `lseek` (the
    size, at either end) and the two `dup2`, and one that wrote a `pread` and an
    `ftruncate` more.
    """

    def __init__(self) -> None:
        self._fd = os.memfd_create("output", os.MFD_CLOEXEC)

    def begin(self) -> None:
        _flush()
        # At its end, so the call's output starts at 0 wherever an earlier call left the
        # offset; not empty: written since the last call was collected, dropped.
        if os.lseek(self._fd, 0, os.SEEK_END):
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
        os.dup2(self._fd, 1)
        os.dup2(self._fd, 2)

    def collect(self) -> str:
        _flush()
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if not size:
            return ""
        data = os.pread(self._fd, MAX_OUTPUT, max(0, size - MAX_OUTPUT))
        os.ftruncate(self._fd, 0)  # the next call's `begin` finds it empty
        text = data.decode("utf-8", "replace")
        if size > MAX_OUTPUT:
            text = f"[{size - MAX_OUTPUT} earlier bytes dropped]\n" + text
        return text


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _peak_memory_kb() -> int:
    """The most memory this worker (and any child it reaped) has held, in KiB.

    For isolation `invocation` that is the call's own peak, the interpreter and
    handler it was forked with included; a warm worker reports its peak so far.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children)


def _own_peak_kb() -> int:
    """`_peak_memory_kb` of a worker that can have no child: the kernel refuses it every
    new process, so the children's peak stays 0 (worker.py, `may_make_children`)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _result_limit(ctx_meta: Any) -> int:
    """The largest result this call may return: the node's DONJON_MAX_RESPONSE_BYTES as
    the call's context carries it, never more than the gateway reads."""
    limit = ctx_meta.get("max_result") if isinstance(ctx_meta, dict) else None
    if type(limit) is int and 0 < limit < MAX_RESULT:
        return limit
    return MAX_RESULT


def _result_body(result: Any, ctx_meta: Any) -> bytes:
    """The reply's body: the result as JSON, or an http trigger's proxy response split in
    its head and content (httpresult.py), as the call's context asks."""
    response = ctx_meta.get("response") if type(ctx_meta) is dict else None
    if response in httpresult.FORMATS:
        split = httpresult.proxy_body(result, response)
        if split is not None:
            return split
    return jsonwire.dumps(result, compact=True, allow_nan=False).encode()


def _trace() -> str:
    import traceback  # only on failure: every import here costs each cold start

    return traceback.format_exc()[-8000:]


def run_call(
    sock: Socket,
    handler: Callable[[Any, Context], Any],
    watch: CallWatch = _NO_WATCH,
) -> None:
    """Serve one invocation on `sock`; never raises. `watch` notes what alert policies see."""
    output = CapturedOutput()
    try:
        ctx_meta = recv_frame(sock)
        event = recv_frame(sock)
    except Exception as e:
        ctx_meta, event = b"", f"{e}".encode()
    head, body = _invoke(sock, None, handler, watch, output, ctx_meta, event, _peak_memory_kb)
    output.restore()
    try:
        send_frames(sock, head, body)
    except OSError:
        pass  # the gateway went away; nobody is left to tell


def serve_channel(
    sock: Socket,
    handler: Callable[[Any, Context], Any],
    watch: CallWatch,
    end_leftovers: Callable[[], None] | None,
) -> None:
    """A warm worker's calls, one after another, on its persistent channel; returns at its end.

    Each call arrives as three frames (its token, its context, its event) and
    is answered with the reply's head and body and then the end-of-call frame
    (``END`` + the token), written once what the call started has been ended.
    `end_leftovers` is None for a worker the kernel refuses every new process
    (worker.py, `may_make_children`): no call can start one, or reap one.
    """
    reader = FrameReader(sock)
    output = ReusedOutput()
    peak = _own_peak_kb if end_leftovers is None else _peak_memory_kb
    while True:
        # Between calls no function code runs: a thread is caught by the supervisor, and
        # a timer's signal handler (no thread needed) waits, blocked, for the next call
        # (the wait blocks every signal while it sleeps: callwait.py).
        try:
            token, ctx_meta, event = reader.next_call()
        except (OSError, FrameError):
            return  # the gateway closed the channel (or the function broke it)
        output.begin()
        head, body = _invoke(sock, reader.frame, handler, watch, output, ctx_meta, event, peak)
        if end_leftovers is not None:
            end_leftovers()  # before the call's end is said: the gateway relies on it
        try:
            send_reply(sock, head, body, END + token)
        except OSError:
            return


def _invoke(
    sock: Socket,
    recv: Callable[[], bytes] | None,
    handler: Callable[[Any, Context], Any],
    watch: CallWatch,
    output: CapturedOutput | ReusedOutput,
    raw_meta: bytes,
    raw_event: bytes,
    peak_kb: Callable[[], int],
) -> tuple[bytes, bytes]:
    """Run the handler on one call's frames; the reply's head and body. Never raises.

    `sock` is the call's socket (function code can find it up the stack; it is
    the function's own), `recv` reads a frame from it for `context.invoke`.
    """
    meta: dict[str, Any] = _OK  # replaced by a new dict unless the call succeeds
    body = b""
    secrets: Secrets | None = None
    try:
        ctx_meta = jsonwire.loads(raw_meta)
        event = jsonwire.loads(raw_event)
        context = Context(ctx_meta, sock, recv)
        secrets = context.secrets  # kept here: the handler may rebind context.secrets
        lambda_env.begin_call(context.request_id)
        watch.begin()
        try:
            result = handler(event, context)
        except MemoryError:
            meta = {"ok": False, "kind": "memory", "error": "the function ran out of memory"}
        except BaseException as e:
            meta = {
                "ok": False,
                "kind": "error",
                "error": f"{type(e).__name__}: {e}"[:2000],
                "trace": _trace(),
            }
        else:
            try:
                body = _result_body(result, ctx_meta)
                limit = _result_limit(ctx_meta)
                if len(body) > limit:
                    meta = {
                        "ok": False,
                        "kind": "too_large",
                        "error": f"the result is larger than {limit} bytes",
                        "size": len(body),
                        "limit": limit,
                    }
                    body = b""
            except (TypeError, ValueError) as e:
                meta = {
                    "ok": False,
                    "kind": "result",
                    "error": f"the handler returned a value that is not JSON: {e}"[:2000],
                }
    except MemoryError:
        meta = {"ok": False, "kind": "memory", "error": "the function ran out of memory"}
    except Exception as e:
        meta = {"ok": False, "kind": "runtime", "error": f"bad invocation frame: {e}"}
    lambda_env.end_call()
    seen = watch.report()  # best effort (policy_hooks.py): the host keeps alerts only
    out = output.collect()
    read: list[str] = []
    if secrets is not None:
        try:
            read = secrets.read_names()
        except Exception:  # the handler broke its own bookkeeping: it reports no reads
            read = []
    mem_kb = peak_kb()
    if meta is _OK and not seen and not read:
        # The usual head, {"ok": true, "out": ..., "mem_kb": ...}, written as _head's
        # encoder writes it (tests/sandbox/test_reply_head.py), without the dict.
        head = f'{{"ok":true,"out":{jsonwire.quote(out)},"mem_kb":{int(mem_kb)}}}'.encode()
        if len(head) <= MAX_HEAD:
            return head, body
    meta = {**meta, **seen, "out": out}
    if read:  # which granted secrets this call read, whatever its outcome
        meta["secrets_read"] = read
    meta["mem_kb"] = mem_kb
    return _head(meta), body


def _head(meta: dict[str, Any]) -> bytes:
    """The reply's head, within the MAX_HEAD the gateway reads.

    The output is at most MAX_OUTPUT bytes, but a byte that is not UTF-8 or a control
    character escapes to six in JSON (``\\ufffd``, ``\\u0000``): such output would make
    a head the gateway refuses, and the call would lose its answer. Its oldest part is
    dropped then, until the head fits; the note says how much.
    """
    head = jsonwire.dumps(meta, compact=True).encode()
    out = meta.get("out")
    if len(head) <= MAX_HEAD or not isinstance(out, str) or not out:
        return head
    # The escaped size shrinks as the cut grows: the smallest cut that fits, by bisection.
    room = MAX_HEAD - (len(head) - len(jsonwire.dumps(out))) - 128  # 128: the note
    low, high = 0, len(out)
    while low < high:
        mid = (low + high) // 2
        if len(jsonwire.dumps(out[mid:])) <= room:
            high = mid
        else:
            low = mid + 1
    meta["out"] = f"[{low} earlier characters dropped to fit the reply]\n" + out[low:]
    return jsonwire.dumps(meta, compact=True).encode()
