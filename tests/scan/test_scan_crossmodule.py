"""Taint across the modules of one bundle: import resolution, calls into other modules,
bounds on cycles, one finding per sink, and paths through several files in every format."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from donjon.scan import Confidence, ScanError, ScanReport, render_json, render_sarif, render_text
from donjon.scan import scan_path as _scan_path
from donjon.scan.python.modules import ImportTarget, ModuleIndex, bundle_imports

SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


def _bundle(root: Path, files: dict[str, str]) -> Path:
    for rel, code in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code))
    return root


def scan_path(root: Path) -> ScanReport:
    return _scan_path(root, advisories=None)


def _imports(code: str, rel: str) -> dict[str, ImportTarget]:
    tree = ast.parse(textwrap.dedent(code))
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    return bundle_imports(nodes, rel)


# -- import resolution ----------------------------------------------------------------------
_FILES = [
    "handler.py",
    "helpers/__init__.py",
    "helpers/shell.py",
    "app/__init__.py",
    "app/db.py",
    "app/repo.py",
    "app/queries/__init__.py",
    "app/queries/reports.py",
]


def test_absolute_imports_resolve_to_the_bundles_modules() -> None:
    """``import helpers``, ``from app import repo``, ``import app.db as db`` name bundle files."""
    index = ModuleIndex(_FILES)
    names = _imports(
        """
        import helpers
        import app.db as db
        from app import repo
        from app.repo import find_user
        """,
        "handler.py",
    )
    assert index.resolve("handler.py", names["helpers"].attribute(("run",))) == (
        "helpers/__init__.py",
        ("run",),
    )
    assert index.resolve("handler.py", names["db"].attribute(("query",))) == (
        "app/db.py",
        ("query",),
    )
    assert index.resolve("handler.py", names["repo"]) == ("app/repo.py", ())
    assert index.resolve("handler.py", names["find_user"]) == ("app/repo.py", ("find_user",))


def test_relative_imports_resolve_from_the_package_directory() -> None:
    """``from .repo import find_user``, ``from . import db``, ``from ..db import query``."""
    index = ModuleIndex(_FILES)
    names = _imports(
        """
        from ..db import query
        from . import sibling
        """,
        "app/queries/reports.py",
    )
    assert index.resolve("app/queries/reports.py", names["query"]) == ("app/db.py", ("query",))
    # No such module: an attribute of the package's __init__.
    assert index.resolve("app/queries/reports.py", names["sibling"]) == (
        "app/queries/__init__.py",
        ("sibling",),
    )
    names = _imports("from .repo import find_user\nfrom . import db", "app/db.py")
    assert index.resolve("app/db.py", names["find_user"]) == ("app/repo.py", ("find_user",))
    assert index.resolve("app/db.py", names["db"]) == ("app/db.py", ())


def test_names_the_bundle_does_not_provide_are_not_its_modules() -> None:
    """The standard library and relative imports beyond the top package resolve to nothing."""
    index = ModuleIndex(_FILES)
    names = _imports("import os\nfrom subprocess import run\nfrom ...x import y", "app/db.py")
    assert index.resolve("app/db.py", names["os"].attribute(("system",))) is None
    assert index.resolve("app/db.py", names["run"]) is None
    assert "y" not in names  # three dots from app/: above the scan root


def test_a_package_is_searched_from_its_top_and_from_the_manifests_bundle_dir() -> None:
    """A package's module finds its siblings from the package root; a handler below its
    bundle directory finds the bundle's top-level modules (the manifest's root)."""
    files = ["svc/src/handler.py", "svc/lib/__init__.py", "svc/lib/db.py", "svc/donjon.yaml"]
    index = ModuleIndex(files, bundle_dirs=["svc"])
    names = _imports("from lib.db import run_sql", "svc/src/handler.py")
    assert index.roots("svc/src/handler.py")[:2] == ("svc/src", "svc")
    assert index.resolve("svc/src/handler.py", names["run_sql"]) == ("svc/lib/db.py", ("run_sql",))
    assert index.roots("svc/lib/db.py")[0] == "svc"


# -- analysis across modules ----------------------------------------------------------------
def test_event_data_reaching_a_sink_in_another_module_is_high_with_both_files(
    tmp_path: Path,
) -> None:
    """The sink in the repository module is high confidence, its path starts in the handler."""
    root = _bundle(
        tmp_path,
        {
            "handler.py": """
                from app.repo import find_user

                def handler(event, context):
                    return find_user(event["name"])
            """,
            "app/__init__.py": "",
            "app/repo.py": """
                import sqlite3

                def find_user(name):
                    sql = "SELECT * FROM users WHERE name = '%s'" % name
                    return sqlite3.connect("x.db").execute(sql)
            """,
        },
    )
    [finding] = scan_path(root).findings
    assert finding.rule_id == "DJ-PY-003"
    assert finding.confidence is Confidence.HIGH
    assert str(finding.location) == "app/repo.py:6:12"
    steps = [(s.location.path, s.location.line) for s in finding.taint_path]
    assert steps == [
        ("handler.py", 4),
        ("handler.py", 5),
        ("app/repo.py", 5),
        ("app/repo.py", 6),
    ]


def test_the_callees_standalone_low_finding_is_not_reported_beside_the_high_one(
    tmp_path: Path,
) -> None:
    """One finding per rule and line: the cross-module high replaces the untraced low."""
    root = _bundle(
        tmp_path,
        {
            "handler.py": """
                import tools

                def handler(event, context):
                    tools.run(event["cmd"])
            """,
            "tools.py": """
                import os

                def run(cmd):
                    os.system(cmd)

                def other(cmd):
                    os.system(cmd)
            """,
        },
    )
    found = [(f.location.path, f.location.line, f.confidence) for f in scan_path(root).findings]
    assert found == [("tools.py", 5, Confidence.HIGH), ("tools.py", 8, Confidence.LOW)]


def test_a_return_value_flows_back_from_another_module(tmp_path: Path) -> None:
    """A helper that quotes its argument returns a safe value; one that does not, a tainted one."""
    root = _bundle(
        tmp_path,
        {
            "handler.py": """
                import os
                from text import quoted, raw

                def handler(event, context):
                    os.system("echo " + quoted(event["a"]))
                    os.system("echo " + raw(event["b"]))
            """,
            "text.py": """
                import shlex

                def quoted(s):
                    return shlex.quote(s)

                def raw(s):
                    return s.strip()
            """,
        },
    )
    [finding] = scan_path(root).findings
    assert (finding.location.line, finding.confidence) == (7, Confidence.HIGH)
    assert "returned by raw() of text.py" in [s.description for s in finding.taint_path]


def test_a_cycle_across_modules_terminates(tmp_path: Path) -> None:
    """``a.f -> b.g -> a.f`` with event data ends, and the sink on the way is found."""
    root = _bundle(
        tmp_path,
        {
            "a.py": """
                import os
                import b

                def handler(event, context):
                    return f(event["x"], 5)

                def f(x, n):
                    if n:
                        return b.g(x, n - 1)
                    return os.system(x)
            """,
            "b.py": """
                import a

                def g(x, n):
                    return a.f(x + "!", n)
            """,
        },
    )
    [finding] = scan_path(root).findings
    assert (finding.location.path, finding.location.line) == ("a.py", 11)
    assert finding.confidence is Confidence.HIGH


def test_a_ring_of_modules_does_bounded_work(tmp_path: Path) -> None:
    """Forty modules each calling the next (and the first) with event data stay bounded:
    the depth bound cuts the chain, and the scan neither stalls nor fails."""
    files = {
        f"m{i}.py": f"""
            import os
            import m{(i + 1) % 40}
            import m0

            def step(x):
                os.system("echo " + x)
                m{(i + 1) % 40}.step(x)
                m0.step(x + "0")
                return m{(i + 1) % 40}.step(x + "1")
        """
        for i in range(40)
    }
    files["handler.py"] = """
        import m0

        def handler(event, context):
            return m0.step(event["x"])
    """
    report = scan_path(_bundle(tmp_path, files))
    high = {f.location.path for f in report.findings if f.confidence is Confidence.HIGH}
    # The chain is followed to the depth bound (six calls deep), no further.
    assert {"m0.py", "m1.py", "m5.py"} <= high
    assert "m20.py" not in high


@pytest.mark.slow  # runs the analysis until its work budget is spent
def test_a_bundle_too_complex_to_analyse_still_fails_closed(tmp_path: Path) -> None:
    """The work budget the modules share is the sum of their own: calls from many sites
    into a long function of another module exhaust it, and the scan fails closed."""
    helper = "import os\n\ndef h(v):\n" + "    v = v + v\n" * 300 + "    os.system(v)\n"
    (tmp_path / "helper.py").write_text(helper)

    def handler(calls: int) -> str:
        lines = "".join(f"    helper.h(event['k{i}'])\n" for i in range(calls))
        return f"import helper\n\ndef handler(event, context):\n{lines}"

    (tmp_path / "handler.py").write_text(handler(3))
    [finding] = scan_path(tmp_path).findings
    assert finding.location.path == "helper.py" and finding.confidence is Confidence.HIGH
    (tmp_path / "handler.py").write_text(handler(300))
    with pytest.raises(ScanError, match="too complex to analyse"):
        scan_path(tmp_path)


def test_methods_of_instances_are_followed_within_and_across_modules(tmp_path: Path) -> None:
    """``Repo().get(x)``, ``r = Repo(); r.get(x)`` and a module-level instance reach the
    method of the class, in this module or another; a rebound name no longer does."""
    root = _bundle(
        tmp_path,
        {
            "handler.py": """
                import os
                from store import Repo

                shared = Repo()

                class Local:
                    def run(self, cmd):
                        os.system(cmd)

                def handler(event, context):
                    Repo().get(event["a"])
                    r = Repo()
                    r.put(event["b"])
                    shared.drop(event["c"])
                    loc = Local()
                    loc.run(event["d"])
                    loc = event
                    loc.run(event["e"])
            """,
            "store.py": """
                import sqlite3

                class Repo:
                    def get(self, key):
                        sqlite3.connect("x").execute("SELECT %s" % key)

                    def put(self, key):
                        sqlite3.connect("x").execute("INSERT %s" % key)

                    def drop(self, key):
                        sqlite3.connect("x").execute("DROP %s" % key)
            """,
        },
    )
    found = {(f.location.path, f.location.line): f.confidence for f in scan_path(root).findings}
    assert found == {
        ("handler.py", 9): Confidence.HIGH,
        ("store.py", 6): Confidence.HIGH,
        ("store.py", 9): Confidence.HIGH,
        ("store.py", 12): Confidence.HIGH,
    }


# -- formats -----------------------------------------------------------------------------------
@pytest.fixture
def two_files(tmp_path: Path) -> ScanReport:
    root = _bundle(
        tmp_path,
        {
            "handler.py": """
                from helpers import shell

                def handler(event, context):
                    shell.run(event["cmd"])
            """,
            "helpers/__init__.py": "",
            "helpers/shell.py": """
                import subprocess

                def run(cmd):
                    subprocess.run(cmd, shell=True)
            """,
        },
    )
    return scan_path(root)


def test_json_and_sarif_paths_name_each_file(two_files: ScanReport) -> None:
    """Each step of the path carries its own file, in JSON and in SARIF's codeFlows."""
    [finding] = json.loads(render_json(two_files))["findings"]
    assert finding["path"] == "helpers/shell.py"
    assert [s["path"] for s in finding["taint_path"]] == [
        "handler.py",
        "handler.py",
        "helpers/shell.py",
    ]
    sarif = json.loads(render_sarif(two_files))
    jsonschema.validate(sarif, json.loads(SARIF_SCHEMA.read_text()))
    [result] = sarif["runs"][0]["results"]
    flow = result["codeFlows"][0]["threadFlows"][0]["locations"]
    uris = [s["location"]["physicalLocation"]["artifactLocation"]["uri"] for s in flow]
    assert uris == ["handler.py", "handler.py", "helpers/shell.py"]


def test_text_path_names_each_file_when_it_spans_several(two_files: ScanReport) -> None:
    """The text report shows file:line for each step of a path through several files."""
    text = render_text(two_files)
    assert 'handler.py:5:5  shell.run(event["cmd"])' in text
    assert "helpers/shell.py:5:5  reaches subprocess.run(shell=True)" in text
