"""Admin operations across a SIGKILL of the node: nothing answered is lost, nothing is half-made.

Each attack starts a real node (tests/harness.py), changes its state through the admin
API, and kills it with SIGKILL: `donjon serve` and every process under it (its audit
writer, its sandboxes) at once, as a kill of the node's cgroup or the host's OOM killer
would. Then the node is served again on the same data dir. Three kill points, the second
in test_attack_admin_commit.py (the two files can then run on both test workers):

- after the 2xx answer: what was answered is there and works, with its audit record;
- the moment the change is committed (a reader of the node's SQLite file sees it and
  kills): a change that was applied is complete and has its audit record;
- while a long operation runs (a large deploy, a rekey of many secrets), at several
  delays drawn with a fixed seed: old state or new, never half of one.

Every attack ends with `donjon audit verify` on the restarted node's log.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from crash_support import (
    ROLE,
    answered,
    audited,
    authenticates,
    dead_letters,
    deploy,
    digest,
    issuer,
    kill_and_serve_again,
    kill_node,
    must,
    query,
    read,
    reader,
    send,
    set_secret,
    verify_intact,
)
from donjon.bundle import build_bundle
from donjon.config import load_settings
from donjon.secret import Secret
from donjon.store import SecretStore, connect
from donjon.vault import MasterKey
from donjon.vault.keyring import Keyring, open_vault
from donjon.vault.service import Vault
from harness import LiveNode, donjon_env, initialise, serve_initialised, start_node

pytestmark = pytest.mark.slow  # nodes of their own, killed on purpose


def test_deploy_answered_then_killed_serves_the_new_version(tmp_path: Path) -> None:
    """A deploy answered 201 before the kill serves its version after the restart."""
    node = start_node(tmp_path / "data", measured=False)  # killed
    try:
        assert deploy(node, reader(tmp_path, "one")).status_code == 201
        r = deploy(node, reader(tmp_path, "two"))
        assert r.status_code == 201, r.text
        kill_and_serve_again(node)
        assert read(node)["tag"] == "two"
        assert audited(node, "function.deploy", "reader@2")
        verify_intact(node)
    finally:
        node.stop()


def test_function_rm_answered_then_killed_stays_removed(tmp_path: Path) -> None:
    """A function removed (204) before the kill is gone after the restart."""
    node = start_node(tmp_path / "data", measured=False)  # killed
    try:
        assert deploy(node, reader(tmp_path, "one")).status_code == 201
        answered(node, "DELETE", "/v1/functions/reader", 204)
        kill_and_serve_again(node)
        assert node.invoke("reader", {}).status_code == 404
        assert audited(node, "function.delete", "reader")
        verify_intact(node)
    finally:
        node.stop()


def test_keys_answered_then_killed_keep_what_was_answered(tmp_path: Path) -> None:
    """Keys made, rotated and revoked before the kill authenticate as answered after it."""
    # The made key and the rotated key's new secret authenticate; the revoked key and the
    # rotated key's old secret (no overlap) do not, from the first request on.
    node = start_node(tmp_path / "data", measured=False)  # killed
    try:
        made = node.create_key("made", "invoker")
        rotated = node.create_key("rotated", "invoker")
        revoked = node.create_key("revoked", "invoker")
        assert authenticates(node, revoked["key"])
        answered(node, "DELETE", f"/v1/keys/{revoked['id']}", 204)
        new = answered(node, "POST", f"/v1/keys/{rotated['id']}/rotate", 201, json={"overlap_s": 0})
        kill_and_serve_again(node)
        assert not authenticates(node, revoked["key"])  # the first request after the start
        assert authenticates(node, made["key"])
        assert authenticates(node, new["key"])
        assert not authenticates(node, rotated["key"])
        assert audited(node, "key.create", f"key:{made['id']}")
        assert audited(node, "key.revoke", f"key:{revoked['id']}")
        assert audited(node, "key.rotate", f"key:{rotated['id']}")
        verify_intact(node)
    finally:
        node.stop()


def test_secret_rotate_answered_then_killed_is_what_the_function_reads(tmp_path: Path) -> None:
    """A secret rotated (201) before the kill is the version its function reads after it."""
    node = start_node(tmp_path / "data", measured=False)  # killed
    try:
        set_secret(node, "token", "first value")
        assert deploy(node, reader(tmp_path, "one", ("token",))).status_code == 201
        assert read(node)["secrets"] == {"token": digest("first value")}
        done = answered(node, "POST", "/v1/secrets/token/versions", 201, json={"value": "second"})
        assert done["version"] == 2
        kill_and_serve_again(node)
        assert read(node)["secrets"] == {"token": digest("second")}
        assert [r["detail"]["version"] for r in audited(node, "secret.rotate", "secret:token")] == [
            2
        ]
        verify_intact(node)
    finally:
        node.stop()


def test_rekey_answered_then_killed_opens_every_secret(tmp_path: Path) -> None:
    """After each of two rekeys answered before a kill, every secret opens for its function."""
    # The first rekey makes vault.key, the second replaces it.
    node = start_node(tmp_path / "data", measured=False)  # killed
    try:
        names = tuple(f"s{i}" for i in range(5))
        for name in names:
            set_secret(node, name, f"value of {name}")
        assert deploy(node, reader(tmp_path, "one", names)).status_code == 201
        want = {name: digest(f"value of {name}") for name in names}
        for n in (1, 2):
            done = answered(node, "POST", "/v1/vault/rekey", 200)
            assert done["rewrapped"] == len(names)
            kill_and_serve_again(node, measured=n == 2)  # the first is killed again
            assert read(node)["secrets"] == want
            assert len(audited(node, "vault.rekey", "vault")) == n
        verify_intact(node)
    finally:
        node.stop()


def test_roles_quotas_issuers_secrets_dlq_answered_then_killed_are_kept(tmp_path: Path) -> None:
    """Roles, quotas, issuers, secrets and a DLQ purge answered before a kill stay, audited."""
    # Role apply/rm, quota set/rm, issuer add/rm, secret set/rm, DLQ purge.
    node = start_node(tmp_path / "data", measured=False)  # killed
    try:
        assert deploy(node, reader(tmp_path, "one")).status_code == 201
        answered(node, "POST", "/v1/roles", 201, json=ROLE)
        answered(node, "PUT", "/v1/quotas/function:reader", 201, json={"invocations": 1})
        answered(node, "POST", "/v1/issuers", 201, json=issuer())
        set_secret(node, "kept", "v")
        set_secret(node, "dropped", "v")
        answered(node, "DELETE", "/v1/secrets/dropped", 204)
        dead = dead_letters(node, 2)
        assert answered(node, "DELETE", "/v1/dlq", 200)["purged"] == 2
        kill_and_serve_again(node, measured=False)  # killed again below
        roles = [r["name"] for r in answered(node, "GET", "/v1/roles", 200)]
        assert "auditor-crash" in roles
        quotas = [q["subject"] for q in answered(node, "GET", "/v1/quotas", 200)]
        assert "function:reader" in quotas
        assert [i["name"] for i in answered(node, "GET", "/v1/issuers", 200)] == ["crash-issuer"]
        assert [s["name"] for s in answered(node, "GET", "/v1/secrets", 200)] == ["kept"]
        assert answered(node, "GET", "/v1/dlq", 200) == []
        assert all(answered(node, "GET", f"/v1/dlq/{i}", 404, params={}) is not None for i in dead)
        for action, target in [
            ("role.apply", "role:auditor-crash"),
            ("quota.set", "function:reader"),
            ("issuer.add", "issuer:crash-issuer"),
            ("secret.set", "secret:kept"),
            ("secret.rm", "secret:dropped"),
            ("invocation.purge", "*"),
        ]:
            assert audited(node, action, target), action
        # The removals, answered before a second kill.
        answered(node, "DELETE", "/v1/roles/auditor-crash", 200)
        answered(node, "DELETE", "/v1/quotas/function:reader", 200)
        answered(node, "DELETE", "/v1/issuers/crash-issuer", 204)
        kill_and_serve_again(node)
        roles = [r["name"] for r in answered(node, "GET", "/v1/roles", 200)]
        assert "auditor-crash" not in roles
        assert answered(node, "GET", "/v1/quotas", 200) == []
        assert answered(node, "GET", "/v1/issuers", 200) == []
        for action, target in [
            ("role.remove", "role:auditor-crash"),
            ("quota.rm", "function:reader"),
            ("issuer.remove", "issuer:crash-issuer"),
        ]:
            assert audited(node, action, target), action
        verify_intact(node)
    finally:
        node.stop()


# -- killed while a long operation runs ---------------------------------------------------

#: The seed of the kill delays: the same delays on every run.
SEED = 20261204
#: Kills per attack, each at a delay drawn from 0 to 1.5 times the operation's own length
#: (the last third: kills near or after its end, in the window of its last steps).
KILLS = 4
SPAN = 1.5
#: Secrets in the vault the rekey attack re-wraps.
MANY = 1500
#: Bytes of data files in the large deploy's bundle (random: the archive is as large).
LARGE = 24 << 20


class InFlight:
    """An admin request sent from a thread; `answer` once it ends (None: no answer)."""

    def __init__(self, node: LiveNode, method: str, path: str, **kwargs: Any) -> None:
        self.answer: httpx.Response | None = None
        self._thread = threading.Thread(
            target=self._send, args=(node, method, path, kwargs), daemon=True
        )
        self._thread.start()

    def _send(self, node: LiveNode, method: str, path: str, kwargs: dict[str, Any]) -> None:
        self.answer = send(node, method, path, **kwargs)

    def join(self) -> httpx.Response | None:
        self._thread.join(120)
        assert not self._thread.is_alive()
        return self.answer


def _took(work: Callable[[], object]) -> float:
    """How long `work` ran (to draw kill delays within it; never asserted)."""
    start = time.monotonic()
    work()
    return time.monotonic() - start


def _current(node: LiveNode, name: str) -> tuple[int, str] | None:
    """The version `name` serves as the store says, and that version's bundle digest."""
    rows = query(
        node,
        "SELECT f.version, v.digest FROM functions f JOIN function_versions v"
        " ON v.name = f.name AND v.version = f.version WHERE f.name = ?",
        name,
    )
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


