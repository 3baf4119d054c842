"""Which triggers accept unauthenticated events, and which secrets triggers name."""

from __future__ import annotations

from donjon.manifest import parse_manifest
from donjon.manifest.exposure import public_triggers, trigger_secrets

HEAD = "name: f\nhandler: main.handler\n"


def test_open_triggers_are_named() -> None:
    """A webhook or s3 push without a secret and a public route without a rate are named."""
    manifest = parse_manifest(
        HEAD + "triggers:\n"
        "  - webhook: {path: /gh, scheme: github}\n"
        "  - s3: {source: push, path: /minio}\n"
        "  - http: {path: /pub, methods: [GET], auth: public}\n"
        "  - http: {path: /key, methods: [GET], auth: key}\n",
        source="donjon.yaml",
    )
    found = public_triggers(manifest)
    assert len(found) == 3
    assert any("webhook /gh" in f for f in found)
    assert any("s3 push trigger /minio" in f for f in found)
    assert any("http trigger /pub" in f for f in found)


def test_authenticated_triggers_pass() -> None:
    """Secrets on webhooks and pushes, and a rate on public routes, leave nothing open."""
    manifest = parse_manifest(
        HEAD + "limits: {rate: 10/minute}\ntriggers:\n"
        "  - webhook: {path: /gh, scheme: github, secret: gh-hook}\n"
        "  - s3: {source: push, path: /minio, secret: minio-token}\n"
        "  - s3: {source: sqs, secret: sqs-creds}\n"
        "  - postgres: {dsn: orders-db, channel: orders}\n"
        "  - http: {path: /pub, methods: [GET], auth: public}\n",
        source="donjon.yaml",
    )
    assert public_triggers(manifest) == []
    assert trigger_secrets(manifest) == ["gh-hook", "minio-token", "orders-db", "sqs-creds"]
