"""A handler's `context.invoke(name, event)` as the host sees it: a request mid-call.

While its handler runs, a worker may write a request on the call's socket
instead of its reply: a head frame ``{"op":"invoke","function":NAME}`` and the
event frame (JSON). The host answers with two frames of the reply's shape:
``{"ok":true}`` and the callee's result, or ``{"ok":false,"kind":K,"error":...}``
and an empty body. Then the handler goes on, and its reply (or another request)
follows. What answers a request is the gateway's (`SubCall`): the sandbox only
carries it.

The worker is untrusted: a head is a request only if it starts with the exact
bytes the runtime writes (so a normal reply costs one ``startswith``), is
small, parses with a depth bound, has exactly these keys and names a function
by the manifest's name pattern; anything else is answered as refused, and
the call goes on to its deadline as before.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable

from donjon import boundedjson
from donjon.boundedjson import JSONTooDeep
from donjon.sandbox.channel import read_frames, write_frames
from donjon.sandbox.replies import MAX_HEAD, MAX_RESULT

__all__ = [
    "MAX_REQUEST_HEAD",
    "REQUEST_PREFIX",
    "SubCall",
    "answer",
    "answer_error",
    "answer_ok",
    "exchange",
    "is_request",
    "request_target",
]

#: How every request head starts (runtime/context.py writes it so, keys in this order).
REQUEST_PREFIX = b'{"op":"invoke",'
#: A request head is a function name and a few bytes of JSON around it.
MAX_REQUEST_HEAD = 256
_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")

log = logging.getLogger("donjon")

#: Answers one request: (callee name, event bytes) -> (answer head, answer body).
SubCall = Callable[[str, bytes], Awaitable[tuple[bytes, bytes]]]


def is_request(head: bytes) -> bool:
    """Whether the frame the worker wrote is a request rather than its reply."""
    return head.startswith(REQUEST_PREFIX)


def request_target(head: bytes) -> str | None:
    """The function a request head names, or None if the head is not a valid request."""
    if len(head) > MAX_REQUEST_HEAD:
        return None
    try:
        msg = boundedjson.loads(head)
    except (ValueError, JSONTooDeep):
        msg = None
    if (
        not isinstance(msg, dict)
        or set(msg) != {"op", "function"}
        or not isinstance(msg["function"], str)
        or not _NAME.fullmatch(msg["function"])
    ):
        return None
    return msg["function"]


def answer_ok(body: bytes) -> tuple[bytes, bytes]:
    return b'{"ok":true}', body


def answer_error(kind: str, error: str) -> tuple[bytes, bytes]:
    """A refusal or failure the handler sees as an exception (`kind` picks its class)."""
    return json.dumps({"ok": False, "kind": kind, "error": error[:2000]}).encode(), b""


async def answer(head: bytes, event: bytes, subcalls: SubCall | None) -> tuple[bytes, bytes]:
    """The answer to one request the worker wrote; whatever happens, its call goes on."""
    name = request_target(head)
    if name is None:
        return answer_error("invalid", "the invoke request was malformed")
    if subcalls is None:
        return answer_error("denied", "context.invoke is not available to this call")
    try:
        return await subcalls(name, event)
    except Exception:  # a bug of ours must not leave the worker waiting for an answer
        log.exception("context.invoke of %s failed in the platform", name)
        return answer_error("error", f"the platform could not invoke {name}")


async def exchange(
    sock: socket.socket, meta: bytes, event: bytes, subcalls: SubCall | None
) -> tuple[bytes, bytes]:
    """Send a call's context and event, answer its requests, return its reply's two frames."""
    await write_frames(sock, meta, event)
    head, body = await read_frames(sock, 2, (MAX_HEAD, MAX_RESULT))
    while is_request(head):  # context.invoke: answer, then read on
        await write_frames(sock, *await answer(head, body, subcalls))
        head, body = await read_frames(sock, 2, (MAX_HEAD, MAX_RESULT))
    return head, body
