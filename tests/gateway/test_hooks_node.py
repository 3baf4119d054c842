"""POST /hooks/{path} on a real node: deliveries signed by the standardwebhooks library,
and by hand for GitHub and Stripe, are answered 202 and run the function with their
event; deploys of triggers open to anyone are refused unless an admin says
--unsafe-allow-public."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from async_support import wait_for
from harness import LiveNode, run_cli, start_node
from triggers.webhook_signing import github_headers, standard_headers, stripe_headers
from utc_day import clear_of_utc_midnight
from webhook_support import (
    HANDLER,
    HOOKS,
    audit,
    deliveries,
    deploy_hooks,
    post_hook,
    wait_for_delivery,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, dict[str, str]]]:
    live = start_node(tmp_path_factory.mktemp("hooks-node"))
    try:
        yield live, deploy_hooks(live, tmp_path_factory.mktemp("hooks"))
    finally:
        live.stop()


def test_standard_delivery_runs_the_function(hooked: tuple[LiveNode, dict[str, str]]) -> None:
    """A Standard Webhooks delivery gets 202 with its async invocation's id; the function
    sees the parsed body, the delivery id and type; the call is audited with trigger webhook."""
    node, keys = hooked
    body = json.dumps({"type": "user.created", "data": {"id": 42}}).encode()
    msg_id = f"msg_{secrets.token_hex(6)}"
    r = post_hook(node, "/std", body, standard_headers(keys["standard"], body, msg_id))
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["function"] == "hook-std" and answer["delivery_id"] == msg_id
    seen = wait_for_delivery(node, "hook-std", msg_id)
    assert seen["body"] == {"type": "user.created", "data": {"id": 42}}
    assert seen["event_type"] == "user.created"
    assert "webhook-signature" not in seen["trigger_headers"]
    ran = wait_for(node, answer["id"])  # the async invocation the delivery became
    assert (ran["status"], ran["trigger"]) == ("succeeded", "webhook")
    assert seen["request_id"] == ran["request_id"]
    invoked = [
        r
        for r in audit(node)
        if r["action"] == "function.invoke" and r["detail"].get("request_id") == ran["request_id"]
    ]
    assert invoked and invoked[0]["detail"]["trigger"] == "webhook"
    assert invoked[0]["actor"] == "webhook"


def _own_secret(node: LiveNode, name: str, value: str) -> None:
    """A hook's secret of its own (a hook secret authenticates one path), with `value`."""
    with node.client() as c:
        assert c.post(f"/v1/secrets/{name}", json={"value": value}).status_code == 201


def test_a_delivery_spends_the_functions_quota_once(
    hooked: tuple[LiveNode, dict[str, str]], tmp_path: Path
) -> None:
    """A function with a quota of 2 invocations a day takes two deliveries, both run: the
    admission a delivery passed at /hooks stands for its first attempt's."""
    clear_of_utc_midnight()
    node, keys = hooked
    _own_secret(node, "hook-once-key", keys["standard"])
    fn = tmp_path / "hook-once"
    fn.mkdir()
    (fn / "main.py").write_text(HANDLER)
    (fn / "donjon.yaml").write_text(
        "name: hook-once\nhandler: main.handler\nmemory_mb: 64\n"
        "limits: {rate: 600/minute}\n"
        "triggers:\n  - webhook: {path: /once, scheme: standard, secret: hook-once-key}\n"
    )
    node.deploy(fn)
    with node.client() as c:
        r = c.put("/v1/quotas/function:hook-once", json={"invocations": 2})
        assert r.status_code == 201, r.text
    for _ in range(2):
        body = json.dumps({"type": "tick", "n": secrets.token_hex(4)}).encode()
        msg_id = f"msg_{secrets.token_hex(6)}"
        r = post_hook(node, "/once", body, standard_headers(keys["standard"], body, msg_id))
        assert r.status_code == 202, r.text
        ran = wait_for(node, r.json()["id"])
        assert (ran["status"], ran["attempts"]) == ("succeeded", 1), ran
    body = json.dumps({"type": "tick", "n": "third"}).encode()
    r = post_hook(node, "/once", body, standard_headers(keys["standard"], body, "msg_third"))
    assert r.status_code == 429, r.text  # the day's two are spent: refused at the edge


