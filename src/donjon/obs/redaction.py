"""The redaction step of the server's logs: credentials and secret values never reach a line.

Every line (Donjon's own, uvicorn's, any library's through `logging`) passes
`redact_event` after its message is formatted and its traceback is rendered,
so what is checked is exactly what is written. Taken out:

- the values of headers and fields that carry credentials (`Authorization`,
  `Proxy-Authorization`, `Cookie`, `Set-Cookie`, and keys named like a
  password, token, secret or API key), whatever they hold;
- in any text: Donjon API keys (`dj_...`), bearer and basic credentials, JWTs
  (three base64url segments starting `eyJ`), PEM blocks (private keys,
  certificates), Standard Webhooks secrets (`whsec_...`), and `Authorization:` /
  `Cookie:` header lines written as text;
- the values of the secrets granted to the call being served (the same
  `vault.redact.Redactor` that cleans a function's output), bound to the
  call's context by `bind_secrets`, so a line logged while the call runs,
  in any module, is cleaned of them.

What it cannot catch: a secret value that is neither bound to the current
call nor shaped like a credential (for instance one transformed before it is
logged). Logging such values is a bug; this step is the net below it.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from donjon.vault.redact import Redactor

__all__ = [
    "MASK",
    "SecretsToken",
    "bind_secrets",
    "log_secrets",
    "redact_event",
    "redact_text",
    "unbind_secrets",
]

MASK = "[redacted]"

#: Keys whose values are credentials whatever they hold (compared lower-cased, `-` as `_`).
_SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_api_key",
        "api_key",
        "apikey",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "private_key",
        "webhook_secret",
    }
)

#: (pattern, replacement): applied in order to every string of a line.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"-----BEGIN [A-Z0-9 ]{1,64}-----.*?(?:-----END [A-Z0-9 ]{1,64}-----|\Z)", re.S),
        "[redacted:pem]",
    ),
    # A header written as text: the rest of its line is the credential.
    (
        re.compile(r"(?im)\b((?:proxy-)?authorization|(?:set-)?cookie)(\s*[:=]\s*)[^\r\n]+"),
        r"\1\2" + MASK,
    ),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{4,}"), r"\1\2" + MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[redacted:jwt]"),
    (re.compile(r"\bdj_[A-Za-z0-9_-]{6,}"), "dj_" + MASK),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{6,}"), "whsec_" + MASK),
)

_secrets: contextvars.ContextVar[tuple[Redactor, ...]] = contextvars.ContextVar(
    "donjon_log_secrets", default=()
)
SecretsToken = contextvars.Token[tuple[Redactor, ...]]


def bind_secrets(redactor: Redactor) -> SecretsToken:
    """Lines logged from now on in this context (the call being served, and the calls it
    makes) lose these values too, until `unbind_secrets` with what this returned."""
    return _secrets.set((*_secrets.get(), redactor) if redactor else _secrets.get())


class log_secrets:
    """Within the block (a call in the sandbox) lines lose these values too.

    A class rather than a generator: it is entered on every call, and with no
    secret to take out (most functions) it binds nothing at all."""

    __slots__ = ("_redactor", "_token")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._token: SecretsToken | None = None

    def __enter__(self) -> None:
        if self._redactor:
            self._token = bind_secrets(self._redactor)

    def __exit__(self, *_exc: object) -> None:
        unbind_secrets(self._token)
        self._token = None


def unbind_secrets(token: SecretsToken | None) -> None:
    """The call is over: its caller's secrets (if any) are what lines lose again.

    Bound and unbound around each call, a request's context holds one redactor
    per call in the chain being served (at most its depth), whatever it calls."""
    if token is not None:
        _secrets.reset(token)


def redact_text(text: str) -> str:
    """`text` without the credentials it holds and the current call's secret values."""
    for redactor in _secrets.get():
        text = redactor(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in _SECRET_KEYS


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 8:  # a deeper structure is rendered as text, and cleaned as text
        return redact_text(repr(value))
    if isinstance(value, Mapping):
        return {
            k: MASK if _is_secret_key(k) and v else _clean(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = [_clean(v, depth + 1) for v in value]
        # Header lists as (name, value) pairs: the value of a credential header goes.
        if len(items) == 2 and _is_secret_key(items[0]) and isinstance(value, tuple):
            items[1] = MASK
        return items
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(str(value))


def redact_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The structlog processor: every value of the line, cleaned (keys are kept)."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):  # structlog's own (`_record`, `_from_structlog`)
            continue
        event_dict[key] = MASK if _is_secret_key(key) and value else _clean(value)
    return event_dict
