"""Donjon's own token formats: credentials detect-secrets does not know (or misses).

Each format has a distinctive prefix or shape, so a match is a credential with high
confidence; values that read as placeholders (``EXAMPLE``, ``xxxx``, ``changeme``) are
dropped for every detector by `is_placeholder`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TOKEN_FORMATS", "TokenFormat", "fixed_length", "is_placeholder", "is_whole_token"]


@dataclass(frozen=True)
class TokenFormat:
    """A credential format: its name and a pattern whose group 1 is the secret."""

    name: str
    pattern: re.Pattern[str]


def _fmt(name: str, pattern: str) -> TokenFormat:
    return TokenFormat(name, re.compile(pattern))


TOKEN_FORMATS = (
    _fmt("Donjon API key", r"\b(dj_[0-9a-f]{16}_[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])"),
    _fmt("Google API key", r"\b(AIza[0-9A-Za-z_-]{35})(?![A-Za-z0-9_-])"),
    _fmt("GitHub fine-grained token", r"\b(github_pat_[0-9A-Za-z_]{82})\b"),
    _fmt(
        "Slack webhook URL",
        r"(https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,})",
    ),
    _fmt(
        "Discord webhook URL",
        r"(https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{5,}/[\w-]{50,})",
    ),
    _fmt("Anthropic API key", r"\b(sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{80,})"),
    _fmt("OpenAI project key", r"\b(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,})"),
    _fmt("Hugging Face token", r"\b(hf_[A-Za-z]{34})\b"),
    _fmt("DigitalOcean token", r"\b(do[opr]_v1_[a-f0-9]{64})\b"),
    _fmt("Databricks token", r"\b(dapi[a-f0-9]{32}(?:-\d)?)\b"),
    _fmt("Shopify token", r"\b(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b"),
    _fmt("Postman API key", r"\b(PMAK-[a-f0-9]{24}-[a-f0-9]{34})\b"),
    _fmt("Mailgun API key", r"\b(key-[0-9a-f]{32})\b"),
    _fmt("HashiCorp Vault token", r"\b(hv[sb]\.[A-Za-z0-9_-]{90,})"),
    _fmt("Atlassian API token", r"\b(ATATT3[A-Za-z0-9_=-]{150,})"),
    _fmt("Linear API key", r"\b(lin_api_[A-Za-z0-9]{40})\b"),
    _fmt("Stripe webhook secret", r"\b(whsec_[A-Za-z0-9]{32,})\b"),
    _fmt("GitLab token", r"\b(gl(?:pat|dt|rt|ptt|cbt|oas)-[0-9A-Za-z_-]{20,})"),
    _fmt("npm token", r"\b(npm_[A-Za-z0-9]{36})\b"),
    _fmt("PyPI upload token", r"\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,})"),
    _fmt("SendGrid API key", r"\b(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})\b"),
    _fmt("Twilio API key", r"\b(SK[0-9a-fA-F]{32})\b"),
    # Bot id, a colon, then 35 characters starting with "A" (gitleaks' shape); standing alone
    # or after ``/bot`` in an API URL, never inside a longer run of digits (a Kinesis
    # ``shardId-000000000006:4959...`` event id is not a token).
    _fmt(
        "Telegram bot token",
        r"(?:(?<=/bot)|(?<![\w:./-]))(\d{8,10}:A[\w-]{34})(?![\w-])",
    ),
)


def fixed_length(pattern: re.Pattern[str]) -> bool:
    """Whether a format pattern ends with a fixed count (``{36}``): its token has a set length."""
    return bool(_FIXED_END.search(pattern.pattern))


def is_whole_token(line: str, start: int, end: int, *, fixed: bool) -> bool:
    """Whether ``line[start:end]`` stands as a token of its own: no letter or digit right
    before it, nor right after it when the format has a fixed length.

    detect-secrets' format patterns are unanchored, so ``AKIA...`` inside a longer base64 run
    or a token shape inside an identifier would match; gitleaks bounds each format the same
    way (a word boundary before, a quote, space or separator after). Checked on the match
    rather than written into the pattern, so the regex engine keeps its fast literal-prefix
    search.
    """
    if start > 0 and line[start - 1].isascii() and line[start - 1].isalnum():
        return False
    return not (fixed and end < len(line) and line[end].isascii() and line[end].isalnum())


_FIXED_END = re.compile(r"\{\d+\}\)?$")
_PLACEHOLDER = re.compile(
    r"example|xxxx|changeme|change_me|change-me|your[_-]?(?:own|key|token|secret|pass)"
    r"|dummy|placeholder|redacted|sample|fake|not[_-]?a[_-]?real|insert|replace[_-]?me"
    r"|\$\{|\{\{|<[a-z_ -]+>|\*\*\*",
    re.IGNORECASE,
)


def is_placeholder(secret: str) -> bool:
    """Whether `secret` reads as a placeholder rather than a real credential."""
    if len(set(secret)) <= 2:
        return True
    return bool(_PLACEHOLDER.search(secret))
