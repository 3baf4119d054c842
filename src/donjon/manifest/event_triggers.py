"""The manifest's event trigger kinds beyond http and schedule: signed webhooks,
storage events and database events. Each names a vault secret: the trigger's
credentials are the platform's, never given to the function."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "PostgresSpec",
    "PostgresTrigger",
    "S3Spec",
    "S3Trigger",
    "WebhookSpec",
    "WebhookTrigger",
    "check_path",
]

_VAULT_NAME_RE = r"^[a-z][a-z0-9_-]{0,62}$"
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")
_CHANNEL_RE = r"^[a-z_][a-z0-9_]{0,62}$"
S3_EVENTS = frozenset(
    {
        "s3:ObjectCreated:*",
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
        "s3:ObjectRemoved:*",
        "s3:ObjectRemoved:Delete",
        "s3:ObjectRemoved:DeleteMarkerCreated",
    }
)

SecretName = Annotated[str, Field(pattern=_VAULT_NAME_RE)]


def check_path(value: str) -> str:
    """An absolute URL path like /resize, without `//` or `..` segments; no trailing `/`."""
    if not _PATH_RE.fullmatch(value) or "//" in value or "/../" in f"{value}/":
        raise ValueError(f"path must be an absolute URL path like /resize, got {value!r}")
    return value.rstrip("/") or "/"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookSpec(_Strict):
    """`webhook: {path: /github, scheme: github, secret: gh-hook}`: served at
    ``POST /hooks{path}``; each delivery's signature is checked against the secret's
    active versions before anything is parsed. No secret: refused at deploy unless
    ``--unsafe-allow-public``."""

    path: str
    scheme: Literal["github", "stripe", "standard"]
    secret: SecretName | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_path(value)


class WebhookTrigger(_Strict):
    webhook: WebhookSpec


class S3Spec(_Strict):
    """`s3: {...}`: S3 event notifications, one async invocation per record.

    - ``source: sqs``: polled from an SQS queue; `secret` holds JSON
      ``{"queue_url", "region", "access_key_id", "secret_access_key"}`` and optionally
      ``"endpoint_url"`` (an S3-compatible store's).
    - ``source: push``: POSTed by the store (MinIO, Ceph) to ``/hooks{path}`` with
      ``Authorization: Bearer <the secret's value>``.

    Records are kept when their event matches `events`, and the object key starts
    with `prefix` and ends with `suffix` (and the bucket is `bucket`, when set).
    """

    source: Literal["sqs", "push"]
    secret: SecretName | None = None
    path: str | None = None
    bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    events: tuple[str, ...] = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
    prefix: str = Field(default="", max_length=1024)
    suffix: str = Field(default="", max_length=1024)

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [e for e in value if e not in S3_EVENTS]
        if bad or not value:
            raise ValueError(f"events must be among {sorted(S3_EVENTS)}, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _path_for_push(self) -> S3Spec:
        if self.source == "push" and self.path is None:
            raise ValueError("an s3 trigger with source: push needs a path (served under /hooks)")
        if self.source == "sqs" and self.path is not None:
            raise ValueError("an s3 trigger with source: sqs takes no path")
        if self.source == "sqs" and self.secret is None:
            raise ValueError(
                "an s3 trigger with source: sqs needs a secret (the vault secret holding the "
                "queue's settings: docs/triggers.md)"
            )
        if self.path is not None:
            object.__setattr__(self, "path", check_path(self.path))
        return self


class S3Trigger(_Strict):
    s3: S3Spec


class PostgresSpec(_Strict):
    """`postgres: {dsn: orders-db, channel: orders}`: LISTEN on `channel`; each
    NOTIFY's payload is one invocation's event. `dsn` names the vault secret holding
    the connection string."""

    dsn: SecretName
    channel: str = Field(pattern=_CHANNEL_RE)


class PostgresTrigger(_Strict):
    postgres: PostgresSpec
