"""Line detection for `SecretScanner`: detect-secrets' detectors and Donjon's token formats.

detect-secrets is used as a library: its detector plugins and its false-positive
heuristics, driven line by line (thread-safe: no global settings, no network verification,
and a cheap pre-filter, `CANDIDATE_LINE`, so most lines never reach the 25 detectors).
Format detectors match only whole tokens (`tokens.is_whole_token`); keyword values must look
like secrets (`secret_values`). Where detectors overlap on one value, the most specific names
it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from urllib.parse import unquote

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters import heuristic
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
from detect_secrets.plugins.keyword import REGEX_BY_FILETYPE, KeywordDetector
from detect_secrets.util.filetype import FileType, determine_file_type

from donjon.scan.scanners.secret_values import Verdict, classify, not_a_secret
from donjon.scan.scanners.secrets_prefilter import for_line
from donjon.scan.scanners.tokens import (
    TOKEN_FORMATS,
    fixed_length,
    is_placeholder,
    is_whole_token,
)

__all__ = ["CANDIDATE_LINE", "Candidate", "detect", "format_detectors", "keyword_regexes"]

#: A line that matches none of this cannot hold anything the detectors report.
CANDIDATE_LINE = re.compile(
    r"(?i:pass|pwd|secret|key|token|auth|cred|contras|BEGIN|PuTTY|://|hooks)"
    r"|[A-Za-z0-9+/=_\-]{16,}|['\"][A-Za-z0-9_+/=\-]{9,}['\"]"
)
_ENTROPY_MARGIN = 1e-9
#: A key=value connection string (libpq, ODBC, ADO.NET) and the password in it.
_DSN = re.compile(r"(?i)\b(?:host|server|dbname|database|data source|uid|user id)\s*=")
_DSN_PASSWORD = re.compile(r"(?i)(?<![\w-])(?:password|pwd)\s*=\s*([^\s;'\"{}$]{3,})(?=[\s;'\"]|$)")
#: The credential of an HTTP Authorization header written out (``"Bearer <token>"``,
#: ``"Basic <base64>"``), wherever it stands: a headers dict, a curl line, a YAML value.
_AUTH_HEADER = re.compile(
    r"(?i)(?<![\w-])(?:bearer|basic)\s+([A-Za-z0-9\-._~+/]{16,}=*)(?=['\"`\s,;)}\]]|$)"
)
#: Telegram's shape is matched by Donjon's own bounded format (tokens.py) instead.
_SKIP_TYPES = frozenset({"Public IP (ipv4)", "Telegram Bot Token"})
_RULE_BY_TYPE = {
    "Private Key": "DJ-SEC-002",
    "Secret Keyword": "DJ-SEC-003",
    "Base64 High Entropy String": "DJ-SEC-004",
    "Hex High Entropy String": "DJ-SEC-004",
    "Basic Auth Credentials": "DJ-SEC-005",
}
#: When detectors overlap on one value, the most specific one names it.
_PRIORITY = {"DJ-SEC-002": 0, "DJ-SEC-001": 1, "DJ-SEC-005": 2, "DJ-SEC-003": 3, "DJ-SEC-004": 4}
_CODE_TYPES = frozenset(
    {
        FileType.PYTHON,
        FileType.JAVASCRIPT,
        FileType.JAVA,
        FileType.GO,
        FileType.SWIFT,
        FileType.TERRAFORM,
        FileType.C,
        FileType.C_SHARP,
        FileType.C_PLUS_PLUS,
        FileType.PHP,
        FileType.OBJECTIVE_C,
    }
)
#: detect-secrets detectors that match a token's own shape (a prefix and a length).
_FORMAT_TYPES = frozenset(
    {
        "AWS Access Key",
        "Discord Bot Token",
        "GitHub Token",
        "GitLab Token",
        "JSON Web Token",
        "Mailchimp Access Key",
        "OpenAI Token",
        "PyPI Token",
        "SendGrid API Key",
        "Slack Token",
        "Square OAuth Secret",
        "Stripe Access Key",
        "Twilio API Key",
    }
)


@dataclass(frozen=True)
class Candidate:
    """A value a detector reported on a line, with the rule that names it."""

    rule_id: str
    secret: str
    kind: str
    weak: bool = False  # a keyword value that is a literal but does not look random


@cache
def _plugins() -> tuple[BasePlugin, ...]:
    classes: Mapping[str, type[BasePlugin]] = get_mapping_from_secret_type_to_class()
    return tuple(cls() for kind, cls in sorted(classes.items()) if kind not in _SKIP_TYPES)


def keyword_regexes(rel: str) -> dict[re.Pattern[str], int]:
    """detect-secrets' keyword patterns for the file type of `rel`."""
    kind = determine_file_type(rel)
    if kind in _CODE_TYPES:
        return REGEX_BY_FILETYPE.get(kind, REGEX_BY_FILETYPE[FileType.PYTHON])
    return REGEX_BY_FILETYPE[FileType.CONFIG]


