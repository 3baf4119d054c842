"""The CLI's own inputs, as someone who chose the paths it reads would use them.

A role document, a JWKS file, a provenance statement, a proof, a verifier key or a
function's manifest named on the command line may be a link (committed to a repository that CI
applies) to a device or a pipe that never ends, or a sparse file of terabytes.
The CLI reads each to a bound and refuses the rest with a clear error: it never
reads on until the host's memory is gone.

And the node's files as a second local user sees them: nothing every sandbox
mounts may sit where that user could swap it.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from donjon.audit import SigningKey
from donjon.config import SandboxSettings
from donjon.sandbox.errors import SandboxUnavailable
from donjon.sandbox.host import SandboxHost
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
        ("deploy", "{bundle}"),
    ],
    ids=["role", "jwks", "statement", "statement-key", "proof", "proof-key", "manifest"],
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
    bundle = tmp_path / "fn"  # a function dir whose manifest is a link to the sparse file
    bundle.mkdir()
    (bundle / "donjon.yaml").symlink_to(sparse)
    values = {
        "endless": "/dev/zero",
        "key": _key(),
        "sparse": str(sparse),
        "statement": str(statement),
        "bundle": str(bundle),
    }
    env = donjon_env(tmp_path / "data", "https://127.0.0.1:9", "dj_0123456789abcdef_x")
    done = _run(env, *(a.format(**values) for a in args))
    assert done.returncode in (1, 2), done.stdout
    assert "MemoryError" not in done.stderr, done.stderr
    assert "bytes" in done.stderr or "characters" in done.stderr, done.stderr


#: Writes an export's header line, then one line that never ends.
_ENDLESS_EXPORT = """
import sys
sys.stdout.write(
    '{"type":"header","format":"donjon-audit-export/1","since":1,"until":1,"prefix":[]}\\n'
)
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


# -- the node's files: what a second local user could replace ---------------------------

#: The second local user: any uid but the node's own.
_OTHER_USER = 65534

_needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="staging for other uids (and chown) needs root"
)


@_needs_root
@pytest.mark.parametrize("where", ["owned", "open-parent"])
def test_the_sandbox_staging_dir_cannot_be_another_users(tmp_path: Path, where: str) -> None:
    """A staging dir another user owns, or under a dir others may write (not sticky), is
    refused: whoever can rename in it could swap the runtime or a bundle every sandbox
    mounts, and run code in every function with its secrets."""
    parent = tmp_path / "shared"
    parent.mkdir()
    if where == "owned":
        os.chown(parent, _OTHER_USER, _OTHER_USER)  # the other user made it first
    else:
        os.chmod(parent, 0o777)  # noqa: S103 - the attack: a dir others can write
    with pytest.raises(SandboxUnavailable, match="staging"):
        SandboxHost.detect(tmp_path / "data", SandboxSettings(staging_dir=parent / "stage"))
    assert not (parent / "stage").exists()


@_needs_root
def test_the_sandbox_staging_dir_may_sit_in_a_sticky_shared_dir(tmp_path: Path) -> None:
    """Under a sticky dir others write (as /tmp), a staging dir of the node's own is fine:
    no one else can rename or remove what the node made there."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # noqa: S103 - as /tmp is
    os.chmod(tmp_path, 0o755)  # noqa: S103 - pytest's tmp dirs are 0700: reachable, as / is
    host = SandboxHost.detect(tmp_path / "data", SandboxSettings(staging_dir=shared / "stage"))
    assert host.staging is not None and host.runtime.is_dir()
