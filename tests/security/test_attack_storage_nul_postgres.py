"""A storage push whose record holds a NUL, on a node whose database is PostgreSQL: its
text columns take no NUL, so such a record reached the queue's INSERT and failed there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import donjon_env, run_cli, serve_initialised
from postgres_support import PostgresServer, postgres_server
from trigger_node import deploy_echo, runs, set_secret
from trigger_sweep import notification, post_raw, record

__all__ = ["postgres_server"]  # the fixture, used by name

pytestmark = pytest.mark.slow


def test_a_pushed_record_holding_a_nul_is_refused_as_malformed_not_a_503(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A key, bucket, event name or sequencer holding a NUL (raw, or `%00` in the encoded
    key) was a 503 ("the queue's database failed: DataError") for the whole notification:
    the store sent it again and again, and none of its records ran. It is a 400 saying
    which field, as a lone surrogate is, and nothing of it runs."""
    database = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    data = tmp_path / "node"
    done = run_cli({**donjon_env(data), "DONJON_DATABASE_URL": database}, "init", "--json")
    node = serve_initialised(
        data, json.loads(done.stdout)["admin_key"], {"DONJON_DATABASE_URL": database}
    )
    try:
        set_secret(node, "nul-store", "nul-bearer")
        trigger = "  - s3: {source: push, path: /nul, secret: nul-store}\n"
        deploy_echo(node, tmp_path / "fns", "nul-s3", trigger)
        auth = [("authorization", "Bearer nul-bearer")]
        fine = record("fine.jpg")
        hostile = {
            "an encoded NUL in the key": record("a%00b"),
            "a NUL in the key": record("a\x00b"),
            "a NUL in the bucket": record("k", bucket="b\x00"),
            "a NUL in the sequencer": record("k", sequencer="1\x00"),
            "a NUL in the event name": {**record("k"), "eventName": "ObjectCreated:\x00"},
        }
        for what, bad in hostile.items():
            reply = post_raw(node, "/hooks/nul", auth, notification(fine, bad))
            assert reply.status == 400, (what, reply.status, reply.text)
            assert "NUL" in reply.problem()["detail"], what
        assert runs(node, "nul-s3") == 0
        assert post_raw(node, "/hooks/nul", auth, notification(fine)).status == 202
    finally:
        node.stop()
