"""The CLI's own inputs, as someone who chose the paths it reads would use them.

A role document, a JWKS file, a provenance statement, a proof or a verifier key
file named on the command line may be a link (committed to a repository that CI
applies) to a device or a pipe that never ends, or a sparse file of terabytes.
The CLI reads each to a bound and refuses the rest with a clear error: it never
reads on until the host's memory is gone.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from donjon.audit import SigningKey
from harness import donjon_env

#: The address space the CLI is given: far more than it needs, far less than /dev/zero.
_MEMORY_BYTES = 1 << 30


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_BYTES, _MEMORY_BYTES))


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_limited,
    )


def _key() -> str:
    return str(SigningKey.generate().verifier)


@pytest.mark.parametrize(
    "args",
    [
        ("role", "apply", "{endless}"),
        (
            "issuer",
            "add",
            "x",
            "--issuer",
            "https://i.example",
            "--audience",
            "a",
            "--jwks",
            "{endless}",
        ),
        ("verify-provenance", "{endless}", "--key", "{key}"),
        ("verify-provenance", "{statement}", "--key", "{sparse}"),
        ("audit", "check-proof", "{endless}", "--key", "{key}"),
        ("audit", "check-proof", "{statement}", "--key", "{sparse}"),
    ],
    ids=["role", "jwks", "statement", "statement-key", "proof", "proof-key"],
)
def test_an_input_file_that_never_ends_is_refused_at_a_bound(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """A path to /dev/zero or a sparse file far larger than any document: one clear error
    naming the bound, not a read that takes all the memory there is."""
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as f:
        f.truncate(4 << 30)  # 4 GiB that cost nothing on disk
    statement = tmp_path / "statement.json"
    statement.write_text("{}")
    values = {
        "endless": "/dev/zero",
        "key": _key(),
        "sparse": str(sparse),
        "statement": str(statement),
    }
    env = donjon_env(tmp_path / "data", "https://127.0.0.1:9", "dj_0123456789abcdef_x")
    done = _run(env, *(a.format(**values) for a in args))
    assert done.returncode in (1, 2), done.stdout
    assert "MemoryError" not in done.stderr, done.stderr
    assert "bytes" in done.stderr, done.stderr


#: Writes an export's header line, then one line that never ends.
_ENDLESS_EXPORT = """
import sys
sys.stdout.write('{"type":"header","format":"donjon-audit-export/1","since":1,"prefix":[]}\\n')
while True:
    sys.stdout.write("a" * 65536)
"""


def test_an_export_line_that_never_ends_is_refused_at_a_bound(tmp_path: Path) -> None:
    """`audit check-proof -` reading an export whose second line never ends: INVALID at
    the line's bound, not a read that takes all the memory there is."""
    env = donjon_env(tmp_path / "data")
    with subprocess.Popen(
        [sys.executable, "-c", _ENDLESS_EXPORT], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as writer:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "donjon.cli", "audit", "check-proof", "-", "--key", _key()],
                env=env,
                stdin=writer.stdout,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                preexec_fn=_limited,
            )
        finally:
            writer.kill()
    assert done.returncode == 1, done.stdout
    assert "line 2 of the export is over" in done.stderr, done.stderr
