"""The supervisor's preload list: standard-library modules only, from the bundle's code."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path
from typing import Any

from donjon.sandbox.preload import stdlib_imports


def test_lists_stdlib_imports_only(tmp_path: Path) -> None:
    """Standard-library imports (dotted too) are listed; third-party, local and odd ones not."""
    (tmp_path / "main.py").write_text(
        "import json, os.path\nfrom xml.etree import ElementTree\nimport requests\n"
        "from . import sibling\nimport helper\nimport antigravity\n"
    )
    (tmp_path / "helper.py").write_text("import decimal\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    assert stdlib_imports(tmp_path) == ("decimal", "json", "os.path", "xml.etree")


def test_lists_only_modules_safe_to_import_in_the_supervisor(tmp_path: Path) -> None:
    """Modules that act at import (a `__main__`, `this`, `site`, ...) are never preloaded."""
    (tmp_path / "main.py").write_text(
        "import unittest.__main__, unittest, this, antigravity, site, idlelib, turtle, pydoc\n"
        "import asyncio.__main__, json.tool, ctypes.test, hashlib, re, datetime\n"
        "from concurrent import futures\n"
    )
    assert stdlib_imports(tmp_path) == ("concurrent", "datetime", "hashlib", "json.tool", "re")


def test_the_bundle_is_read_without_compiling_it(tmp_path: Path, monkeypatch: Any) -> None:
    """The gateway reads a bundle's imports at a sandbox's start, on its own process: a
    module is never compiled (compiling a 2 MiB tuple of names held the GIL 6 s and took
    1.4 GB, tests/security/test_attack_preload.py), and the function's own modules come
    before its vendored ones."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bundle was compiled")

    (tmp_path / ".deps").mkdir()
    (tmp_path / ".deps" / "heavy.py").write_text("import decimal\nx = (" + "a," * 1000 + ")\n")
    (tmp_path / "main.py").write_text("import json\n    from hashlib import sha256\n")
    with monkeypatch.context() as patched:  # (pytest itself compiles once it reports)
        patched.setattr(builtins, "compile", refuse)
        patched.setattr(ast, "parse", refuse)
        found = stdlib_imports(tmp_path)
    assert found == ("decimal", "hashlib", "json")
