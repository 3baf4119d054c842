"""What counts as a constant for the sink rules, and what does not: imported
constants, class constants and items of constant tables stay constants; anything the
code could have set otherwise stays a value of unknown origin."""

from __future__ import annotations

import textwrap
from pathlib import Path

from donjon.scan import Confidence, scan_path


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _sql_lines(root: Path) -> dict[int, Confidence]:
    report = scan_path(root)
    return {
        f.location.line: f.confidence
        for f in report.findings
        if f.rule_id == "DJ-PY-003" and f.location.path == "handler.py"
    }


def test_an_imported_value_of_unknown_origin_is_not_a_constant(tmp_path: Path) -> None:
    """A settings module's literal is a constant where it is imported; its value read
    from the environment is not, and SQL built from it is still reported."""
    _write(
        tmp_path,
        {
            "settings.py": """
                import os
                USERS = "users"
                AUDIT = os.environ["AUDIT_TABLE"]
            """,
            "handler.py": """
                import sqlite3
                import settings
                from settings import AUDIT, USERS

                def handler(event, context):
                    conn = sqlite3.connect("app.db")
                    conn.execute("SELECT * FROM " + USERS)
                    conn.execute("SELECT * FROM " + settings.USERS)
                    conn.execute("SELECT * FROM " + AUDIT)
                    conn.execute("SELECT * FROM " + settings.AUDIT)
            """,
        },
    )
    assert _sql_lines(tmp_path) == {10: Confidence.LOW, 11: Confidence.LOW}


def test_a_class_constant_assigned_elsewhere_in_the_module_is_not_a_constant(
    tmp_path: Path,
) -> None:
    """``TABLE = "items"`` in a class is a constant through self, unless the module
    assigns an attribute of that name anywhere (then the instance may hold anything)."""
    _write(
        tmp_path,
        {
            "handler.py": """
                import sqlite3

                class Fixed:
                    TABLE = "items"
                    def count(self, conn):
                        return conn.execute("SELECT count(*) FROM " + self.TABLE)

                class Chosen:
                    SOURCE = "items"
                    def count(self, conn):
                        return conn.execute("SELECT count(*) FROM " + self.SOURCE)

                def configure(chosen, name):
                    chosen.SOURCE = name
            """,
        },
    )
    assert _sql_lines(tmp_path) == {12: Confidence.LOW}


def test_an_item_is_constant_only_when_its_container_is(tmp_path: Path) -> None:
    """An item of a constant table is a constant whatever picks it; an item of the
    environment is not, even under a constant key."""
    _write(
        tmp_path,
        {
            "handler.py": """
                import os
                import sqlite3

                TABLES = {"a": "orders", "b": "refunds"}

                def handler(event, context):
                    conn = sqlite3.connect("app.db")
                    conn.execute("SELECT * FROM " + TABLES[event["kind"]])
                    conn.execute("SELECT * FROM " + os.environ["TABLE"])
                    conn.execute("SELECT * FROM " + event["tables"]["a"])
            """,
        },
    )
    assert _sql_lines(tmp_path) == {10: Confidence.LOW, 11: Confidence.HIGH}
