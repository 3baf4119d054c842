"""requirements.txt: only index requirements reach pip, and pip sees no credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.bundle import BundleError
from donjon.bundle.build import pip_environment
from donjon.bundle.requirements import parse_requirements, render_requirements

_SHA = "a" * 64


def test_index_requirements_are_accepted() -> None:
    """Pins, extras, markers, hashes (also on continuation lines) and comments are fine."""
    text = (
        "# a comment\n\n"
        "humanize==4.12.3  # pinned\n"
        'requests[socks]>=2.31,<3 ; python_version >= "3.8"\n'
        f"attrs==23.2.0 \\\n    --hash=sha256:{_SHA}\n"
        "plain\n"
    )
    parsed = parse_requirements(text)
    assert [(r.line, r.requirement.name) for r in parsed] == [
        (3, "humanize"),
        (4, "requests"),
        (5, "attrs"),
        (7, "plain"),
    ]
    assert parsed[2].hashes == (f"sha256:{_SHA}",)
    assert render_requirements(parsed).splitlines() == [
        "humanize==4.12.3",
        'requests[socks]<3,>=2.31; python_version >= "3.8"',
        f"attrs==23.2.0 --hash=sha256:{_SHA}",
        "plain",
    ]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("./evilpkg", "path or URL"),
        ("/abs/evilpkg", "path or URL"),
        ("-e ./evilpkg", "options"),
        ("--editable=./evilpkg", "options"),
        ("evilpkg @ file:///tmp/evilpkg", "@ URL"),
        ("git+https://example.invalid/e.git#egg=e", "path or URL"),
        ("e @ git+https://example.invalid/e.git", "@ URL"),
        ("https://example.invalid/e-1.0.tar.gz", "path or URL"),
        ("--no-binary=:all:", "options"),
        ("--index-url https://example.invalid/simple", "options"),
        ("--extra-index-url=https://example.invalid", "options"),
        ("-r other.txt", "options"),
        ("-c constraints.txt", "options"),
        ("--trusted-host example.invalid", "options"),
        ("humanize==1 --no-deps", "--hash"),
        ("humanize==1 --hash=md5:abc", "hash"),
        ("humanize==1 --hash sha256:abc", "hash"),
        ("not a requirement!", "not a requirement"),
    ],
)
def test_everything_else_is_refused(line: str, why: str) -> None:
    """Options, paths and URLs are refused, naming the line."""
    with pytest.raises(BundleError, match=r"requirements\.txt line 2") as raised:
        parse_requirements(f"humanize==4.12.3\n{line}\n")
    assert why in raised.value.message
    assert raised.value.hint


def test_pip_gets_no_credentials(tmp_path: Path) -> None:
    """pip's environment is an allowlist: PATH, proxies, index settings; HOME is a temp dir."""
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "DONJON_API_KEY": "dj_x_y",
        "DONJON_URL": "https://x",
        "AWS_SECRET_ACCESS_KEY": "s",
        "HTTPS_PROXY": "http://p",
        "PIP_INDEX_URL": "https://idx/simple",
        "PYTHONPATH": "/evil",
    }
    env = pip_environment(environ, tmp_path)
    assert env["HOME"] == str(tmp_path)
    assert env["PATH"] == "/usr/bin"
    assert env["HTTPS_PROXY"] == "http://p" and env["PIP_INDEX_URL"] == "https://idx/simple"
    assert not [k for k in env if k.startswith("DONJON_")]
    assert "AWS_SECRET_ACCESS_KEY" not in env and "PYTHONPATH" not in env
