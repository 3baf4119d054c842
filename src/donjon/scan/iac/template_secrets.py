"""Whether a value written in a template (an environment variable, a parameter default,
a property) is a hard-coded secret, judged with the secrets scanner's own detectors.

Two ways in, as the line scanner has them: a known credential format anywhere (an AWS
key, a GitHub or Slack token, a private key, an Azure storage key, a URL or connection
string with a password: detect-secrets' format detectors and Donjon's `tokens`, found
by `secret_detect.detect`), or a variable *named* like a secret (``DB_PASSWORD``,
``STRIPE_API_KEY``, ``JWT_SECRET``, ``GITHUB_TOKEN``) whose value passes the value
filters of `secret_values` (not a reference, a boolean, a word, a placeholder...).
Names that only point at a secret (``DB_SECRET_ARN``, ``API_KEY_PARAM``, ``TOKEN_TTL``)
are not secret names. Connection strings are judged by what they hold, not by a
``_CONNECTION_STRING`` name (Application Insights' carries only an instrumentation
id). A random-looking value under any other name is left to the line scanner's
entropy rule (DJ-SEC-004): an environment full of ids and hashes is not full of
secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from donjon.scan.model import Confidence

__all__ = ["SecretHit", "find_secret", "is_secret_name", "masked"]

_SECRET_NAME = re.compile(
    r"pass(?:word|wd|phrase)?(?![a-z])|pwd|secret|token|api_?key|apikey|access_?key"
    r"|private_?key|signing_?key|encryption_?key|auth_?key|master_?key|credential",
    re.IGNORECASE,
)
#: Where a secret lives, in the clouds' own reference syntaxes (Azure Key Vault
#: references in app settings; the rest are caught by `secret_values.is_reference`).
_VAULT_REFERENCE = re.compile(r"@Microsoft\.KeyVault\(", re.IGNORECASE)
#: Suffixes of names that point at a secret or describe it rather than hold it.
_POINTER_NAME = re.compile(
    r"_(?:arn|name|id|ids|path|param|parameter|ref|region|ttl|length|len|header|file|"
    r"table|bucket|queue|topic|version|type|expiry|expires|expiration|enabled|enable|"
    r"endpoint|url|uri|key_id|kms|location|store|provider|source|seconds|minutes|hours|"
    r"days|timeout|rotation|policy|prefix|field|env)$",
    re.IGNORECASE,
)
#: What the line scanner's detectors say that counts here without a secret name.
_FORMAT_RULES = frozenset({"DJ-SEC-001", "DJ-SEC-002", "DJ-SEC-005"})


@dataclass(frozen=True)
class SecretHit:
    """A secret found in a value: what kind, how sure, and the value masked."""

    kind: str
    confidence: Confidence
    masked: str


def is_secret_name(name: str) -> bool:
    """Whether a variable or parameter of this name holds a secret (not a pointer to one)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())  # DbPasswordArn -> Db_Password_Arn
    return bool(_SECRET_NAME.search(snake)) and not _POINTER_NAME.search(snake)


def masked(secret: str, *, show_prefix: bool = False) -> str:
    """The secrets scanner's mask (length, and a token format's prefix)."""
    from donjon.scan.scanners.secrets import mask  # lazy: the catalog imports this module

    return mask(secret, show_prefix=show_prefix)


def find_secret(name: str, value: str) -> SecretHit | None:
    """The secret in `value` (written under `name`), or None."""
    from donjon.scan.scanners.secret_detect import CANDIDATE_LINE, detect, keyword_regexes
    from donjon.scan.scanners.secret_values import Verdict, classify, is_reference

    text = value.strip()
    if not text or is_reference(text) or _VAULT_REFERENCE.match(text):
        return None
    # Speed only: what the line scanner's pre-filter rules out, no detector can match.
    candidates = (
        detect(text, keyword_regexes("template.yaml"), False) if CANDIDATE_LINE.search(text) else []
    )
    for cand in candidates:
        if cand.rule_id in _FORMAT_RULES:
            show = cand.rule_id == "DJ-SEC-001"
            return SecretHit(cand.kind, Confidence.HIGH, masked(cand.secret, show_prefix=show))
    if not is_secret_name(name):
        return None
    verdict = classify(text)
    if verdict is Verdict.NOT_SECRET:
        return None
    weak = verdict is Verdict.WEAK
    return SecretHit(
        "a literal value for a secret", Confidence.LOW if weak else Confidence.MEDIUM, masked(text)
    )
