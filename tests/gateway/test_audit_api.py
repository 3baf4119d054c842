"""The audit API and CLI on a real node: proofs, checkpoints, export and paging,
each proof checked offline by `donjon audit check-proof` in a process with no settings."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from donjon.cli.audit_cmd import read_tail
from donjon.cli.client import ApiClient
from donjon.config import load_settings
from harness import LiveNode, run_cli, start_node


@pytest.fixture(scope="module")
def anode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node making a checkpoint every 5 records or every second with new records."""
    live = start_node(
        tmp_path_factory.mktemp("audit-node"),
        {"DONJON_AUDIT_CHECKPOINT_RECORDS": "5", "DONJON_AUDIT_CHECKPOINT_S": "1"},
    )
    try:
        yield live
    finally:
        live.stop()


def _records(node: LiveNode, count: int) -> int:
    """Write `count` audit records (key creations); the newest seq."""
    for i in range(count):
        node.create_key(f"audit-{time.monotonic_ns()}-{i}", "invoker")
    with node.client() as c:
        return int(c.get("/v1/audit", params={"n": 1}).json()[-1]["seq"])


def _checkpoint_covering(node: LiveNode, seq: int) -> int:
    """Wait (bounded) for a checkpoint of at least `seq` records; its size."""
    deadline = time.monotonic() + 60
    with node.client() as c:
        while time.monotonic() < deadline:
            rows = c.get("/v1/audit/checkpoints", params={"n": 1}).json()
            if rows and rows[-1]["size"] >= seq:
                return int(rows[-1]["size"])
            time.sleep(0.2)
    raise AssertionError(f"no checkpoint covered record {seq} within 60 s")


