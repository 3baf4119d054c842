"""`SecretScanner`: hard-coded credentials in code, config and manifests.

detect-secrets is used as a library: its detector plugins and its false-positive
heuristics, driven line by line here (thread-safe: no global settings, no network
verification, and a cheap pre-filter so most lines never reach the 25 detectors).
Donjon's own token formats (`donjon.scan.scanners.tokens`) add what it lacks. Reports never
carry a secret: the value is masked in messages and snippets.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
from donjon.scan.scanners.secrets_prefilter import for_line, for_text
from donjon.scan.scanners.tokens import TOKEN_FORMATS, is_placeholder

__all__ = ["SecretScanner", "mask", "secret_fingerprint"]

#: A line that matches none of this cannot hold anything the detectors report.
_CANDIDATE = re.compile(
    r"(?i:pass|pwd|secret|key|token|auth|cred|contras|BEGIN|PuTTY|://|hooks)"
    r"|[A-Za-z0-9+/=_\-]{16,}|['\"][A-Za-z0-9_+/=\-]{9,}['\"]"
)
_SKIP_TYPES = frozenset({"Public IP (ipv4)"})
_RULE_BY_TYPE = {
    "Private Key": "DJ-SEC-002",
    "Secret Keyword": "DJ-SEC-003",
    "Base64 High Entropy String": "DJ-SEC-004",
    "Hex High Entropy String": "DJ-SEC-004",
    "Basic Auth Credentials": "DJ-SEC-005",
}
#: When detectors overlap on one value, the most specific one names it.
_PRIORITY = {"DJ-SEC-002": 0, "DJ-SEC-001": 1, "DJ-SEC-005": 2, "DJ-SEC-003": 3, "DJ-SEC-004": 4}
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


def _regex_matches(plugin: RegexBasedDetector, line: str) -> list[str]:
    """The values a format detector matches: its capture group, or the whole match when the
    group is only a prefix (detect-secrets' GitHub pattern captures just ``ghp``)."""
    values = []
    for pattern in plugin.denylist:
        for match in pattern.finditer(line):
            groups = [g for g in match.groups() if g]
            best = max(groups, key=len) if groups else ""
            values.append(best if len(best) >= 8 else match.group(0))
    return values


def _detect(
    line: str,
    keyword_regexes: dict[re.Pattern[str], int],
    plugins: tuple[BasePlugin, ...] | None = None,
) -> list[_Candidate]:
    found: list[_Candidate] = []
    for plugin in for_line(_plugins() if plugins is None else plugins, line):
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
                plugin.calculate_shannon_entropy(secret) <= plugin.entropy_limit
            ):
                continue
            if not _is_false_positive(secret, line, plugin):
                found.append(_Candidate(_RULE_BY_TYPE.get(kind, "DJ-SEC-001"), secret, kind))
    for fmt in TOKEN_FORMATS:
        for match in fmt.pattern.finditer(line):
            if not is_placeholder(match.group(1)):
                found.append(_Candidate("DJ-SEC-001", match.group(1), fmt.name))
    kept: list[_Candidate] = []
    for cand in sorted(found, key=lambda c: (_PRIORITY[c.rule_id], -len(c.secret))):
        if not any(cand.secret in k.secret or k.secret in cand.secret for k in kept):
            kept.append(cand)
    return kept


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
        candidates = [
            (number, text)
            for number, text in enumerate((x[:_MAX_LINE] for x in source.lines), start=1)
            if _CANDIDATE.search(text)
        ]
        # Speed only: the detectors that cannot match any candidate line are left out.
        plugins = for_text(_plugins(), "\n".join(text for _, text in candidates))
        out: list[Finding] = []
        for number, text in candidates:
            for cand in _detect(text, keyword_regexes, plugins):
                column = text.find(cand.secret) + 1
                masked = mask(cand.secret, show_prefix=cand.rule_id == "DJ-SEC-001")
                snippet = text.strip().replace(cand.secret, masked)[:200]
                out.append(
                    rule(cand.rule_id).finding(
                        Location(source.rel, number, column),
                        f"{cand.kind}: {masked}",
                        confidence=_CONFIDENCE[cand.rule_id],
                        snippet=snippet,
                        fingerprint=secret_fingerprint(cand.secret),
                    )
                )
        return out