def test_a_delivery_the_input_schema_refuses_is_422_and_its_resend_is_taken(
    hooked: tuple[LiveNode, dict[str, str]], tmp_path: Path
) -> None:
    """A function's input_schema applies to the event a delivery makes (what its handler
    is given): a delivery whose body it refuses is a 422 naming the field, never queued
    nor run; the same delivery id sent again, corrected, is taken (its replay claim was
    given back) and runs once."""
    node, keys = hooked
    _own_secret(node, "hook-typed-key", keys["standard"])
    fn = tmp_path / "hook-typed"
    fn.mkdir()
    (fn / "main.py").write_text(HANDLER)
    (fn / "donjon.yaml").write_text(
        "name: hook-typed\nhandler: main.handler\nmemory_mb: 64\n"
        "limits: {rate: 600/minute}\n"
        "input_schema:\n  type: object\n  required: [body]\n  properties:\n"
        "    body:\n      type: object\n      required: [amount]\n"
        "      properties: {amount: {type: integer}}\n"
        "triggers:\n  - webhook: {path: /typed, scheme: standard, secret: hook-typed-key}\n"
    )
    node.deploy(fn)
    msg_id = f"msg_{secrets.token_hex(6)}"
    bad = json.dumps({"amount": "1; DROP TABLE"}).encode()
    r = post_hook(node, "/typed", bad, standard_headers(keys["standard"], bad, msg_id))
    assert r.status_code == 422, r.text
    assert "/body/amount" in r.json()["detail"]
    good = json.dumps({"amount": 7}).encode()
    r = post_hook(node, "/typed", good, standard_headers(keys["standard"], good, msg_id))
    assert r.status_code == 202, r.text
    assert wait_for(node, r.json()["id"])["status"] == "succeeded"
    ran = deliveries(node, "hook-typed")
    assert [d["body"] for d in ran] == [{"amount": 7}], ran


def test_github_delivery_runs_the_function(hooked: tuple[LiveNode, dict[str, str]]) -> None:
    """A GitHub delivery (X-Hub-Signature-256) runs with its X-GitHub-Delivery and event."""
    node, keys = hooked
    body = json.dumps({"ref": "refs/heads/main", "commits": []}).encode()
    delivery = secrets.token_hex(8)
    r = post_hook(node, "/gh", body, github_headers(keys["github"], body, delivery, "push"))
    assert r.status_code == 202, r.text
    seen = wait_for_delivery(node, "hook-gh", delivery)
    assert seen["event_type"] == "push" and seen["body"]["ref"] == "refs/heads/main"
    assert "x-github-event" in seen["trigger_headers"]


def test_stripe_delivery_runs_the_function(hooked: tuple[LiveNode, dict[str, str]]) -> None:
    """A Stripe delivery (Stripe-Signature t=,v1=) runs with the event's id and type."""
    node, keys = hooked
    event_id = f"evt_{secrets.token_hex(6)}"
    body = json.dumps({"id": event_id, "type": "invoice.paid", "data": {}}).encode()
    r = post_hook(node, "/stripe", body, stripe_headers(keys["stripe"], body))
    assert r.status_code == 202, r.text
    seen = wait_for_delivery(node, "hook-stripe", event_id)
    assert seen["event_type"] == "invoice.paid"


def test_rotated_secret_accepted_during_grace(hooked: tuple[LiveNode, dict[str, str]]) -> None:
    """After `secret rotate`, deliveries signed with the new and the previous secret pass."""
    node, keys = hooked
    new = "gh-rotated-" + secrets.token_hex(8)
    with node.client() as c:
        r = c.post(f"/v1/secrets/{HOOKS['github'][2]}/versions", json={"value": new})
        assert r.status_code in (200, 201), r.text
    for secret in (new, keys["github"]):
        body = json.dumps({"zen": "rotate", "with": secret[-6:]}).encode()
        delivery = secrets.token_hex(8)
        r = post_hook(node, "/gh", body, github_headers(secret, body, delivery, "ping"))
        assert r.status_code == 202, r.text
        wait_for_delivery(node, "hook-gh", delivery)


def test_unknown_path_is_404(hooked: tuple[LiveNode, dict[str, str]]) -> None:
    """A path no webhook serves is a 404 problem; a GET on /hooks is not allowed."""
    node, keys = hooked
    body = b"{}"
    r = post_hook(node, "/nowhere", body, standard_headers(keys["standard"], body))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    with node.client("") as c:
        assert c.get("/hooks/std").status_code == 405


def test_ls_shows_webhook_triggers(hooked: tuple[LiveNode, dict[str, str]]) -> None:
    """`donjon ls` names each function's trigger kinds and hook paths."""
    node, _ = hooked
    listed = run_cli(node.env(), "ls").stdout
    assert "TRIGGERS" in listed and "webhook:/hooks/std" in listed