def test_large_deploy_killed_midway_is_all_or_nothing(tmp_path: Path) -> None:
    """A large deploy killed midway leaves the old version or the new one, whole and audited."""
    node = start_node(tmp_path / "data", measured=False)  # killed
    rng = random.Random(SEED)  # noqa: S311 - kill delays, not a secret
    try:
        assert deploy(node, reader(tmp_path, "r0")).status_code == 201
        length = _took(lambda: must(deploy(node, reader(tmp_path, "r1", padding=LARGE)).is_success))
        serving = "r1"
        outcomes = []
        for k in range(2, 2 + KILLS):
            last = k == 1 + KILLS
            tag = f"r{k}"
            archive = build_bundle(reader(tmp_path, tag, padding=LARGE))[1]
            before = _current(node, "reader")
            flight = InFlight(
                node, "POST", "/v1/functions", content=archive, params={"unsafe_skip_scan": "true"}
            )
            time.sleep(rng.uniform(0, SPAN * length))
            kill_node(node)
            answer = flight.join()
            node.serve_again(measured=last)  # the others are killed in turn
            now = _current(node, "reader")
            assert now is not None
            tag_now = read(node)["tag"]  # the version the store names answers: its bundle is there
            if now == before:
                assert tag_now == serving and (answer is None or not answer.is_success)
            else:
                assert now[0] > (before or (0, ""))[0]
                assert tag_now == tag, (now, tag_now, tag)
                assert audited(node, "function.deploy", f"reader@{now[0]}"), "deployed, unaudited"
                serving = tag
            outcomes.append("new" if serving == tag else "old")
        print(f"\ndeploy of {LARGE >> 20} MiB took {length:.2f}s; after each kill: {outcomes}")
        verify_intact(node)
    finally:
        node.stop()


