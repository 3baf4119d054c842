"""Invariant 2, files: a function reads nothing outside its bundle, the runtime and its /tmp,
and writes nowhere but its /tmp. Each attack runs in both isolation modes (invariant 4)."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

import donjon
from harness import LiveNode
from sec_support import ATTACKERS, PROBES, attack, bundle_dir


def _seen(node: LiveNode, fn: str, paths: list[str]) -> dict[str, Any]:
    """What the function could read or list of `paths` (absent entries were refused)."""
    result: dict[str, Any] = attack(node, fn, "read_many", paths=paths)
    return {p: r for p, r in result.items() if "error" not in r}


def _exists(node: LiveNode, fn: str, path: str) -> bool:
    r = node.invoke(fn, {"op": "exists", "path": path})
    assert r.status_code == 200, r.text
    return bool(r.json()["exists"])


@PROBES
def test_cannot_read_host_etc_passwd(node: LiveNode, fn: str) -> None:
    """/etc/passwd of the host is not there to read."""
    assert Path("/etc/passwd").exists()
    assert not _exists(node, fn, "/etc/passwd")
    assert node.invoke(fn, {"op": "read", "path": "/etc/passwd"}).status_code == 500


@PROBES
def test_cannot_read_host_etc_shadow(node: LiveNode, fn: str) -> None:
    """/etc/shadow and the rest of /etc are not there to read."""
    assert not _exists(node, fn, "/etc/shadow")
    assert not _exists(node, fn, "/etc")
    assert node.invoke(fn, {"op": "read", "path": "/etc/shadow"}).status_code == 500


@ATTACKERS
def test_cannot_see_root_home(node: LiveNode, fn: str) -> None:
    """Of the host's /root, only the directory leading to the Python runtime is visible."""
    prefix = Path(sys.base_prefix).resolve()
    allowed = {prefix.parts[2]} if prefix.is_relative_to("/root") else set()
    hidden = [e for e in os.listdir("/root") if e not in allowed]
    assert hidden
    seen = _seen(node, fn, ["/root", *[f"/root/{e}" for e in hidden]])
    assert set(seen.get("/root", {"listed": []})["listed"]) & set(hidden) == set()
    assert [e for e in hidden if f"/root/{e}" in seen] == []


@ATTACKERS
def test_cannot_see_host_home(node: LiveNode, fn: str) -> None:
    """/home of the host (and anything under it) is not there."""
    paths = ["/home", *[f"/home/{e}" for e in os.listdir("/home")]]
    assert _seen(node, fn, paths) == {}


@ATTACKERS
def test_cannot_read_the_data_dir(node: LiveNode, fn: str) -> None:
    """The node's data dir (master key, database, TLS key, bundles) is out of reach."""
    data = node.data_dir
    secrets_on_host = [data / "master.key", data / "donjon.db", data / "tls" / "key.pem"]
    assert all(p.exists() for p in secrets_on_host)
    paths = [str(p) for p in (data, *secrets_on_host, data / "bundles", data / "serve.log")]
    paths += [f"/proc/1/root{p}" for p in paths] + [f"/proc/self/root{p}" for p in paths]
    assert _seen(node, fn, paths) == {}


@ATTACKERS
def test_cannot_read_another_functions_bundle(node: LiveNode, fn: str) -> None:
    """Other bundles under <data_dir>/bundles are not reachable, by host path or via /proc."""
    other = bundle_dir(node, "sec-neighbour")
    assert (other / "main.py").exists()
    paths = [
        str(other),
        str(other / "main.py"),
        f"/proc/1/root{other}/main.py",
        f"/proc/1/cwd/../bundles/{other.name}/main.py",
    ]
    assert _seen(node, fn, paths) == {}
    own = _seen(node, fn, ["/fn/main.py"])["/fn/main.py"]["read"]
    assert "hostile function" in own


@ATTACKERS
def test_cannot_reach_the_hosts_root_through_proc_1(node: LiveNode, fn: str) -> None:
    """/proc/1/root inside is the sandbox's own root, not the host's."""
    seen = _seen(
        node,
        fn,
        [
            "/proc/1/root/etc/passwd",
            "/proc/1/root/etc",
            "/proc/1/root/home",
            "/proc/1/root/work",
            "/proc/1/root/var",
        ],
    )
    assert seen == {}


@ATTACKERS
def test_cannot_read_the_donjon_source_tree(node: LiveNode, fn: str) -> None:
    """Only the sandbox runtime is mounted; the gateway's code (and the repo) is not."""
    package = Path(donjon.__file__).resolve().parent
    paths = [
        str(package),
        str(package / "vault" / "master.py"),
        str(package.parent),
        str(package.parent.parent),
        "/work",
    ]
    assert _seen(node, fn, paths) == {}
    runtime = _seen(node, fn, ["/opt/donjon/donjon_runtime"])["/opt/donjon/donjon_runtime"]
    assert "supervisor.py" in runtime["listed"]
    assert not {"gateway", "vault", "identity", "audit"} & set(runtime["listed"])


#: The host's own configuration directories that /usr holds: software built into
#: /usr/local keeps its settings (and their passwords and tokens) in /usr/local/etc;
#: some distributions keep vendor settings in /usr/etc.
_HOST_CONFIG_DIRS = ["/usr/local/etc", "/usr/etc"]


