"""An anonymous caller learns nothing of the node's Redis when quotas cannot be checked.

The node's shared limits store is unreachable (here: killed) and the function has a
daily quota, so its calls are refused
(503, fail closed). The refusal told every caller, a public trigger's anonymous ones
too, the Redis URL (password masked, host and port not) and the client's connect
error: the address of an internal service, handed to anyone on the internet. The
operator has it in the log, the `limits.unavailable` audit record and alert.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import FUNCTIONS, LiveNode, start_node
from redis_support import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def redis_down_node(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveNode, RedisServer]]:
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        live = start_node(
            tmp_path_factory.mktemp("node"), {"DONJON_REDIS_URL": redis.url}, fresh=True
        )
        try:
            yield live, redis
        finally:
            live.stop()
    finally:
        redis.stop()


def test_cannot_learn_the_redis_address_from_a_quota_refusal(
    redis_down_node: tuple[LiveNode, RedisServer],
) -> None:
    """Redis killed under a node whose function has a quota: a public trigger's caller and
    a keyed caller get a clear 503 with Retry-After that names no URL, host, port or client
    error; the audit record still names the store, for the operator."""
    live, redis = redis_down_node
    live.deploy(FUNCTIONS / "web")
    with live.client() as c:
        r = c.put("/v1/quotas/function:web", json={"invocations": 100})
        assert r.status_code == 201, r.text
    with live.client("") as anonymous:
        assert anonymous.post("/fn/web/public", content=b"{}").status_code == 200
        redis.kill()
        public = anonymous.post("/fn/web/public", content=b"{}")
    with live.client() as c:
        keyed = c.post("/fn/web/private", content=b"{}")
    for answer in (public, keyed):
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        body = answer.json()
        assert "quota" in body["detail"] and "unavailable" in body["detail"], body
        for leak in (str(redis.port), "127.0.0.1", "redis://", "Error", "onnect"):
            assert leak not in answer.text, (leak, answer.text)
    log = (live.data_dir / "serve.log").read_text()
    assert "limits risk: Redis answers clients without a password" in log  # said at start
    with live.client() as c:
        records = c.get("/v1/audit", params={"n": 500}).json()
    (down,) = [r for r in records if r["action"] == "limits.unavailable"]
    assert f"127.0.0.1:{redis.port}" in str(down["detail"]["store"])