T = TypeVar("T")


def _in_vault(data_dir: Path, work: Callable[[SecretStore, Vault], Coroutine[Any, Any, T]]) -> T:
    """`work` done with the vault code a node runs, on the files of `data_dir` (the master
    key, vault.key, the database), while no node serves it."""
    settings = load_settings(donjon_env(data_dir))
    keyring = Keyring(MasterKey.load(settings.master_key_path), settings.vault_key_path)
    engine = connect(settings.database_url)
    try:
        store = SecretStore(engine)
        return asyncio.run(work(store, open_vault(store, keyring)))
    finally:
        engine.dispose()


def _open_all(node: LiveNode) -> dict[str, str]:
    """Every secret's newest value, opened from the files the restarted node left."""

    async def opened(store: SecretStore, vault: Vault) -> dict[str, str]:
        return await vault.open_granted(sorted(store.names()))

    return _in_vault(node.data_dir, opened)


def _set_all(data_dir: Path, values: dict[str, str]) -> None:
    """The secrets set, as the admin's `POST /v1/secrets` sets them (Vault.set), before the
    node starts: they are the rekey's set-up, not the attack (through the API, 1,500
    audited requests were a third of the test)."""

    async def set_all(store: SecretStore, vault: Vault) -> None:
        for name, value in values.items():
            await vault.set(name, Secret(value), "admin")

    _in_vault(data_dir, set_all)