@ATTACKERS
def test_cannot_read_host_local_config(node: LiveNode, fn: str) -> None:
    """/usr is mounted for its programs and libraries; the host's configuration kept under
    it (/usr/local/etc: npm's global npmrc on this host) is not: listed empty if at all,
    and each file the host has there unreadable."""
    files = [
        os.path.join(d, name)
        for d in _HOST_CONFIG_DIRS
        if os.path.isdir(d)
        for name in os.listdir(d)
    ]
    seen = _seen(node, fn, [*_HOST_CONFIG_DIRS, *files])
    for d in _HOST_CONFIG_DIRS:
        assert seen.get(d, {"listed": []})["listed"] == [], d
    assert not set(files) & set(seen), sorted(set(files) & set(seen))


@ATTACKERS
def test_cannot_read_host_site_packages(node: LiveNode, fn: str) -> None:
    """The host's and the venv's site-packages are hidden, and their packages do not import."""
    base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
    venv_site = sysconfig.get_paths()["purelib"]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    # Wherever this host keeps packages (Debian: dist-packages) that has any.
    candidates = {
        base["purelib"],
        "/usr/lib/python3/dist-packages",
        f"/usr/local/lib/python{version}/dist-packages",
        f"/usr/lib/python{version}/site-packages",
    }
    present = sorted(p for p in candidates if os.path.isdir(p) and os.listdir(p))
    assert present, "this host has no site-packages to hide"
    seen = _seen(node, fn, [*present, venv_site, sys.prefix])
    for path in present:
        assert seen.get(path, {"listed": []})["listed"] == [], path
    assert venv_site not in seen
    imported = attack(
        node,
        fn,
        "import",
        modules=["donjon", "httpx", "pytest", "yaml", "starlette", "cryptography"],
    )
    assert all(v.startswith("error") for v in imported.values()), imported


@ATTACKERS
def test_cannot_write_to_the_bundle(node: LiveNode, fn: str) -> None:
    """/fn is read-only: no new file, no changed handler, and the stored bundle is untouched."""
    bundle = bundle_dir(node, fn)
    before = sorted(p.name for p in bundle.iterdir())
    written = attack(
        node, fn, "write_many", paths=["/fn/sec-new.py", "/fn/main.py", "/fn/donjon.yaml"]
    )
    assert "written" not in written.values(), written
    assert sorted(p.name for p in bundle.iterdir()) == before


@ATTACKERS
def test_cannot_write_to_the_python_runtime(node: LiveNode, fn: str) -> None:
    """The interpreter, its stdlib, its hidden site-packages and /usr are read-only."""
    stdlib = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})[
        "stdlib"
    ]
    purelib = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})[
        "purelib"
    ]
    paths = [
        f"{stdlib}/sec_planted.py",
        f"{stdlib}/os.py",
        f"{purelib}/sec_planted.py",
        f"{purelib}/sitecustomize.py",
        "/usr/lib/sec-planted",
        "/opt/donjon/donjon_runtime/zygote.py",
        "/opt/donjon/donjon_runtime/sec.py",
    ]
    written = attack(node, fn, "write_many", paths=paths)
    assert "written" not in written.values(), written
    assert not Path(stdlib, "sec_planted.py").exists()


@ATTACKERS
def test_cannot_write_outside_tmp(node: LiveNode, fn: str) -> None:
    """The only writable places are the worker's own /tmp and /dev/shm: not /, /dev, /opt, /root."""
    paths = [
        "/sec-planted",
        "/dev/sec-planted",
        "/opt/sec-planted",
        "/opt/donjon/sec-planted",
        "/root/sec-planted",
        "/proc/sec-planted",
    ]
    written = attack(node, fn, "write_many", paths=paths)
    assert [p for p, r in written.items() if r == "written"] == []
    assert attack(node, fn, "write_many", paths=["/tmp/ok", "/dev/shm/ok"]) == {
        "/tmp/ok": "written",
        "/dev/shm/ok": "written",
    }


@ATTACKERS
def test_cannot_write_host_kernel_settings(node: LiveNode, fn: str) -> None:
    """Host-wide sysctls under /proc/sys cannot even be opened for writing (nothing is written)."""
    paths = [
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/kernel/panic",
        "/proc/sys/vm/drop_caches",
        "/proc/sys/vm/overcommit_memory",
        "/proc/sys/fs/protected_symlinks",
        "/proc/sysrq-trigger",
    ]
    opened = attack(node, fn, "open_for_write", paths=paths)
    assert [p for p, r in opened.items() if r == "opened"] == []


@ATTACKERS
def test_cannot_change_host_device_nodes(node: LiveNode, fn: str) -> None:
    """The host's /dev/null, /dev/zero and /dev/urandom (bound into /dev) cannot be chmod-ed.

    The attack sets each node's mode to the mode it already has, so it changes nothing
    but the inode's ctime even where it succeeds.
    """
    paths = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/full", "/dev/random"]
    before = {p: os.stat(p).st_mode for p in paths}
    changed = attack(node, fn, "chmod_same", paths=paths)
    assert {p: os.stat(p).st_mode for p in paths} == before
    assert [p for p, r in changed.items() if r == "changed"] == []
