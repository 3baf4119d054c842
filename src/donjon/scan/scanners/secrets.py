"""`SecretScanner`: hard-coded credentials in code, config and manifests.

detect-secrets is used as a library: its detector plugins and its false-positive
heuristics, driven line by line here (thread-safe: no global settings, no network
verification, and a cheap pre-filter so most lines never reach the 25 detectors).
Donjon's own token formats (`donjon.scan.scanners.tokens`) add what it lacks, and every
format is matched as a whole token. A keyword value must look like a secret in its context
(`donjon.scan.scanners.secret_values`); tests, fixtures, sample events and documentation
lines are graded below the gate (`secret_context`); Python call sites are read from the AST
(`secret_python`). Reports never carry a secret: the value is masked in messages and
snippets.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import PurePosixPath

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters import heuristic
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
from detect_secrets.plugins.keyword import REGEX_BY_FILETYPE, KeywordDetector
from detect_secrets.util.filetype import FileType, determine_file_type

from donjon.scan.interface import Scanner, ScannerOutput
from donjon.scan.model import Confidence, Finding, Location
from donjon.scan.project import Project, SourceFile
from donjon.scan.rules import rule
from donjon.scan.scanners.secret_context import CODE_SUFFIXES, is_comment_line, is_sample_path
from donjon.scan.scanners.secret_python import (
    KeySite,
    PythonFacts,
    may_have_call_sites,
    python_facts,
)
from donjon.scan.scanners.secret_values import Verdict, classify, not_a_secret
from donjon.scan.scanners.tokens import (
    TOKEN_FORMATS,
    fixed_length,
    is_placeholder,
    is_whole_token,
)

__all__ = ["SecretScanner", "mask", "secret_fingerprint"]

#: A line that matches none of this cannot hold anything the detectors report.
_CANDIDATE = re.compile(
    r"(?i:pass|pwd|secret|key|token|auth|cred|contras|BEGIN|PuTTY|://|hooks)"
    r"|[A-Za-z0-9+/=_\-]{16,}|['\"][A-Za-z0-9_+/=\-]{9,}['\"]"
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
#: Graded down in documentation lines (comments, docstrings): they hold examples.
_CONTEXTUAL = frozenset({"DJ-SEC-003", "DJ-SEC-004"})
_CONFIDENCE = {
    "DJ-SEC-001": Confidence.HIGH,
    "DJ-SEC-002": Confidence.HIGH,
    "DJ-SEC-003": Confidence.MEDIUM,
    "DJ-SEC-004": Confidence.LOW,
    "DJ-SEC-005": Confidence.HIGH,
}
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
_LOCK_FILES = frozenset(
    {"poetry.lock", "uv.lock", "Pipfile.lock", "package-lock.json", "yarn.lock", "Cargo.lock"}
)
_MAX_LINE = 4000
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


def secret_fingerprint(secret: str) -> str:
    """detect-secrets' ``hashed_secret`` (SHA-1 of the value): baselines of either tool match."""
    return hashlib.sha1(secret.encode(), usedforsecurity=False).hexdigest()


def mask(secret: str, *, show_prefix: bool = False) -> str:
    """A useless form of a secret: its length, and for token formats the format's prefix."""
    shown = secret[:4] if show_prefix and len(secret) >= 16 else ""
    return f"{shown}{'*' * 8} ({len(secret)} chars)"


@dataclass(frozen=True)
class _Candidate:
    rule_id: str
    secret: str
    kind: str
    weak: bool = False  # a keyword value that is a literal but does not look random


@cache
def _plugins() -> tuple[BasePlugin, ...]:
    classes: Mapping[str, type[BasePlugin]] = get_mapping_from_secret_type_to_class()
    return tuple(cls() for kind, cls in sorted(classes.items()) if kind not in _SKIP_TYPES)


def _keyword_regexes(rel: str) -> dict[re.Pattern[str], int]:
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


def _keyword_candidate(secret: str, line: str, code: bool) -> _Candidate | None:
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
    return _Candidate("DJ-SEC-003", secret, "Secret Keyword", weak=verdict is Verdict.WEAK)


def _plugin_candidates(
    plugin: BasePlugin, line: str, keyword_regexes: dict[re.Pattern[str], int], code: bool
) -> Iterable[_Candidate]:
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
            plugin.calculate_shannon_entropy(secret) <= plugin.entropy_limit or not_a_secret(secret)
        ):
            continue
        if _is_false_positive(secret, line, plugin):
            continue
        if isinstance(plugin, KeywordDetector):
            cand = _keyword_candidate(secret, line, code)
            if cand is not None:
                yield cand
        else:
            yield _Candidate(_RULE_BY_TYPE.get(kind, "DJ-SEC-001"), secret, kind)


def _detect(line: str, keyword_regexes: dict[re.Pattern[str], int], code: bool) -> list[_Candidate]:
    found: list[_Candidate] = []
    for plugin in _plugins():
        found.extend(_plugin_candidates(plugin, line, keyword_regexes, code))
    for fmt in TOKEN_FORMATS:
        for match in fmt.pattern.finditer(line):
            if not is_placeholder(match.group(1)):
                found.append(_Candidate("DJ-SEC-001", match.group(1), fmt.name))
    kept: list[_Candidate] = []
    for cand in sorted(found, key=lambda c: (_PRIORITY[c.rule_id], -len(c.secret))):
        if not any(cand.secret in k.secret or k.secret in cand.secret for k in kept):
            kept.append(cand)
    return kept


