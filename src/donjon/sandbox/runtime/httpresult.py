"""An http trigger's result, split in the function's own sandbox into a head and a body.

The gateway serves every tenant on one event loop, where parsing a 6 MiB proxy response
(`{"statusCode": ..., "body": [0, 0, ...]}`) and writing its body back out cost a
fraction of a second of everyone's time per call. So the worker, whose CPU is the
function's own, maps the handler's proxy response to HTTP's parts: its status and its
header fields go in a head, small and bounded, and the content (the body encoded,
base64-decoded or serialised) follows it as bytes, which the gateway sends on after its
checks without parsing them. The gateway trusts none of it: the response
policy checks the status and every header as before (gateway/response_policy.py).

The call's context says the format (`"response"`): `http` (Donjon's event; a body that is
not a string is sent as JSON), `apigw-v1` or `apigw-v2` (API Gateway's proxy response:
`headers`, `multiValueHeaders`, `cookies`, `isBase64Encoded`). A result that is no proxy
response (no `statusCode`) is a plain JSON result, as before: no head, the JSON as body;
apigw-v1 refuses it. A proxy response the gateway would refuse gets `{"error": why}`.
Both parts go in the reply's body frame (`MARK`, the head's length, the head, the content):
the reply's own head stays as every call's.

Imports nothing from donjon (this runs inside the sandbox).
"""

from __future__ import annotations

import binascii

from . import jsonwire

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FORMATS", "MARK", "proxy_body"]

FORMATS = frozenset({"http", "apigw-v1", "apigw-v2"})
#: How a split reply's body starts (no JSON does); then the head's length (4 bytes, big
#: endian), the head (JSON) and the content.
MARK = b"\x00http:"
#: The most bytes of header fields the gateway sends (its MAX_FIELD_BYTES), and of them
#: as JSON in the head (a character outside ASCII escapes to six).
MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS_JSON = 2 * MAX_FIELD_BYTES


class _Refused(Exception):
    """A proxy response the gateway would refuse; the message says why."""


def proxy_body(result: Any, response: str) -> bytes | None:
    """The reply's body for `result` in format `response`: its head and content, split; None
    for a plain JSON result (the caller serialises it as any result)."""
    if not (isinstance(result, dict) and "statusCode" in result):
        if response != "apigw-v1":
            return None
        return _framed(
            {"error": "the function's result is not an API Gateway proxy response (no statusCode)"}
        )
    try:
        status = result["statusCode"]
        if type(status) is not int:
            raise _Refused("the function returned a malformed http response")
        if response == "http":
            pairs, content = _donjon(result)
        else:
            pairs, content = _apigw(result, response), _apigw_content(result)
        if len(jsonwire.dumps(pairs, compact=True)) > _MAX_FIELDS_JSON:
            raise _Refused(f"the function's response headers are more than {MAX_FIELD_BYTES} bytes")
    except _Refused as e:
        return _framed({"error": str(e)})
    except (TypeError, ValueError, MemoryError):
        raise  # a body with no JSON form, memory: as any result's (call.py)
    except Exception as e:  # the function's own str() of a header raised, say
        return _framed({"error": f"the function's http response could not be read: {e}"[:500]})
    return _framed({"status": status, "headers": pairs}, content)


def _framed(head: dict[str, Any], content: bytes = b"") -> bytes:
    encoded = jsonwire.dumps(head, compact=True).encode()
    return MARK + len(encoded).to_bytes(4, "big") + encoded + content


def _donjon(result: dict[str, Any]) -> tuple[list[list[str]], bytes]:
    headers = result.get("headers") or {}
    payload = result.get("body", "")
    if not isinstance(headers, dict):
        raise _Refused("the function returned a malformed http response")
    pairs = [[str(k), str(v)] for k, v in headers.items()]
    if not isinstance(payload, str):
        payload = jsonwire.dumps(payload, allow_nan=False)
        if not any(k.lower() == "content-type" for k, _ in pairs):
            pairs.append(["content-type", "application/json"])
    return pairs, _utf8(payload)


def _apigw(result: dict[str, Any], response: str) -> list[list[str]]:
    """`headers`, `multiValueHeaders` (1.0: its values win for a name in both) and
    `cookies` (2.0: one Set-Cookie each) as [name, value] pairs."""
    single = result.get("headers") or {}
    multi = (result.get("multiValueHeaders") or {}) if response == "apigw-v1" else {}
    cookies = (result.get("cookies") or []) if response == "apigw-v2" else []
    if not (isinstance(single, dict) and isinstance(multi, dict) and isinstance(cookies, list)):
        raise _Refused(
            "the function's proxy response has headers, multiValueHeaders or cookies "
            "of the wrong type"
        )
    pairs: list[list[str]] = []
    in_multi = {str(k).lower() for k in multi}
    for name, value in single.items():
        if str(name).lower() not in in_multi:
            pairs.append([str(name), _scalar(value)])
    for name, values in multi.items():
        if not isinstance(values, list):
            raise _Refused(f"multiValueHeaders[{str(name)[:64]!r}] is not a list of values")
        pairs += [[str(name), _scalar(v)] for v in values]
    pairs += [["set-cookie", _scalar(c)] for c in cookies]
    return pairs


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise _Refused("a header value of the function's proxy response is not a string")


def _apigw_content(result: dict[str, Any]) -> bytes:
    payload = result.get("body")
    if payload is None:
        return b""
    if not isinstance(payload, str):
        raise _Refused("the body of the function's proxy response is not a string")
    if result.get("isBase64Encoded") is True:
        try:
            return binascii.a2b_base64(_utf8(payload), strict_mode=True)
        except (binascii.Error, ValueError) as e:
            raise _Refused("the function's body says isBase64Encoded but is not base64") from e
    return _utf8(payload)


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate
        raise _Refused("the function's body is not valid Unicode") from e
