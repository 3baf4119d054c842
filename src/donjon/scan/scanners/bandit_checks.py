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

from donjon.scan.errors import ScanError
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


def _names(*modules: str) -> re.Pattern[str]:
    """One of `modules`, anywhere in the text. Bandit's tests match a call's qualified
    name, and an unresolved name stands for itself (``jinja2.Environment(...)`` is flagged
    however `jinja2` came to be bound): so the module's name, not an import statement at
    the start of a line (``x = 1; import telnetlib``, ``if True: import telnetlib`` and a
    continuation line import it as well), is the precondition that never keeps a module
    from Bandit that its test would flag."""
    return re.compile("|".join(modules))


#: What a file must contain for each check to fire (all of a row): a file that meets no
#: row is not given to Bandit. Each row is the textual precondition of Bandit's own test.
_NEEDS: tuple[tuple[re.Pattern[str], ...], ...] = (
    (_names("flask"), re.compile(r"debug")),  # B201: flask imported, .run(debug=)
    (re.compile(r"0\.0\.0\.0"),),  # B104
    (_names("requests", "httpx"),),  # B113: the call's qualified name starts with them
    (_names("jinja2"), re.compile(r"Environment")),  # B701: jinja2...Environment(...)
    (re.compile(r"chmod"),),  # B103
    (_names("telnetlib", "ftplib"),),  # B312, B321
    (_names("paramiko"), re.compile(r"set_missing_host_key_policy")),  # B507
    (_names("cryptography", "Crypto", "Cryptodome"), re.compile(r"generate")),  # B505
)


def _may_trigger(text: str) -> bool:
    return any(all(p.search(text) for p in row) for row in _NEEDS)


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


def _refuse_skipped(skipped: list[tuple[str, str]], candidates: dict[str, SourceFile]) -> None:
    """`ScanError` if Bandit gave up on a module the code scanner parsed (its recursive walk
    ends in a RecursionError some levels before Python's compiler does): Bandit logs
    that and goes on, and its rules would pass a module it never read. A module that
    does not parse at all is noted by the code scanner (syntax.py) and cannot run."""
    for fname, reason in skipped:
        source = candidates.get(fname)
        if source is not None and not isinstance(source.syntax, str):
            raise ScanError(
                f"{source.rel}: Bandit could not analyse this module ({reason})",
                hint="simplify the module (deeply nested expressions, lambdas or calls); "
                "the gate does not pass code it could not finish scanning",
            )


class BanditScanner(Scanner):
    """Flask debug, binding all interfaces, HTTP without timeout, Jinja2 autoescape, chmod,
    FTP/Telnet, paramiko host keys and weak key sizes."""

    name = "bandit"

    def scan(self, project: Project) -> ScannerOutput:
        candidates = {str(f.path): f for f in project.python if _may_trigger(f.text)}
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
        _refuse_skipped(mgr.skipped, candidates)
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
