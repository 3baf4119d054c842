"""`CodeScanner`: Donjon's own Python rules, with taint from the handler's event."""

from __future__ import annotations

import ast
import gc
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

from donjon.scan.errors import ScanError
from donjon.scan.interface import Scanner, ScannerOutput
from donjon.scan.model import Finding, Location, TaintStep
from donjon.scan.project import Project, SourceFile
from donjon.scan.python.bundle import Bundle
from donjon.scan.python.hits import Hit
from donjon.scan.python.interpreter import Interpreter
from donjon.scan.python.misuse import graded_for_file
from donjon.scan.python.modules import ModuleIndex
from donjon.scan.rules import rule
from donjon.scan.syntax import Syntax, compile_warnings_ignored

__all__ = [
    "CodeScanner",
    "code_fingerprint",
    "compile_warnings_ignored",
    "handlers_by_file",
    "parse_python",
]


def code_fingerprint(rule_id: str, rel: str, line_text: str) -> str:
    """A fingerprint that survives the code moving up or down the file."""
    normalized = " ".join(line_text.split())
    digest = hashlib.sha256(f"{rule_id}\0{rel}\0{normalized}".encode())
    return digest.hexdigest()[:32]


def parse_python(source: SourceFile) -> ast.Module | str:
    """The module's AST (parsed once per scan: `SourceFile.syntax`), or why it could not
    be parsed."""
    syntax = source.syntax
    return syntax if isinstance(syntax, str) else syntax.tree


def handlers_by_file(project: Project) -> dict[str, frozenset[str]]:
    """For each Python file, the handler functions the bundle manifests name in it."""
    found: dict[str, set[str]] = defaultdict(set)
    for doc in project.manifests:
        handler = (doc.data or {}).get("handler")
        if not isinstance(handler, str) or "." not in handler:
            continue
        module, function = handler.rsplit(".", 1)
        base = PurePosixPath(doc.bundle_dir) if doc.bundle_dir else PurePosixPath()
        stem = base.joinpath(*module.split("."))
        found[f"{stem}.py"].add(function)
        found[f"{stem}/__init__.py"].add(function)
    return {k: frozenset(v) for k, v in found.items()}


@contextmanager
def _frozen() -> Iterator[Callable[[], None]]:
    """Keep the bundle's syntax trees, and what the process held before the scan (the
    advisory database), out of the cyclic collector's reach while the bundle is analysed
    (`gc.freeze`; the yielded function freezes again, after each file is parsed). Every
    module's tree stays alive for the whole analysis (a later module may call into any of
    them): otherwise each full collection would walk all of them, and everything else,
    again and again. The collector still runs for the garbage parsing and analysis make;
    afterwards the frozen objects go back to its oldest generation."""
    gc.freeze()
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


@contextmanager
def _attributed(source: SourceFile) -> Iterator[None]:
    """Name the file in a failure to analyse it; fail closed, never pass it unexamined."""
    try:
        yield
    except RecursionError as e:
        raise ScanError(
            f"{source.rel}: too deeply nested to analyse",
            hint="simplify the expression or split the module",
        ) from e
    except ScanError as e:
        raise ScanError(f"{source.rel}: {e.message}", hint=e.hint) from e


class CodeScanner(Scanner):
    """Injection, deserialization, XXE, TLS, crypto, temp-file and error-leak rules."""

    name = "code"

    def scan(self, project: Project) -> ScannerOutput:
        with _frozen() as freeze:
            notes: list[str] = []
            parsed: list[tuple[SourceFile, Syntax]] = []
            for source in project.python:
                syntax = source.syntax
                freeze()
                if isinstance(syntax, str):
                    notes.append(syntax)
                else:
                    parsed.append((source, syntax))
            return self._analyse(project, parsed, notes)

    def _analyse(
        self, project: Project, parsed: list[tuple[SourceFile, Syntax]], notes: list[str]
    ) -> ScannerOutput:
        handlers = handlers_by_file(project)
        index = ModuleIndex((s.rel for s, _ in parsed), (d.bundle_dir for d in project.manifests))
        bundle = Bundle(index)
        modules: list[tuple[SourceFile, Interpreter]] = []
        for source, syntax in parsed:
            with _attributed(source):
                interpreter = Interpreter(
                    syntax.tree,
                    source.lines,
                    handlers.get(source.rel, frozenset()),
                    rel=source.rel,
                    bundle=bundle,
                    syntax=syntax,
                )
            bundle.add(interpreter)
            modules.append((source, interpreter))
        for source, interpreter in modules:
            with _attributed(source):
                interpreter.run()
        # Read last: a module's findings include those other modules' calls reached.
        findings = [
            self._finding(source, graded_for_file(hit, source.rel))
            for source, interpreter in modules
            for hit in interpreter.hits.all()
        ]
        return ScannerOutput(tuple(findings), tuple(notes))

    @staticmethod
    def _finding(source: SourceFile, hit: Hit) -> Finding:
        text = source.line(hit.line)
        path = tuple(
            TaintStep(Location(s.path or source.rel, s.line, s.col), s.text) for s in hit.trace
        )
        return rule(hit.rule_id).finding(
            Location(source.rel, hit.line, hit.col),
            hit.message,
            confidence=hit.confidence,
            severity=hit.severity,
            snippet=text.strip()[:200],
            taint_path=path,
            fingerprint=code_fingerprint(hit.rule_id, source.rel, text),
        )