def _is_false_positive(secret: str, line: str, plugin: BasePlugin) -> bool:
    if is_placeholder(secret):
        return True
    if isinstance(plugin, KeywordDetector):
        key = line[: max(line.rfind(secret), 0)].lower()
        if secret.lower() in key:  # the value only repeats its own key
            return True
    if isinstance(plugin, RegexBasedDetector):
        return heuristic.is_sequential_string(secret)
    return (
        heuristic.is_sequential_string(secret)
        or heuristic.is_potential_uuid(secret)
        or heuristic.is_likely_id_string(secret, line, plugin)
        or heuristic.is_templated_secret(secret)
        or heuristic.is_prefixed_with_dollar_sign(secret)
        or heuristic.is_not_alphanumeric_string(secret)
        or heuristic.is_indirect_reference(line)
    )


_DENYLISTS: dict[type[BasePlugin], tuple[tuple[re.Pattern[str], bool | None], ...]] = {}


def _denylist(plugin: RegexBasedDetector) -> tuple[tuple[re.Pattern[str], bool | None], ...]:
    """The detector's patterns, each with how its matches are bounded: None for keyword-context
    detectors (Basic Auth, Cloudant...), else whether the token format has a fixed length
    (`is_whole_token`). Computed once per detector class (a race computes it twice)."""
    found = _DENYLISTS.get(type(plugin))
    if found is None:
        token = str(plugin.secret_type) in _FORMAT_TYPES
        found = tuple((p, fixed_length(p) if token else None) for p in plugin.denylist)
        _DENYLISTS[type(plugin)] = found
    return found


def _regex_matches(plugin: RegexBasedDetector, line: str) -> list[str]:
    """The values a format detector matches as whole tokens: its capture group, or the whole
    match when the group is only a prefix (detect-secrets' GitHub pattern captures ``ghp``)."""
    values = []
    for pattern, fixed in _denylist(plugin):
        for match in pattern.finditer(line):
            if fixed is not None and not is_whole_token(
                line, match.start(), match.end(), fixed=fixed
            ):
                continue
            groups = [g for g in match.groups() if g]
            best = max(groups, key=len) if groups else ""
            values.append(best if len(best) >= 8 else match.group(0))
    return values


def _quoted(line: str, secret: str) -> bool:
    at = line.rfind(secret)
    return at > 0 and line[at - 1] in "'\"`"


_TOKEN_EDGE = frozenset(" \t'\"`=,;()[]")


def _enclosing_token(line: str, secret: str) -> str:
    """The whole token `secret` is part of: ``{{resolve:secretsmanager:x:password}}`` for the
    ``x:password}}`` a keyword such as ``secretsmanager:`` made the detector cut out."""
    at = line.rfind(secret)
    if at < 0:
        return secret
    start, end = at, at + len(secret)
    while start > 0 and line[start - 1] not in _TOKEN_EDGE:
        start -= 1
    while end < len(line) and line[end] not in _TOKEN_EDGE:
        end += 1
    return line[start:end]


def _keyword_candidate(secret: str, line: str, code: bool) -> Candidate | None:
    """A keyword value as a candidate, or None when it cannot be a secret: in code, an
    unquoted value is an expression (``password: string``, ``apiKey: process.env.KEY``);
    a value cut out of a larger reference or name is judged with it."""
    if code and not _quoted(line, secret):
        return None
    token = _enclosing_token(line, secret)
    if token != secret and not_a_secret(token):
        return None
    verdict = classify(secret)
    if verdict is Verdict.NOT_SECRET:
        return None
    return Candidate("DJ-SEC-003", secret, "Secret Keyword", weak=verdict is Verdict.WEAK)


