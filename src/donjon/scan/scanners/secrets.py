"""`SecretScanner`: hard-coded credentials in code, config and manifests.

Each line goes through detect-secrets' detectors and Donjon's own token formats
(`secret_detect`, `tokens`); a keyword value must look like a secret in its context
(`secret_values`); tests, fixtures, sample events and documentation lines are graded below
the gate (`secret_context`); Python call sites are read from the AST (`secret_python`).
Reports never carry a secret: the value is masked in messages and snippets.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import PurePosixPath

from detect_secrets.filters import heuristic
from detect_secrets.plugins.base import BasePlugin

from donjon.scan.interface import Scanner, ScannerOutput
from donjon.scan.model import Confidence, Finding, Location
from donjon.scan.project import ManifestDoc, Project, SourceFile
from donjon.scan.rules import rule
from donjon.scan.scanners.secret_context import CODE_SUFFIXES, is_comment_line, is_sample_path
from donjon.scan.scanners.secret_detect import (
    CANDIDATE_LINE,
    Candidate,
    detect,
    detectors,
    format_detectors,
    keyword_regexes,
)
from donjon.scan.scanners.secret_python import (
    NAMED,
    JoinedLiteral,
    KeySite,
    PythonFacts,
    joined_literals,
    may_have_call_sites,
    python_facts,
)
from donjon.scan.scanners.secret_values import WORDS, Verdict, classify, not_a_secret
from donjon.scan.scanners.secrets_prefilter import for_text

__all__ = ["SecretScanner", "mask", "secret_fingerprint"]

#: Graded down in documentation lines (comments, docstrings): they hold examples.
_CONTEXTUAL = frozenset({"DJ-SEC-003", "DJ-SEC-004"})
#: Graded down in documentation lines when the value is weak (not random-looking): a
#: URL's password in a docstring's example (``https://jo:a%20secret@host``).
_DOCUMENTED = frozenset({"DJ-SEC-005"})
_CONFIDENCE = {
    "DJ-SEC-001": Confidence.HIGH,
    "DJ-SEC-002": Confidence.HIGH,
    "DJ-SEC-003": Confidence.MEDIUM,
    "DJ-SEC-004": Confidence.LOW,
    "DJ-SEC-005": Confidence.HIGH,
    "DJ-SEC-006": Confidence.HIGH,
}
_LOCK_FILES = frozenset(
    {"poetry.lock", "uv.lock", "Pipfile.lock", "package-lock.json", "yarn.lock", "Cargo.lock"}
)
#: Suffixes detect-secrets skips as build output that hold sources all the same: a
#: JavaScript source map embeds the files it maps (sourcesContent), keys and all.
_SOURCES = frozenset({".map"})
_MAX_LINE = 4000
#: Token formats (`ghp_`, `AKIA`...): the one rule read all along a line of code.
_FORMAT_RULE = "DJ-SEC-001"
#: Characters a window shares with the one before: no credential is cut in two unseen.
_OVERLAP = 512
#: A vault secret's name (vault/names.py), as a manifest names one.
_VAULT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
#: What a line of a manifest says before a value its contract makes a secret's name: a
#: trigger's `secret:` or `dsn:`, or an entry of `secrets: [...]` (a flow list).
_NAME_KEY = re.compile(r"(?:^|[\s{,])(?:secrets?|dsn)\s*:\s*(?:\[[^\[\]]*)?['\"]?$")


def _named_secrets(doc: ManifestDoc) -> frozenset[str]:
    """The vault secrets a parsed manifest names: its grants, and its triggers' `secret`
    and `dsn` (manifest/event_triggers.py). Names by contract, whatever they look like."""
    data = doc.data or {}
    permissions = data.get("permissions")
    grants = permissions.get("secrets") if isinstance(permissions, dict) else None
    names = list(grants) if isinstance(grants, list) else []
    triggers = data.get("triggers")
    for trigger in triggers if isinstance(triggers, list) else []:
        for spec in trigger.values() if isinstance(trigger, dict) else ():
            if isinstance(spec, dict):
                names += [spec.get("secret"), spec.get("dsn")]
    return frozenset(n for n in names if isinstance(n, str) and _VAULT_NAME.fullmatch(n))


def _is_named(cand: Candidate, line: str, at: int, names: frozenset[str]) -> bool:
    """Whether a keyword candidate on a manifest's line is one of the secrets' names it
    gives (`secret: s3p-token`, `secrets: [db-pass2]`), where the manifest names one. The
    same value under any other key (`password: s3p-token`) is still a password."""
    core = cand.secret.strip().rstrip("}]),;").strip("'\"`")
    return cand.rule_id in _CONTEXTUAL and core in names and bool(_NAME_KEY.search(line[:at]))


def _windows(line: str) -> list[tuple[int, str]]:
    """`line` as the detectors read it, (start, text): all of it, in overlapping windows of
    _MAX_LINE characters. A JSON config written on one line (``json.dump`` without indent)
    holds its password past column 4,000 as often as not, and a minified front-end bundle
    its API token. In code, only the first window is read by every rule, the others by the
    token formats alone (`_FORMAT_RULE`): a long line of code is minified code, whose
    expressions the connection-string and keyword rules would take for values, while a
    token's own format needs no context."""
    if len(line) <= _MAX_LINE:
        return [(0, line)]
    step = _MAX_LINE - _OVERLAP
    return [(i, line[i : i + _MAX_LINE]) for i in range(0, len(line) - _OVERLAP, step)]