def _mask_span(line: str, site: KeySite) -> str:
    """The line with the literal of `site` masked, or "" when its span is not on the line."""
    raw = line.encode()
    if not site.end_col or site.end_col > len(raw):
        return ""
    masked = mask(site.value).encode()
    return (raw[: site.col - 1] + masked + raw[site.end_col :]).decode(errors="replace")


class _FileScan:
    """The findings of one file, graded by where each value sits."""

    def __init__(self, source: SourceFile) -> None:
        self.source = source
        self.sample = is_sample_path(source.rel)
        self.code = PurePosixPath(source.rel).suffix in CODE_SUFFIXES
        self.python = source.rel.endswith((".py", ".pyw"))
        self._facts: PythonFacts | None = None
        self._parsed = False
        self.out: list[Finding | None] = []  # None: superseded by a finding of the AST

    @property
    def facts(self) -> PythonFacts | None:
        if self.python and not self._parsed:
            self._parsed = True
            self._facts = python_facts(self.source)
        return self._facts

    def grade(self, rule_id: str, line_no: int, line: str, *, weak: bool = False) -> Confidence:
        base = _CONFIDENCE[rule_id]
        if self.sample or base is Confidence.LOW:
            return Confidence.LOW
        if rule_id in _CONTEXTUAL:
            if weak or is_comment_line(line):
                return Confidence.LOW
            facts = self.facts  # parsed only now: most files never need it
            if facts is not None and line_no in facts.doc_lines:
                return Confidence.LOW
        return base

    def add(self, rule_id: str, line_no: int, column: int, message: str, *, confidence: Confidence,
            snippet: str, secret: str) -> None:  # fmt: skip
        self.out.append(
            rule(rule_id).finding(
                Location(self.source.rel, line_no, column),
                message,
                confidence=confidence,
                snippet=snippet[:200],
                fingerprint=secret_fingerprint(secret),
            )
        )


class SecretScanner(Scanner):
    """Tokens, private keys, passwords, credentials in URLs and high-entropy strings."""

    name = "secrets"

    def scan(self, project: Project) -> ScannerOutput:
        findings: list[Finding] = []
        for source in project.files:
            name = PurePosixPath(source.rel).name
            if name in _LOCK_FILES or heuristic.is_non_text_file(name):
                continue
            findings.extend(self._scan_file(source))
        return ScannerOutput(tuple(findings))

    def _scan_file(self, source: SourceFile) -> list[Finding]:
        keyword_regexes = _keyword_regexes(source.rel)
        scan = _FileScan(source)
        seen: dict[tuple[int, str], int] = {}  # (line, value) -> index of its finding
        for number, line in enumerate(source.lines, start=1):
            text = line[:_MAX_LINE]
            if not _CANDIDATE.search(text):
                continue
            for cand in _detect(text, keyword_regexes, scan.code):
                column = text.find(cand.secret) + 1
                masked = mask(cand.secret, show_prefix=cand.rule_id == "DJ-SEC-001")
                seen[(number, cand.secret)] = len(scan.out)
                scan.add(
                    cand.rule_id,
                    number,
                    column,
                    f"{cand.kind}: {masked}",
                    confidence=scan.grade(cand.rule_id, number, text, weak=cand.weak),
                    snippet=text.strip().replace(cand.secret, masked),
                    secret=cand.secret,
                )
        if scan.python and may_have_call_sites(source.text) and scan.facts is not None:
            self._call_sites(scan, scan.facts, seen)
        return [f for f in scan.out if f is not None]

    @staticmethod
    def _call_sites(scan: _FileScan, facts: PythonFacts, seen: dict[tuple[int, str], int]) -> None:
        """Literal keys at signing calls (DJ-SEC-006) and literals passed to credential
        parameters (DJ-SEC-003 at medium confidence: the call says it is a credential)."""
        for site in facts.sites:
            line = scan.source.line(site.line)
            snippet = _mask_span(line, site).strip()
            low = Confidence.LOW if scan.sample else None
            at = seen.get((site.line, site.value))
            found = scan.out[at] if at is not None else None
            if site.signing:
                if at is not None and found is not None and found.rule_id in _CONTEXTUAL:
                    scan.out[at] = None  # the call says what the value is: a signing key
                scan.add(
                    "DJ-SEC-006",
                    site.line,
                    site.col,
                    f"literal signing key for {site.call}: {mask(site.value)}",
                    confidence=low or Confidence.HIGH,
                    snippet=snippet,
                    secret=site.value,
                )
                continue
            if not_a_secret(site.value):
                continue
            if at is not None:
                if found is not None and found.rule_id == "DJ-SEC-003" and low is None:
                    # The line rule found it, the call confirms it is a credential.
                    scan.out[at] = replace(
                        found, confidence=max(found.confidence, Confidence.MEDIUM)
                    )
                continue
            seen[(site.line, site.value)] = len(scan.out)
            scan.add(
                "DJ-SEC-003",
                site.line,
                site.col,
                f"Credential argument of {site.call}: {mask(site.value)}",
                confidence=low or Confidence.MEDIUM,
                snippet=snippet,
                secret=site.value,
            )
