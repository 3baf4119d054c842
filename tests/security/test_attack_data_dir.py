"""A local user who could write the data dir before `donjon init` cannot plant its keys.

The attack: DONJON_DATA_DIR names a directory another user made first (in a
shared /tmp, or one left world-writable), with a TLS key pair of theirs in it.
An init that reuses what it finds serves with the attacker's TLS key, and the
CLI trusts that certificate for the local node: the attacker can read every API
key sent to it. Init and serve must refuse such a dir and change nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from donjon.gateway.tls import create_self_signed
from harness import donjon_env, free_port, refused_serve, run_cli

#: Who the attacker is: any uid but the node's own.
ATTACKER = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def _plant_tls(data_dir: Path) -> None:
    """The attacker's own TLS key pair where init looks for the node's."""
    data_dir.mkdir(mode=0o777)
    os.chmod(data_dir, 0o777)  # noqa: S103 - the attack: a dir others can write
    create_self_signed(data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem")
    for path in (data_dir / "tls", data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"):
        os.chown(path, ATTACKER, ATTACKER)


@needs_root
def test_init_refuses_a_data_dir_owned_by_another_user(data_dir: Path) -> None:
    """Init into a dir another uid owns fails with a clear error and writes nothing."""
    data_dir.mkdir(mode=0o777)
    os.chown(data_dir, ATTACKER, ATTACKER)
    done = run_cli(donjon_env(data_dir), "init", check=False)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert f"owned by uid {ATTACKER}" in done.stderr
    assert list(data_dir.iterdir()) == []


@needs_root
def test_init_refuses_a_planted_tls_key(data_dir: Path) -> None:
    """A TLS key pair another uid left in a world-writable data dir is never used."""
    _plant_tls(data_dir)
    planted = (data_dir / "tls" / "key.pem").read_bytes()
    done = run_cli(donjon_env(data_dir), "init", check=False)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert "tls" in done.stderr and f"uid {ATTACKER}" in done.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == ["tls"]
    assert (data_dir / "tls" / "key.pem").read_bytes() == planted


def test_init_refuses_a_world_writable_data_dir_with_files_in_it(data_dir: Path) -> None:
    """Files in a dir others could write may be theirs: init refuses, and says why."""
    data_dir.mkdir()
    os.chmod(data_dir, 0o777)  # noqa: S103 - the attack: a dir others can write
    (data_dir / "master.key").write_bytes(b"k" * 32)
    os.chmod(data_dir / "master.key", 0o600)
    done = run_cli(donjon_env(data_dir), "init", check=False)
    assert done.returncode == 1, done.stdout
    assert "writable by others" in done.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == ["master.key"]


def test_init_under_umask_000_leaves_nothing_writable_by_others(data_dir: Path) -> None:
    """With umask 000, no file or dir init makes is writable by group or others."""
    env = donjon_env(data_dir)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, runpy, sys; os.umask(0); sys.argv = ['donjon', "
            "'init']; runpy.run_module('donjon.cli', run_name='__main__')",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    loose = [
        (str(p), oct(p.stat().st_mode & 0o777))
        for p in [data_dir, *data_dir.rglob("*")]
        if p.stat().st_mode & 0o022
    ]
    assert loose == []


@needs_root
def test_serve_refuses_a_data_dir_entry_owned_by_another_user(data_dir: Path) -> None:
    """`donjon serve` refuses to start on a data dir where another uid owns a file."""
    env = donjon_env(data_dir)
    run_cli(env, "init")
    os.chown(data_dir / "tls" / "cert.pem", ATTACKER, ATTACKER)
    done = subprocess.run(
        [sys.executable, "-m", "donjon.cli", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert "cert.pem" in done.stderr and f"uid {ATTACKER}" in done.stderr


def test_recording_the_baseline_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    """A link planted at the baseline's temporary name is not followed: its target is
    untouched and the baseline is still recorded."""
    from donjon.config import load_settings
    from donjon.controls import record_baseline, survey

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (data / f".controls.json.{os.getpid()}").symlink_to(victim)
    settings = load_settings({"DONJON_DATA_DIR": str(data)})
    record_baseline(data, survey(settings))
    assert victim.read_text() == "precious\n"
    assert (data / "controls.json").is_file() and not (data / "controls.json").is_symlink()


@pytest.mark.parametrize("name", ["tls/key.pem", "sandbox-uid.key", "donjon.db"])
def test_serve_refuses_a_private_file_others_can_read(data_dir: Path, name: str) -> None:
    """A data dir restored with loose modes (the dir 755, a key 644): serve refuses, naming
    the file, before any local user could read the TLS key (and pass for the node to the
    CLI, which trusts its certificate), the uid-hash key or the database."""
    env = donjon_env(data_dir)
    run_cli(env, "init")
    private = data_dir / name
    if not private.exists():
        private.write_bytes(os.urandom(32))
    os.chmod(data_dir, 0o755)  # noqa: S103 - the attack: a tree others can read
    os.chmod(data_dir / "tls", 0o755)  # noqa: S103 - the attack, as for the dir above
    os.chmod(private, 0o644)
    said = refused_serve(data_dir)
    assert "Traceback" not in said
    assert name in said and "readable by others" in said, said


@needs_root
def test_init_refuses_a_data_dir_that_is_another_users_link(tmp_path: Path) -> None:
    """DONJON_DATA_DIR named in a shared dir, where another user put a link first (to a
    dir of root's that passes every other check): refused, and nothing written there. The
    link's owner could point it elsewhere at any time, under a running node."""
    target = tmp_path / "roots-dir"
    target.mkdir(mode=0o700)
    link = tmp_path / "data"
    link.symlink_to(target)
    os.lchown(link, ATTACKER, ATTACKER)
    done = run_cli(donjon_env(link), "init", check=False)
    assert done.returncode == 1, done.stdout
    assert "link" in done.stderr and f"uid {ATTACKER}" in done.stderr, done.stderr
    assert list(target.iterdir()) == []
