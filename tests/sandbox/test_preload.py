"""The supervisor's preload list: standard-library modules only, from the bundle's code."""

from __future__ import annotations

from pathlib import Path

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