def _fn(root: Path, name: str, triggers: str, limits: str = "") -> Path:
    root.mkdir(parents=True)
    (root / "main.py").write_text("def handler(event, context):\n    return event\n")
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n{limits}"
        f"triggers:\n{triggers}"
    )
    return root


@pytest.mark.parametrize(
    ("name", "triggers", "limits", "said"),
    [
        (
            "open-hook",
            "  - webhook: {path: /open, scheme: github}\n",
            "",
            "webhook /open has no secret",
        ),
        (
            "open-route",
            "  - http: {path: /open-route, methods: [GET], auth: public}\n",
            "",
            "auth: public without limits.rate",
        ),
        (
            "open-push",
            "  - s3: {source: push, path: /open-push}\n",
            "",
            "s3 push trigger /open-push has no secret",
        ),
    ],
)
def test_open_triggers_refused_at_deploy(
    hooked: tuple[LiveNode, dict[str, str]],
    tmp_path: Path,
    name: str,
    triggers: str,
    limits: str,
    said: str,
) -> None:
    """A trigger anyone could fire is refused (422, audited), and nothing is deployed."""
    node, _ = hooked
    fn = _fn(tmp_path / name, name, triggers, limits)
    done = run_cli(node.env(), "deploy", str(fn), check=False)
    assert done.returncode == 1 and said in done.stderr
    assert "--unsafe-allow-public" in done.stderr
    with node.client() as c:
        assert c.get(f"/v1/functions/{name}").status_code == 404
    assert any(
        r["action"] == "function.deploy"
        and r["outcome"] == "rejected"
        and said in r["detail"]["reason"]
        for r in audit(node)
    )


def test_missing_trigger_secret_refused(
    hooked: tuple[LiveNode, dict[str, str]], tmp_path: Path
) -> None:
    """A webhook naming a secret the vault lacks is refused at deploy, naming it."""
    node, _ = hooked
    fn = _fn(
        tmp_path / "f",
        "hook-nosecret",
        "  - webhook: {path: /ns, scheme: standard, secret: nope}\n",
    )
    done = run_cli(node.env(), "deploy", str(fn), check=False)
    assert done.returncode == 1 and "nope" in done.stderr and "not in the vault" in done.stderr


def test_unsafe_allow_public_is_admin_only_audited_and_warned(
    hooked: tuple[LiveNode, dict[str, str]], tmp_path: Path
) -> None:
    """--unsafe-allow-public is refused to developers (audited); an admin's deploy goes
    through with a warning, recorded in the deploy's audit record."""
    node, _ = hooked
    fn = _fn(tmp_path / "f", "hook-open", "  - webhook: {path: /wide-open, scheme: standard}\n")
    developer = node.create_key("hooks-dev", "developer")["key"]
    refused = run_cli(node.env(developer), "deploy", str(fn), "--unsafe-allow-public", check=False)
    assert refused.returncode == 1 and "403" in refused.stderr
    done = run_cli(node.env(), "deploy", str(fn), "--unsafe-allow-public", "--json")
    assert "UNSAFE" in done.stderr and "webhook /wide-open has no secret" in done.stderr
    records = audit(node)
    assert any(
        r["action"] == "authz.denied" and "unsafe_allow_public" in str(r["detail"]) for r in records
    )
    deployed = [
        r for r in records if r["action"] == "function.deploy" and r["target"] == "hook-open@1"
    ]
    assert deployed and deployed[-1]["detail"]["unsafe_allow_public"] is True
    # Deployed open: an unsigned delivery runs (that is what the flag allowed).
    r = post_hook(node, "/wide-open", b'{"a": 1}', {"webhook-id": "msg_open"})
    assert r.status_code == 202, r.text


def test_hook_path_taken_by_another_function_refused(
    hooked: tuple[LiveNode, dict[str, str]], tmp_path: Path
) -> None:
    """Two functions may not serve the same /hooks path: the second deploy is refused."""
    node, _ = hooked
    fn = _fn(
        tmp_path / "f",
        "hook-thief",
        f"  - webhook: {{path: /std, scheme: standard, secret: {HOOKS['standard'][2]}}}\n",
    )
    done = run_cli(node.env(), "deploy", str(fn), check=False)
    assert done.returncode == 1 and "POST /hooks/std belongs to hook-std" in done.stderr