def test_rekey_of_many_secrets_killed_midway_opens_every_secret(tmp_path: Path) -> None:
    """A rekey of 1,500 secrets killed midway leaves every secret opening, under one key."""
    # Also: no vault.key.new is left, and each rekey that committed is audited.
    values = {f"s{i:04d}": f"value {i}" for i in range(MANY)}
    admin_key = initialise(tmp_path / "data")
    _set_all(tmp_path / "data", values)
    node = serve_initialised(tmp_path / "data", admin_key, measured=False)  # killed
    rng = random.Random(SEED + 1)  # noqa: S311 - kill delays, not a secret
    try:
        granted = tuple(sorted(values)[:5])
        assert deploy(node, reader(tmp_path, "one", granted)).status_code == 201
        want = {name: digest(values[name]) for name in granted}
        length = _took(lambda: answered(node, "POST", "/v1/vault/rekey", 200))
        rekeys = 1
        outcomes = []
        for kill in range(KILLS):
            (before,) = query(node, "SELECT DISTINCT kek_id FROM secret_versions")
            flight = InFlight(node, "POST", "/v1/vault/rekey")
            time.sleep(rng.uniform(0, SPAN * length))
            kill_node(node)
            flight.join()
            node.serve_again(measured=kill == KILLS - 1)  # the others are killed in turn
            after = query(node, "SELECT DISTINCT kek_id FROM secret_versions")
            assert len(after) == 1, after  # one transaction: never some rows of each key
            assert not (node.data_dir / "vault.key.new").exists()
            if after[0] != before:
                rekeys += 1
            outcomes.append("new" if after[0] != before else "old")
            assert len(audited(node, "vault.rekey", "vault")) >= rekeys
            assert read(node)["secrets"] == want
            assert _open_all(node) == values
        print(f"\nrekey of {len(values)} took {length:.2f}s; after each kill: {outcomes}")
        verify_intact(node)
    finally:
        node.stop()


@pytest.fixture(scope="session", autouse=True)
def hostile_warm_copies() -> None:
    """Overrides tests/security/conftest.py's: this module starts nodes of its own, so the
    session's shared node (and its hostile functions) is not started for it."""
