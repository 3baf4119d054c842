"""Dependencies are vendored for the sandbox's interpreter and platform, not the deployer's."""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from donjon.bundle import BundleError, build_bundle
from donjon.bundle.target import (
    RuntimeTarget,
    local_target,
    manylinux_platforms,
    marker_mismatch,
    target_from_facts,
)
from donjon.errors import Error


def _wheel(wheels: Path, tag: str, value: str) -> None:
    """A wheel of `fastext` 1.0 with a compiled-looking tag, whose module says `value`."""
    with zipfile.ZipFile(wheels / f"fastext-1.0-{tag}.whl", "w") as whl:
        whl.writestr("fastext/__init__.py", f"BUILT_FOR = {value!r}\n")
        whl.writestr(
            "fastext-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fastext\nVersion: 1.0\n"
        )
        whl.writestr(
            "fastext-1.0.dist-info/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n",
        )
        whl.writestr("fastext-1.0.dist-info/RECORD", "")


def _function(root: Path) -> Path:
    root.mkdir()
    (root / "donjon.yaml").write_text("name: fast\nhandler: main.handler\n")
    (root / "main.py").write_text("import fastext\n\ndef handler(e, c):\n    return 1\n")
    (root / "requirements.txt").write_text("fastext==1.0\n")
    return root


def _vendored(archive: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile(".deps/fastext/__init__.py")
        assert member is not None
        return member.read().decode()


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """The same project as CPython 3.11 and 3.12 wheels for glibc x86_64, and for macOS."""
    found = tmp_path / "wheels"
    found.mkdir()
    _wheel(found, "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64", "cp311-linux")
    _wheel(found, "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64", "cp312-linux")
    _wheel(found, "cp312-cp312-macosx_11_0_arm64", "cp312-macos")
    return found


def test_manylinux_platforms_follow_the_sandbox_glibc() -> None:
    """glibc 2.28 on x86_64 takes manylinux_2_28 down to manylinux1, with the legacy names."""
    tags = manylinux_platforms("x86_64", "glibc 2.28")
    assert tags[0] == "manylinux_2_28_x86_64"
    assert tags[-1] == "manylinux1_x86_64"
    assert "manylinux2014_x86_64" in tags
    assert "manylinux_2_29_x86_64" not in tags
    arm = manylinux_platforms("aarch64", "glibc 2.17")
    assert arm == ("manylinux_2_17_aarch64", "manylinux2014_aarch64")


def test_non_glibc_sandbox_is_refused_clearly() -> None:
    """A sandbox on musl (or an unknown C library) is an error naming it, not a guess."""
    with pytest.raises(BundleError, match="not glibc"):
        manylinux_platforms("x86_64", "")


def test_target_of_this_interpreter() -> None:
    """The probe reads version, ABI and platform from the interpreter itself."""
    target = local_target()
    assert target.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert target.abi == f"cp{sys.version_info.major}{sys.version_info.minor}{sys.abiflags}"
    assert target.platforms[0].startswith("manylinux_2_")
    assert marker_mismatch(target) == ""


def test_from_json_refuses_what_would_be_a_pip_option() -> None:
    """Values from the node end up on pip's command line: an option-shaped one is refused."""
    good = local_target().to_json()
    assert RuntimeTarget.from_json(good) == local_target()
    for field, bad in [
        ("platforms", ["--index-url=https://evil.example/simple"]),
        ("platforms", []),
        ("abi", "-e ."),
        ("python_version", "3.11 --pre"),
        ("implementation", None),
    ]:
        with pytest.raises(BundleError):
            RuntimeTarget.from_json({**good, field: bad})
    with pytest.raises(BundleError):
        RuntimeTarget.from_json("not an object")


@pytest.mark.slow  # two pip runs (test_bundle.py vendors one in the fast subset)
def test_vendors_the_wheel_of_the_target_python_not_this_one(tmp_path: Path, wheels: Path) -> None:
    """Built for a 3.12 sandbox, the bundle holds the cp312 Linux wheel, whatever Python
    builds it; built for a 3.11 sandbox, the cp311 one."""
    src = _function(tmp_path / "fn")
    linux = manylinux_platforms("x86_64", "glibc 2.36")
    for version, expected in (("3.12", "cp312-linux"), ("3.11", "cp311-linux")):
        abi = "cp" + version.replace(".", "")
        target = target_from_facts(
            {
                "implementation": "cpython",
                "version": [3, int(version.split(".")[1]), 0],
                "abiflags": "",
                "machine": "x86_64",
                "libc": "glibc 2.36",
            }
        )
        assert target == RuntimeTarget(version, "cp", abi, linux)
        _, archive = build_bundle(src, find_links=wheels, target=target)
        assert _vendored(archive) == f"BUILT_FOR = {expected!r}\n"


@pytest.mark.slow  # a pip run
def test_no_wheel_for_the_target_fails_the_build(tmp_path: Path, wheels: Path) -> None:
    """A sandbox no wheel fits (here CPython 3.13) fails the build: nothing is compiled."""
    src = _function(tmp_path / "fn")
    target = RuntimeTarget("3.13", "cp", "cp313", manylinux_platforms("x86_64", "glibc 2.36"))
    with pytest.raises(Error, match="fastext"):
        build_bundle(src, find_links=wheels, target=target)
