"""`BanditScanner`: Bandit's checks that Donjon's own rules do not cover, run as a library.

Bandit's injection, deserialization, XML, TLS, crypto and temp-file checks are
replaced by Donjon's taint-aware rules (fewer false alarms); these complement them.
``# nosec`` is ignored: inline comments do not bypass the deploy gate, the baseline does.
"""

from __future__ import annotations

import re
import threading
import warnings
from functools import cache
from typing import Any

from donjon.scan.interface import Scanner, ScannerOutput
from donjon.scan.model import Confidence, Finding, Location, Severity
from donjon.scan.project import Project, SourceFile
from donjon.scan.rules import rule
from donjon.scan.scanners.code import code_fingerprint, compile_warnings_ignored

__all__ = ["BANDIT_RULES", "BanditScanner"]

#: Bandit test id -> Donjon rule id.
BANDIT_RULES = {
    "B201": "DJ-PY-101",
    "B104": "DJ-PY-102",
    "B113": "DJ-PY-103",
    "B701": "DJ-PY-104",
    "B103": "DJ-PY-105",
    "B312": "DJ-PY-106",
    "B321": "DJ-PY-106",
    "B507": "DJ-PY-107",
    "B505": "DJ-PY-108",
}
#: A file that matches none of this cannot trigger the checks above: each needs the
#: literal 0.0.0.0 (B104), a chmod call (B103), or an import of the module it is about.
_TRIGGERS = re.compile(
    r"0\.0\.0\.0|chmod|^[ \t]*(?:from|import)[ \t][^\n]*\b(?:requests|httpx|jinja2|paramiko"
    r"|telnetlib|ftplib|flask|cryptography|Crypto|Cryptodome)\b",
    re.MULTILINE,
)
_GRADES = {"LOW": 1, "MEDIUM": 2, "HIGH": 3}
_IMPORT_LOCK = threading.Lock()


def _harmless(issue: Any) -> bool:
    """B103 also flags execute bits for group/others (0o755, 0o555: ordinary directory and
    program modes); only write access for group or others is a finding here."""
    if issue.test_id != "B103":
        return False
    mask = re.search(r"mask (0o[0-7]+)", str(issue.text))
    return mask is not None and not int(mask.group(1), 8) & 0o022


@cache
def _bandit() -> tuple[Any, Any]:
    """Bandit's manager and config modules, imported once."""
    with _IMPORT_LOCK, warnings.catch_warnings():
        # stevedore (through bandit's extension loader) warns about its own API on import.
        warnings.filterwarnings(
            "ignore", message="The verify_requirements argument", category=DeprecationWarning
        )
        from bandit.core import config, manager
    return manager, config


class BanditScanner(Scanner):
    """Flask debug, binding all interfaces, HTTP without timeout, Jinja2 autoescape, chmod,
    FTP/Telnet, paramiko host keys and weak key sizes."""

    name = "bandit"

    def scan(self, project: Project) -> ScannerOutput:
        candidates = {str(f.path): f for f in project.python if _TRIGGERS.search(f.text)}
        if not candidates:
            return ScannerOutput()
        manager_mod, config_mod = _bandit()
        with compile_warnings_ignored():
            mgr = manager_mod.BanditManager(
                config_mod.BanditConfig(),
                "file",
                profile={"include": set(BANDIT_RULES)},
                ignore_nosec=True,
                quiet=True,
            )
            mgr.discover_files(sorted(candidates))
            mgr.run_tests()
        findings = []
        for issue in mgr.get_issue_list():
            source = candidates.get(issue.fname)
            rule_id = BANDIT_RULES.get(issue.test_id)
            if source is not None and rule_id is not None and not _harmless(issue):
                findings.append(self._finding(source, rule_id, issue))
        return ScannerOutput(tuple(findings))

    @staticmethod
    def _finding(source: SourceFile, rule_id: str, issue: Any) -> Finding:
        line = int(issue.lineno)
        text = source.line(line)
        return rule(rule_id).finding(
            Location(source.rel, line, int(issue.col_offset or 0) + 1),
            f"{issue.text} [bandit {issue.test_id}]",
            confidence=Confidence(_GRADES.get(str(issue.confidence), 2)),
            severity=Severity(_GRADES.get(str(issue.severity), 2)),
            snippet=text.strip()[:200],
            fingerprint=code_fingerprint(rule_id, source.rel, text),
        )
