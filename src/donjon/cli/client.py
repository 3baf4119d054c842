"""The CLI's HTTP client for the gateway's API."""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx

from donjon.cli.output import printable
from donjon.config import Settings
from donjon.errors import Error

__all__ = ["MAX_ANSWER_BYTES", "MAX_PAGE_BYTES", "AnswerCut", "ApiClient", "ApiError"]

#: The largest answer the CLI reads whole unless a command asks for more (`donjon logs`):
#: far above any admin list or result (a function's result is at most 6 MiB), far below
#: what costs the host its memory once parsed and printed (each MiB of JSON takes tens of
#: MiB as Python objects and as the text printed: 256 MiB of `[0,0,...]` took 11 GiB).
MAX_ANSWER_BYTES = 32 * 1024 * 1024
#: The bound of a page of the audit log, of its timeline or of alerts (up to 10,000
#: records of any size the node kept): what the CLI took for every answer before.
MAX_PAGE_BYTES = 256 * 1024 * 1024


class ApiError(Error):
    """The gateway answered with a problem document, or could not be reached."""

    title = "API error"

    def __init__(
        self, message: str, *, hint: str = "", http_status: int = 0, request_id: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        #: The status the gateway answered with (0: it was not reached).
        self.http_status = http_status
        #: The request id the problem document carried ("" if none).
        self.request_id = request_id


class AnswerCut(ApiError):
    """The node answered, then ended its answer before the end (a streamed body)."""


class ApiClient:
    """Calls the gateway with the configured key; trusts the node's own certificate."""

    def __init__(
        self,
        settings: Settings,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ):
        self.settings = settings
        self._max_answer = max_answer_bytes
        key = api_key or (settings.api_key.reveal() if settings.api_key else None)
        if not key:
            raise ApiError("no API key", hint="set DONJON_API_KEY (printed by `donjon init`)")
        verify: Any = True
        ca = settings.client_ca
        if settings.url.startswith("https://") and ca is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca))
            except (ssl.SSLError, OSError) as e:
                raise ApiError(
                    f"cannot load the CA file {ca}: {getattr(e, 'reason', None) or e}",
                    hint="set DONJON_CA_BUNDLE to a PEM file of the CA that signed the node's "
                    "certificate (for a node `donjon init` made: DATA_DIR/tls/cert.pem)",
                ) from e
        self._ca = ca
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=settings.url,
            verify=verify,
            timeout=timeout,
            headers={"authorization": f"Bearer {key}"},
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer, read whole up to the client's bound; a problem or a redirect raises."""
        try:
            with self._http.stream(method, path, **kwargs) as streamed:
                response = _read_bounded(streamed, self._timeout, self._max_answer)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e
        _refuse_redirect(response)
        if response.status_code >= 400:
            raise _problem(response)
        return response

    def _unreachable(self, e: httpx.HTTPError) -> ApiError:
        """Why the node could not be reached, told apart: its certificate, or no answer."""
        cert = _certificate_error(e)
        if cert is None:
            return ApiError(
                f"cannot reach Donjon at {self.settings.url}: {e}",
                hint="is `donjon serve` running? is DONJON_URL right?",
            )
        trusted = f"the CA in {self._ca}" if self._ca else "the system's CAs"
        if self._ca is None and self.settings.url_is_local:
            hint = (
                f"no node certificate at {self.settings.tls_cert_path}: set DONJON_DATA_DIR "
                "to the node's data dir, or DONJON_CA_BUNDLE to its tls/cert.pem"
            )
        else:
            hint = (
                "set DONJON_CA_BUNDLE to the CA file that signed the node's certificate "
                "(for a node `donjon init` made: DATA_DIR/tls/cert.pem; after `donjon tls "
                "renew`, the new one)"
            )
        return ApiError(
            f"the TLS certificate of {self.settings.url} is not trusted "
            f"({cert.verify_message or cert.reason}; checked against {trusted})",
            hint=hint,
        )

    def close(self) -> None:
        """Close the connection: an idle TLS connection left open holds a stopping node
        until its close exchange times out."""
        self._http.close()

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A response whose body is read as it comes (`iter_bytes`); errors as `request`."""
        answered = False
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 300:
                    answer = _read_bounded(response, self._timeout, self._max_answer)
                    _refuse_redirect(answer)
                    raise _problem(answer)
                answered = True
                yield response
        except httpx.HTTPError as e:
            if answered:  # reached, and it answered: what came is not all there was
                raise AnswerCut(
                    f"{self.settings.url} ended its answer to {method} {path} before its end: {e}",
                    hint="what was received is incomplete; the node's log says why",
                ) from e
            raise self._unreachable(e) from e

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, or nested past the stack
            raise ApiError(
                f"{self.settings.url} answered {method} {path} with a body that is not JSON "
                "(or nested too deep to read)",
                hint="is DONJON_URL a Donjon node?",
            ) from e


def _read_bounded(response: httpx.Response, timeout: float, limit: int) -> httpx.Response:
    """`response` with its body read, refused once past `limit` bytes (a server that
    never ends its answer is not held in memory) or `timeout` seconds (one that sends it
    a byte at a time, never idle long enough for the read timeout)."""
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise ApiError(
                f"{response.request.url.host} did not finish its answer within {timeout:g} s",
                hint="is DONJON_URL a Donjon node? is the network to it slow?",
            )
        size += len(chunk)
        if size > limit:
            raise ApiError(
                f"the answer from {response.request.url.host} is larger than "
                f"{limit / (1 << 20):g} MiB, more than this command can need; it was cut off",
                hint="is DONJON_URL a Donjon node? (`donjon audit export` streams larger ones)",
            )
        chunks.append(chunk)
    # Decoded already: the new response must not decode it again, nor trust the old length.
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=b"".join(chunks), request=response.request
    )


def _refuse_redirect(response: httpx.Response) -> None:
    """A redirect is never followed (the API key would go along) nor taken for an answer."""
    if 300 <= response.status_code < 400:
        where = response.headers.get("location", "")
        raise ApiError(
            f"{response.request.url.host} answered {response.status_code}, a redirect to "
            f"{where[:200] or 'nowhere'}; not followed (the API key is sent to DONJON_URL only)",
            hint="set DONJON_URL to the node's own address",
            http_status=response.status_code,
        )


def _certificate_error(e: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure under an httpx error, if that is what it was."""
    seen: BaseException | None = e
    for _ in range(10):  # a bounded walk down the cause chain
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _indented(text: object) -> str:
    return printable(text, multiline=True).replace("\n", "\n  ")


def _problem(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = None
    if not isinstance(body, dict):  # not a problem document: something else answered
        body = {"detail": response.text[:500]}
    # Every line of the server's text after the first is indented: none can pass for the
    # CLI's own `error:` or `hint:` line.
    detail = _indented(body.get("detail") or body.get("title") or "request failed")
    problems = body.get("problems")
    if isinstance(problems, list) and problems:
        detail += "\n  " + "\n  ".join(_indented(p) for p in problems)
    if body.get("report"):
        detail += "\n\n  " + _indented(str(body["report"]).rstrip())
    rid = body.get("request_id")
    # The request id once: some details name it already ("the function failed (request
    # ...)", "see `donjon logs` for request ...").
    named = isinstance(rid, str) and rid in detail
    return ApiError(
        f"{response.status_code} {detail}" + (f" (request {rid})" if rid and not named else ""),
        http_status=response.status_code,
        request_id=rid if isinstance(rid, str) else "",
    )