def _check_offline(tmp_path: Path, node: LiveNode, path: Path) -> tuple[int, str]:
    """`donjon audit check-proof` with no DONJON_* setting, away from the data dir."""
    home = tmp_path / "stranger"
    home.mkdir(exist_ok=True)
    key = home / "key.pub"
    key.write_text((node.data_dir / "audit-signing.pub").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    env["HOME"] = str(home)
    done = run_cli(env, "audit", "check-proof", str(path), "--key", str(key), check=False)
    return done.returncode, done.stdout + done.stderr


def test_prove_a_record_and_check_it_offline(anode: LiveNode, tmp_path: Path) -> None:
    """`donjon audit prove SEQ -o FILE` makes a proof `check-proof` accepts anywhere."""
    seq = _records(anode, 3)
    _checkpoint_covering(anode, seq)
    proof = tmp_path / "proof.json"
    run_cli(anode.env(), "audit", "prove", str(seq), "-o", str(proof))
    doc = json.loads(proof.read_text())
    assert doc["format"] == "donjon-inclusion-proof/1" and doc["seq"] == seq
    assert json.loads(doc["record"])["action"] == "key.create"
    code, out = _check_offline(tmp_path, anode, proof)
    assert code == 0, out
    doc["record"] = doc["record"].replace("key.create", "key.revoke")
    proof.write_text(json.dumps(doc))
    code, out = _check_offline(tmp_path, anode, proof)
    assert code == 1 and "INVALID" in out


def test_consistency_between_two_checkpoints_checks_offline(
    anode: LiveNode, tmp_path: Path
) -> None:
    """Two checkpoint sizes from the API give a consistency proof that checks offline."""
    old = _checkpoint_covering(anode, _records(anode, 1))
    new = _checkpoint_covering(anode, _records(anode, 6))
    assert old < new
    out = tmp_path / "consistency.json"
    run_cli(anode.env(), "audit", "consistency", str(old), str(new), "-o", str(out))
    code, text = _check_offline(tmp_path, anode, out)
    assert code == 0, text
    assert f"extends the log of {old}" in text


@pytest.mark.parametrize("fmt", ["jsonl", "syslog"])
def test_an_export_with_its_checkpoints_checks_offline(
    anode: LiveNode, tmp_path: Path, fmt: str
) -> None:
    """A partial export (from record 3) streamed to a file verifies offline."""
    _checkpoint_covering(anode, _records(anode, 2))
    out = tmp_path / f"export.{fmt}"
    run_cli(anode.env(), "audit", "export", "--since", "3", "--format", fmt, "-o", str(out))
    lines = out.read_text().splitlines()
    assert len(lines) > 3
    code, text = _check_offline(tmp_path, anode, out)
    assert code == 0, text


def test_tail_accepts_any_n_and_pages_back(
    anode: LiveNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tail -n` above the API's page cap is no error; paging gives the same records."""
    newest = _records(anode, 2)
    done = run_cli(anode.env(), "audit", "tail", "-n", "20000", "--output", "json")
    every = json.loads(done.stdout)
    assert [r["seq"] for r in every] == list(range(1, newest + 1))
    for name, value in anode.env().items():
        monkeypatch.setenv(name, value)
    client = ApiClient(load_settings())
    try:
        paged = read_tail(client, newest - 2, page=3)
    finally:
        client.close()
    assert [r["seq"] for r in paged] == list(range(3, newest + 1))


def _get(node: LiveNode, path: str, key: str | None = None, **params: Any) -> Any:
    with node.client(key) as c:
        return c.get(path, params=params)


def test_bad_queries_are_clear_errors(anode: LiveNode) -> None:
    """Missing or out-of-range numbers are 400; what no checkpoint covers is 404."""
    _checkpoint_covering(anode, _records(anode, 1))
    for path, params in (
        ("/v1/audit/proof", {}),
        ("/v1/audit/proof", {"seq": "0"}),
        ("/v1/audit/proof", {"seq": "x"}),
        ("/v1/audit/consistency", {"old": "5"}),
        ("/v1/audit/export", {"format": "xml"}),
        ("/v1/audit", {"before": "-1"}),
        ("/v1/audit", {"n": "10001"}),
    ):
        r = _get(anode, path, **params)
        assert r.status_code == 400, (path, params, r.text)
    assert _get(anode, "/v1/audit/proof", seq="999999").status_code == 404
    assert _get(anode, "/v1/audit/proof", seq="1", size="999999").status_code == 404
    assert _get(anode, "/v1/audit/consistency", old="1", new="999999").status_code == 404
    assert _get(anode, "/v1/audit/consistency", old="6", new="5").status_code == 404


def test_only_audit_readers_get_proofs(anode: LiveNode) -> None:
    """An auditor key reads proofs and exports; an invoker key is refused (403)."""
    auditor = anode.create_key(f"auditor-{time.monotonic_ns()}", "auditor")["key"]
    invoker = anode.create_key(f"invoker-{time.monotonic_ns()}", "invoker")["key"]
    _checkpoint_covering(anode, 2)
    for path, params in (
        ("/v1/audit/proof", {"seq": "1"}),
        ("/v1/audit/checkpoints", {}),
        ("/v1/audit/export", {}),
        ("/v1/audit/consistency", {"old": "0", "new": "0"}),
    ):
        assert _get(anode, path, invoker, **params).status_code == 403, path
    assert _get(anode, "/v1/audit/proof", auditor, seq="1").status_code == 200
    assert _get(anode, "/v1/audit/export", auditor).status_code == 200


def test_a_rewritten_log_gets_a_409_not_a_proof(tmp_path: Path) -> None:
    """Records rewritten with their leaf hashes no longer hash to the signed root: 409."""
    live = start_node(tmp_path / "data", {"DONJON_AUDIT_CHECKPOINT_S": "1"})
    try:
        seq = _checkpoint_covering(live, _records(live, 2))
        forged = b'{"forged":true}'
        with sqlite3.connect(live.data_dir / "donjon.db") as db:
            db.execute(
                "UPDATE audit_log SET record = ?, hash = ? WHERE seq = ?",
                (forged, hashlib.sha256(b"\x00" + forged).digest(), seq - 1),
            )
        r = _get(live, "/v1/audit/proof", seq=str(seq))
        assert r.status_code == 409, r.text
        assert "do not hash to the root" in r.json()["detail"]
    finally:
        live.stop()


def test_damaged_rows_get_a_409_or_a_placeholder_never_a_500(tmp_path: Path) -> None:
    """A leaf hash cut short, a checkpoint row's time or note edited: proofs are a 409 naming
    it; a record that is no record: the page shows it unreadable, the export carries it."""
    live = start_node(tmp_path / "data", {"DONJON_AUDIT_CHECKPOINT_S": "1"})
    try:
        seq = _checkpoint_covering(live, _records(live, 2))
        sizes = [c["size"] for c in _get(live, "/v1/audit/checkpoints").json()]
        db = sqlite3.connect(live.data_dir / "donjon.db")
        (leaf,) = db.execute("SELECT hash FROM audit_log WHERE seq = 1").fetchone()
        ts, note = db.execute(
            "SELECT ts, note FROM audit_checkpoints WHERE size = ?", (seq,)
        ).fetchone()
        damage = (
            ("UPDATE audit_log SET hash = ? WHERE seq = 1", leaf[:31]),
            ("UPDATE audit_checkpoints SET ts = ? WHERE size = ?", "noon"),
            ("UPDATE audit_checkpoints SET note = ? WHERE size = ?", note.replace("\n\n", "\n")),
        )
        for statement, value in damage:
            with db:
                db.execute(statement, (value, seq) if "size" in statement else (value,))
            proof = _get(live, "/v1/audit/proof", seq=str(seq), size=str(seq))
            consistency = _get(live, "/v1/audit/consistency", old=str(sizes[0]), new=str(seq))
            assert (proof.status_code, consistency.status_code) == (409, 409), proof.text
            with db:
                db.execute("UPDATE audit_log SET hash = ? WHERE seq = 1", (leaf,))
                db.execute(
                    "UPDATE audit_checkpoints SET ts = ?, note = ? WHERE size = ?", (ts, note, seq)
                )
        for record in (b"\xff not a record", b"[" * 100_000 + b"]" * 100_000):
            with db:
                db.execute("UPDATE audit_log SET record = ? WHERE seq = 1", (record,))
            page = _get(live, "/v1/audit", n="5", before="3")
            assert page.status_code == 200, page.text
            assert page.json()[0] == {**page.json()[0], "seq": 1, "action": "(unreadable)"}
            timeline = _get(live, "/v1/audit/timeline", n="5")
            assert timeline.status_code == 200, timeline.text
            assert timeline.json()["records"][0]["action"] == "(unreadable)"
            export = _get(live, "/v1/audit/export")
            assert export.status_code == 200 and '"seq":1,"type":"record"' in export.text
            assert export.text.endswith("\n") and f'"size":{sizes[-1]},' in export.text
        db.close()
    finally:
        live.stop()


def test_an_export_the_node_cuts_short_is_named_so(tmp_path: Path) -> None:
    """A checkpoint row edited in the database: the node has answered 200 and sent the
    header when it finds it, so it ends the stream. `donjon audit export` exits 1 saying
    the export was cut short and the file is incomplete, not that the node cannot be
    reached (it said "is `donjon serve` running?"); check-proof refuses the file."""
    live = start_node(tmp_path / "data", {"DONJON_AUDIT_CHECKPOINT_RECORDS": "1"})
    try:
        newest = _checkpoint_covering(live, _records(live, 3))
        sizes = [c["size"] for c in _get(live, "/v1/audit/checkpoints").json()]
        assert sizes[-1] == newest and len(sizes) > 2
        with sqlite3.connect(live.data_dir / "donjon.db") as db:
            (note,) = db.execute(
                "SELECT note FROM audit_checkpoints WHERE size = ?", (sizes[1],)
            ).fetchone()
            db.execute(
                "UPDATE audit_checkpoints SET note = ? WHERE size = ?",
                (note.replace("\n\n", "\n"), sizes[1]),
            )
        out = tmp_path / "export.jsonl"
        done = run_cli(live.env(), "audit", "export", "-o", str(out), check=False)
        assert done.returncode == 1, done.stdout
        assert "cut short" in done.stderr and "cannot reach" not in done.stderr, done.stderr
        assert str(out) in done.stderr and "incomplete" in done.stderr, done.stderr
        code, text = _check_offline(tmp_path, live, out)
        assert code == 1, text
    finally:
        live.stop()
