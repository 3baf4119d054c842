"""Reading dependencies from every supported format."""

from __future__ import annotations

import textwrap
from pathlib import Path

from packaging.version import Version

from donjon.scan.deps.depfiles import Dependency, Precision, parse_dependency_file, parse_installed
from donjon.scan.project import SourceFile


def _parse(
    name: str, text: str, extra: dict[str, str] | None = None
) -> tuple[list[Dependency], list[str]]:
    files = {
        rel: SourceFile(Path(rel), rel, textwrap.dedent(body).lstrip("\n"))
        for rel, body in {name: text, **(extra or {})}.items()
    }
    notes: list[str] = []
    return parse_dependency_file(files[name], files, notes), notes


def _summary(deps: list[Dependency]) -> list[tuple[str, str, str, int]]:
    return [
        (d.name, str(d.version or d.specifier), d.precision.name, d.location.line) for d in deps
    ]


def test_requirements_pins_ranges_includes_hashes_and_markers() -> None:
    """Pins are exact, ranges are ranges; -r is followed; markers and URLs are honoured."""
    deps, notes = _parse(
        "requirements.txt",
        """
        # comment
        Jinja2==2.10  # templating
        requests>=2.0,<3
        urllib3==1.24.1 \\
            --hash=sha256:abc
        old==1.0; python_version < "3"
        pkg @ https://example.invalid/pkg.tar.gz
        -e .
        --index-url https://pypi.org/simple
        -r extra/more.txt
        wild==2.*
    """,
        {"extra/more.txt": "flask==0.12\n"},
    )
    assert _summary(deps) == [
        ("jinja2", "2.10", "PINNED", 2),
        ("requests", "<3,>=2.0", "RANGE", 3),
        ("urllib3", "1.24.1", "PINNED", 4),
        ("flask", "0.12", "PINNED", 1),
        ("wild", "==2.*", "RANGE", 11),
    ]
    assert deps[3].location.path == "extra/more.txt"
    assert notes == []


def test_requirements_notes_missing_includes_and_garbage() -> None:
    """Problems are notes, never exceptions."""
    deps, notes = _parse("requirements.txt", "-r nowhere.txt\nthis is not a requirement!\n")
    assert deps == []
    assert any("nowhere.txt not found" in n for n in notes)
    assert any("not a requirement" in n for n in notes)


def test_pipfile_lock() -> None:
    """Both sections, versions as ==X."""
    deps, _ = _parse(
        "Pipfile.lock",
        """
        {"default": {"lxml": {"version": "==4.6.2"}},
         "develop": {"pytest": {"version": "==7.0.0"}}}
    """,
    )
    assert _summary(deps) == [("lxml", "4.6.2", "LOCKED", 1), ("pytest", "7.0.0", "LOCKED", 2)]


def test_poetry_and_uv_locks_skip_the_project_itself() -> None:
    """[[package]] tables; editable/virtual sources are the project, not a dependency."""
    poetry, _ = _parse(
        "poetry.lock",
        """
        [[package]]
        name = "django"
        version = "3.2.0"
    """,
    )
    uv, _ = _parse(
        "uv.lock",
        """
        version = 1
        [[package]]
        name = "app"
        version = "0.1.0"
        source = { editable = "." }
        [[package]]
        name = "Pillow"
        version = "8.0.0"
        source = { registry = "https://pypi.org/simple" }
    """,
    )
    assert _summary(poetry) == [("django", "3.2.0", "LOCKED", 2)]
    assert _summary(uv) == [("pillow", "8.0.0", "LOCKED", 7)]


def test_pyproject_pep621_groups_and_poetry_constraints() -> None:
    """PEP 621 and 735 lists, Poetry's caret and tilde constraints as PEP 440."""
    deps, notes = _parse(
        "pyproject.toml",
        """
        [project]
        dependencies = ["flask==0.12", "requests>=2"]
        [project.optional-dependencies]
        yaml = ["pyyaml<6"]
        [dependency-groups]
        dev = ["pytest==8.0.0", {include-group = "x"}]
        [tool.poetry.dependencies]
        python = "^3.11"
        django = "^3.2.1"
        zero = "^0.2.3"
        tilde = "~1.24"
        exact = "1.0.0"
        gitdep = {git = "https://example.invalid/x.git"}
        withversion = {version = "^2.0", extras = ["a"]}
    """,
    )
    specs = {d.name: (str(d.version) if d.version else str(d.specifier)) for d in deps}
    assert specs == {
        "flask": "0.12",
        "requests": ">=2",
        "pyyaml": "<6",
        "pytest": "8.0.0",
        "django": "<4,>=3.2.1",
        "zero": "<0.3,>=0.2.3",
        "tilde": "<1.25,>=1.24",
        "exact": "1.0.0",
        "withversion": "<3,>=2.0",
    }
    assert notes == []


def test_installed_metadata() -> None:
    """A vendored distribution's METADATA gives its exact version."""
    meta = SourceFile(
        Path("m"),
        ".deps/Jinja2-2.10.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\n\nName: not-a-header\n",
    )
    dep = parse_installed(meta)
    assert dep is not None
    assert (dep.name, dep.version, dep.precision, dep.location.line) == (
        "jinja2",
        Version("2.10"),
        Precision.INSTALLED,
        3,
    )
    assert parse_installed(SourceFile(Path("m"), "x/METADATA", "Name: x\n")) is None


def test_installed_metadata_field_names_in_any_case() -> None:
    """`name:`/`VERSION:` are the same fields (email headers): the version is still read."""
    text = "metadata-version: 2.1\nname: Jinja2\nVERSION: 2.10\n"
    meta = SourceFile(Path("m"), "x/METADATA", text)
    dep = parse_installed(meta)
    assert dep is not None
    assert (dep.name, dep.version, dep.location.line) == ("jinja2", Version("2.10"), 3)
