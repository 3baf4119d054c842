"""The `context` a handler receives: Donjon's fields and those of AWS Lambda's Python context."""

from __future__ import annotations

import sys
import time
from _collections_abc import Mapping  # collections.abc's own: `collections` costs a start

from . import jsonwire, lambda_env
from .frames import FrameError, recv_frame, send_frames

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from .sockets import Socket

#: What context.invoke sends at most as an event (the gateway reads no more).
MAX_EVENT = 6 * 1024 * 1024


class InvokeError(Exception):
    """`context.invoke` did not get the callee's result; `kind` and `reason` say why.

    kind: "denied" (not granted, or the call chain is too deep), "throttled"
    (the callee's rate or concurrency limit), "not-found", "invalid" (the
    event), "timeout", "error" (the callee failed; its logs have the trace).
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class InvokeDenied(InvokeError):
    """The call was refused: the manifest's `permissions.invoke` does not grant it,
    or the chain of calls is too deep."""


class Secrets(Mapping[str, str]):
    """The granted secrets, read-only, noting which ones the handler read.

    Reading a value (`s[name]`, `s.get(name)`, `values()`, `items()`, `dict(s)`,
    `copy()`) marks its name as read; the names alone (`in`, `keys()`, iteration,
    `len`) do not. The names read go back in the call's reply, so the node can
    tell a grant that is used from one that is not (`donjon permissions unused`).
    """

    __slots__ = ("_read", "_values")

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self._read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        value = self._values[name]
        self._read.add(name)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def copy(self) -> dict[str, str]:
        """A plain dict of every value (as `MappingProxyType.copy` gave): all are read."""
        return dict(self.items())

    def read_names(self) -> list[str]:
        """The names whose values the handler read, sorted (strings only, whatever it did)."""
        if not self._read:
            return []
        return sorted(name for name in self._read if isinstance(name, str))

    def __repr__(self) -> str:
        return f"Secrets({sorted(self._values)!r})"  # names only, never values


class MobileClient:
    """`context.client_context.client`: the calling app, as AWS's mobile SDKs name it
    (each attribute None where the caller sent none)."""

    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, fields: dict[str, Any]) -> None:
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class ClientContext:
    """`context.client_context`: what a Lambda API caller sent in `X-Amz-Client-Context`
    (the gateway checked it is a JSON object whose members are objects): `client` (a
    MobileClient, or None), `custom` and `env` (dicts, or None)."""

    __slots__ = ("client", "custom", "env")

    def __init__(self, fields: dict[str, Any]) -> None:
        client = fields.get("client")
        self.client = MobileClient(client) if isinstance(client, dict) else None
        self.custom: dict[str, Any] | None = fields.get("custom")
        self.env: dict[str, Any] | None = fields.get("env")

    def __repr__(self) -> str:
        return f"ClientContext(custom={self.custom!r}, env={self.env!r})"


class Context:
    """What a handler may know about its invocation. Secrets: only those granted.

    A handler written for AWS Lambda finds what Lambda's context offers:
    `aws_request_id`, `function_name`, `function_version`, `memory_limit_in_mb`,
    `invoked_function_arn` (Donjon's own ARN-like name), `log_group_name`,
    `log_stream_name`, `identity`, `client_context` and
    `get_remaining_time_in_millis()`.

    An async delivery (a queued invoke, a webhook, a storage or database event) also
    carries its CloudEvents 1.0 attributes in `cloudevent` (specversion, id, source,
    type, time, subject, datacontenttype) and `event_id`, their `id`: the same on
    every attempt of one event, so a handler can be idempotent. A sync call has None.
    """

    __slots__ = (
        "_recv",
        "_sock",
        "client_context",
        "cloudevent",
        "deadline",
        "event_id",
        "function_name",
        "identity",
        "memory_limit_in_mb",
        "principal",
        "request_id",
        "secrets",
        "version",
    )

    InvokeError = InvokeError
    InvokeDenied = InvokeDenied

    def __init__(
        self,
        meta: dict[str, Any],
        sock: Socket | None = None,
        recv: Callable[[], bytes] | None = None,
    ) -> None:
        self.request_id: str = meta["request_id"]
        self.function_name: str = meta["function"]
        self.version: int = meta["version"]
        self.deadline: float = meta["deadline"]
        self.principal: str | None = meta.get("principal")
        self.secrets = Secrets(dict(meta.get("secrets") or {}))
        self._sock = sock
        #: reads the next frame of the call (a warm worker's channel reads buffered)
        self._recv = recv
        self.memory_limit_in_mb: int = int(meta.get("memory_mb") or 0)
        attributes = meta.get("cloudevent")
        self.cloudevent: dict[str, str] | None = (
            dict(attributes) if isinstance(attributes, dict) else None
        )
        self.event_id: str | None = self.cloudevent.get("id") if self.cloudevent else None
        # Lambda's identity is its Cognito callers' (none here); a Lambda API caller's
        # X-Amz-Client-Context arrives as `client_context` (gateway/lambda_api.py).
        self.identity: object | None = None
        sent = meta.get("client_context")
        self.client_context = ClientContext(sent) if isinstance(sent, dict) else None

    # -- AWS Lambda's names -----------------------------------------------------

    @property
    def aws_request_id(self) -> str:
        return self.request_id

    @property
    def function_version(self) -> str:
        return str(self.version)

    @property
    def invoked_function_arn(self) -> str:
        return lambda_env.function_arn(self.function_name)

    @property
    def log_group_name(self) -> str:
        return lambda_env.log_group(self.function_name)

    @property
    def log_stream_name(self) -> str:
        return lambda_env.log_stream(self.version)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the call's deadline (0 once it has passed), as Lambda."""
        return max(0, int((self.deadline - time.time()) * 1000))

    # -- Donjon's ---------------------------------------------------------------

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.time())

    def log(self, *parts: object) -> None:
        print(*parts, file=sys.stderr, flush=True)

    def invoke(self, name: str, event: Any = None) -> Any:
        """Call function `name` with `event` (JSON) and return its result.

        Allowed only for the names in this function's `permissions.invoke`;
        the callee runs under its own limits and secrets, within this call's
        deadline. Raises `InvokeDenied` or `InvokeError` (also reachable as
        `context.InvokeDenied` and `context.InvokeError`) when it gets no result.
        """
        if not isinstance(name, str) or not 0 < len(name) <= 63:
            raise InvokeError("invalid", "the function name must be a string of 1 to 63 characters")
        if self._sock is None:
            raise InvokeError("invalid", "context.invoke is not available outside a call")
        try:
            body = jsonwire.dumps({} if event is None else event, allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise InvokeError("invalid", f"the event is not JSON: {e}") from None
        if len(body) > MAX_EVENT:
            raise InvokeError("invalid", f"the event is larger than {MAX_EVENT} bytes")
        # Keys in this order, no spaces: the host tells a request from a reply by its start.
        head = jsonwire.dumps({"op": "invoke", "function": name}, compact=True)
        try:
            send_frames(self._sock, head.encode(), body)
            sock = self._sock
            recv = self._recv or (lambda: recv_frame(sock))
            answer = jsonwire.loads(recv())
            result = recv()
        except (OSError, FrameError, ValueError) as e:
            raise InvokeError("error", f"the platform did not answer: {e}") from None
        if not isinstance(answer, dict) or not answer.get("ok"):
            kind = str(answer.get("kind", "error")) if isinstance(answer, dict) else "error"
            reason = str(answer.get("error", "")) if isinstance(answer, dict) else ""
            raise (InvokeDenied if kind == "denied" else InvokeError)(kind, reason)
        return jsonwire.loads(result)

    def __repr__(self) -> str:
        return f"Context(request_id={self.request_id!r}, function_name={self.function_name!r})"