def _low_entropy(plugin: HighEntropyStringsPlugin, secret: str) -> bool:
    """Whether detect-secrets puts `secret`'s entropy at or under the plugin's limit. Text of
    k distinct characters has at most log2(k) bits per character (the plugin counts only
    its charset's, which is no more), so most candidates are settled without counting: speed
    only, the margin keeps a value exactly at the bound for the plugin's own calculation."""
    if math.log2(max(len(set(secret)), 1)) < plugin.entropy_limit - _ENTROPY_MARGIN:
        return True
    return bool(plugin.calculate_shannon_entropy(secret) <= plugin.entropy_limit)


def _plugin_candidates(
    plugin: BasePlugin, line: str, keyword_regexes: dict[re.Pattern[str], int], code: bool
) -> Iterable[Candidate]:
    kind = str(plugin.secret_type)
    values: Iterable[str]
    if isinstance(plugin, KeywordDetector):
        values = plugin.analyze_string(line, denylist_regex_to_group=keyword_regexes)
    elif isinstance(plugin, RegexBasedDetector):
        values = _regex_matches(plugin, line)
    else:
        values = plugin.analyze_string(line)
    for secret in values:
        if isinstance(plugin, HighEntropyStringsPlugin) and (
            _low_entropy(plugin, secret) or not_a_secret(secret)
        ):
            continue
        if _is_false_positive(secret, line, plugin):
            continue
        if isinstance(plugin, KeywordDetector):
            cand = _keyword_candidate(secret, line, code)
            if cand is not None:
                yield cand
        else:
            rule_id = _RULE_BY_TYPE.get(kind, "DJ-SEC-001")
            # A URL's password that reads as words (``a%20secret``) is weak: an example in
            # documentation, still a finding in code.
            weak = rule_id == "DJ-SEC-005" and classify(unquote(secret)) is not Verdict.LIKELY
            yield Candidate(rule_id, secret, kind, weak=weak)


def detectors() -> tuple[BasePlugin, ...]:
    """detect-secrets' detectors, in the order `detect` runs them."""
    return _plugins()


def format_detectors(plugins: tuple[BasePlugin, ...]) -> tuple[BasePlugin, ...]:
    """Those of `plugins` that match a token's own shape (a prefix and a length)."""
    return tuple(p for p in plugins if str(p.secret_type) in _FORMAT_TYPES)


def detect(
    line: str,
    keyword_regexes: dict[re.Pattern[str], int],
    code: bool,
    plugins: tuple[BasePlugin, ...] | None = None,
) -> list[Candidate]:
    """The secrets on `line`, one candidate per value (`code`: the file is source code);
    `plugins`: the detectors that may match in this file (`secrets_prefilter.for_text`)."""
    found: list[Candidate] = []
    # Speed only: the keyword detector is skipped on lines without one of its words.
    for plugin in for_line(_plugins() if plugins is None else plugins, line):
        found.extend(_plugin_candidates(plugin, line, keyword_regexes, code))
    for fmt in TOKEN_FORMATS:
        for match in fmt.pattern.finditer(line):
            if not is_placeholder(match.group(1)):
                found.append(Candidate("DJ-SEC-001", match.group(1), fmt.name))
    for match in _AUTH_HEADER.finditer(line):
        verdict = classify(match.group(1))
        if verdict is not Verdict.NOT_SECRET:
            weak = verdict is Verdict.WEAK
            found.append(
                Candidate("DJ-SEC-003", match.group(1), "Authorization header credential", weak)
            )
    if _DSN.search(line):
        for match in _DSN_PASSWORD.finditer(line):
            if not not_a_secret(match.group(1)):
                found.append(Candidate("DJ-SEC-005", match.group(1), "Connection string password"))
    kept: list[Candidate] = []
    for cand in sorted(found, key=lambda c: (_PRIORITY[c.rule_id], -len(c.secret))):
        if not any(cand.secret in k.secret or k.secret in cand.secret for k in kept):
            kept.append(cand)
    return kept