def _cut(line: str, start: int, at: int, cand: Candidate) -> bool:
    """Whether a candidate touches an edge where its window cut `line`: part of a value
    the overlapping window next to it holds whole."""
    end = start + at + len(cand.secret)
    return (start > 0 and at == 0) or (len(line) > start + _MAX_LINE and end >= start + _MAX_LINE)


def secret_fingerprint(secret: str) -> str:
    """detect-secrets' ``hashed_secret`` (SHA-1 of the value): baselines of either tool match.
    A value Python's escapes made of a lone surrogate (``"\\ud800"``) is hashed as it is
    stored, not refused: UTF-8 alone does not encode it, and the scan crashed."""
    return hashlib.sha1(secret.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


def mask(secret: str, *, show_prefix: bool = False) -> str:
    """A useless form of a secret: its length, and for token formats the format's prefix."""
    shown = secret[:4] if show_prefix and len(secret) >= 16 else ""
    return f"{shown}{'*' * 8} ({len(secret)} chars)"


def _mask_span(line: str, site: KeySite) -> str:
    """The line with the literal of `site` masked, or "" when its span is not on the line
    (never the raw line: a bytes literal's escapes would show the key)."""
    if site.end_col == NAMED:
        return line
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
        self.values: set[str] = set()  # every secret value reported, to mask elsewhere

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
        if rule_id in _CONTEXTUAL and weak:
            return Confidence.LOW
        if rule_id in _CONTEXTUAL or (rule_id in _DOCUMENTED and weak):
            if is_comment_line(line):
                return Confidence.LOW
            facts = self.facts  # parsed only now: most files never need it
            if facts is not None and line_no in facts.doc_lines:
                return Confidence.LOW
        return base

    def add(self, rule_id: str, line_no: int, column: int, message: str, *, confidence: Confidence,
            snippet: str, secret: str) -> None:  # fmt: skip
        self.values.add(secret)
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
        secrets: set[str] = set()
        named = {doc.source.rel: _named_secrets(doc) for doc in project.manifests}
        for source in project.files:
            name = PurePosixPath(source.rel).name
            if name in _LOCK_FILES or (
                heuristic.is_non_text_file(name) and PurePosixPath(name).suffix not in _SOURCES
            ):
                continue
            found, values = self._scan_file(source, named.get(source.rel, frozenset()))
            findings.extend(found)
            secrets.update(values)
        return ScannerOutput(tuple(findings), secrets=frozenset(secrets))

    def _scan_file(
        self, source: SourceFile, named: frozenset[str]
    ) -> tuple[list[Finding], set[str]]:
        """The findings of one file; `named`: the secrets' names its manifest gives, if it
        is one (`_is_named`)."""
        regexes = keyword_regexes(source.rel)
        scan = _FileScan(source)
        seen: dict[tuple[int, str], int] = {}  # (line, value) -> index of its finding
        candidates = [
            (number, start, text)
            for number, line in enumerate(source.lines, start=1)
            for start, text in _windows(line)
            if CANDIDATE_LINE.search(text)
        ]
        pieces = joined_literals(source) if scan.python else []
        joined = [j for j in pieces if CANDIDATE_LINE.search(j.text)]
        # Speed only: the detectors that cannot match any candidate line are left out.
        texts = [*(text for _, _, text in candidates), *(j.text for j in joined)]
        plugins = for_text(detectors(), "\n".join(texts))
        formats = format_detectors(plugins)
        for number, start, text in candidates:
            head = text if not start else source.line(number)[:_MAX_LINE]
            # Past the first window of a line of code, the token formats alone.
            beyond = bool(start and scan.code)
            for cand in detect(text, regexes, scan.code, formats if beyond else plugins):
                if beyond and cand.rule_id != _FORMAT_RULE:
                    continue
                at = text.find(cand.secret)
                if (number, cand.secret) in seen or _cut(source.line(number), start, at, cand):
                    continue
                if named and _is_named(cand, text, at, named):
                    continue
                masked = mask(cand.secret, show_prefix=cand.rule_id == "DJ-SEC-001")
                near = text if len(text) <= 200 else text[max(at - 80, 0) : at + 120]
                seen[(number, cand.secret)] = len(scan.out)
                scan.add(
                    cand.rule_id,
                    number,
                    start + at + 1,
                    f"{cand.kind}: {masked}",
                    confidence=scan.grade(cand.rule_id, number, head, weak=cand.weak),
                    snippet=near.strip().replace(cand.secret, masked),
                    secret=cand.secret,
                )
        for literal in joined:
            self._joined(scan, literal, regexes, plugins, seen)
        if scan.python and may_have_call_sites(source.text) and scan.facts is not None:
            self._call_sites(scan, scan.facts, seen)
        return [f for f in scan.out if f is not None], scan.values

    @staticmethod
    def _joined(
        scan: _FileScan,
        literal: JoinedLiteral,
        regexes: dict[re.Pattern[str], int],
        plugins: tuple[BasePlugin, ...],
        seen: dict[tuple[int, str], int],
    ) -> None:
        """The secrets of a string written in pieces that no line holds whole (a secret a
        line holds is the line rule's to find, or to let pass)."""
        lines = "\n".join(scan.source.lines[literal.line - 1 : literal.end_line])
        text = literal.text[:_MAX_LINE]
        for cand in detect(text, regexes, True, plugins):
            if cand.secret in lines or (literal.line, cand.secret) in seen:
                continue  # written whole: the line rule's to report, or to let pass
            masked = mask(cand.secret, show_prefix=cand.rule_id == "DJ-SEC-001")
            seen[(literal.line, cand.secret)] = len(scan.out)
            scan.add(
                cand.rule_id,
                literal.line,
                text.find(cand.secret) + 1,
                f"{cand.kind}, written in pieces: {masked}",
                confidence=scan.grade(
                    cand.rule_id, literal.line, scan.source.line(literal.line), weak=cand.weak
                ),
                snippet=text.strip().replace(cand.secret, masked),
                secret=cand.secret,
            )

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
            if site.assigned:  # the name says "credential": graded as the line rule grades
                verdict = classify(site.value)
                if verdict is Verdict.NOT_SECRET or at is not None:
                    continue
                word = Confidence.LOW if verdict is Verdict.WEAK else None
            else:
                reason = not_a_secret(site.value)
                if reason and reason != WORDS:
                    continue
                # A plain word passed as a password is one, if a poor one: not gate level.
                word = Confidence.LOW if reason else None
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
                f"Credential {'assigned to' if site.assigned else 'argument of'} "
                f"{site.call}: {mask(site.value)}",
                confidence=low or word or Confidence.MEDIUM,
                snippet=snippet,
                secret=site.value,
            )
