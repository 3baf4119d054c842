"""The donjon.yaml contract as frozen pydantic models.

Unknown fields are errors everywhere: a typo in a security setting must not be
silently ignored.
"""

from __future__ import annotations

import functools
import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal, NewType

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from donjon.egress.grants import EgressGrantError, parse_grant_syntax
from donjon.errors import Error
from donjon.manifest.delivery import Destinations, Retry
from donjon.manifest.event_triggers import (
    PostgresSpec,
    PostgresTrigger,
    S3Spec,
    S3Trigger,
    WebhookSpec,
    WebhookTrigger,
    check_path,
)
from donjon.manifest.input_validator import check_patterns
from donjon.manifest.policies import RuntimePolicies
from donjon.manifest.schema_limits import check_expansion, check_size
from donjon.manifest.sizes import DEFAULT_BODY_BYTES, parse_size
from donjon.triggers.cron import CronError, CronExpression

__all__ = [
    "MAX_SCHEDULES",
    "Destinations",
    "FunctionName",
    "HttpTrigger",
    "Isolation",
    "Limits",
    "Manifest",
    "ManifestError",
    "Permissions",
    "PostgresSpec",
    "PostgresTrigger",
    "Rate",
    "Retry",
    "RuntimePolicies",
    "S3Spec",
    "S3Trigger",
    "ScheduleTrigger",
    "WebhookSpec",
    "WebhookTrigger",
]

FunctionName = NewType("FunctionName", str)

NAME_RE = r"^[a-z][a-z0-9-]{0,62}$"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_HANDLER_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*\.{_IDENT}$")
_RATE_RE = re.compile(r"^([1-9][0-9]*)/(second|minute|hour|day)$")
_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class ManifestError(Error):
    """donjon.yaml is missing, malformed or invalid."""

    title = "Invalid manifest"

    def __init__(
        self,
        message: str,
        *,
        problems: list[str] | None = None,
        hint: str = "",
        summary: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []
        self._summary = summary

    def summary(self) -> str:
        """Where the manifest is refused (its fields, or the YAML's line and column),
        without the validator's words, which may quote the manifest's values."""
        return self._summary or self.message


@functools.lru_cache(maxsize=64)
def _schema_problem(canonical: str) -> str:
    """Why the input_schema (canonical JSON of at most 16 KiB) is refused, or "".

    Cached: checking against the meta-schema costs about a millisecond per subschema,
    and a deployed manifest is validated again when the node loads it."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    schema = json.loads(canonical)
    try:
        check_expansion(schema)  # $ref fan-out: before jsonschema does any work
        check_patterns(schema)  # linear-time regular expressions only
        Draft202012Validator.check_schema(schema)
    except ValueError as e:
        return str(e)
    except SchemaError as e:
        return f"not a valid JSON Schema: {e.message}"
    return ""


LogLevel = Literal["TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Isolation(StrEnum):
    """How invocations of one function share processes."""

    INVOCATION = "invocation"
    WARM = "warm"


class Rate(_Strict):
    """A rate such as ``100/minute``."""

    count: int
    period_s: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        m = _RATE_RE.fullmatch(text)
        if not m:
            raise ValueError(
                f"rate must look like '100/minute' (second|minute|hour|day), got {text!r}"
            )
        return cls(count=int(m.group(1)), period_s=_PERIODS[m.group(2)])


class Permissions(_Strict):
    """Everything not listed is denied."""

    secrets: tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")], ...] = ()
    egress: tuple[str, ...] = ()
    invoke: tuple[Annotated[str, Field(pattern=NAME_RE)], ...] = ()

    @field_validator("egress")
    @classmethod
    def _egress(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # The syntax here; which addresses the node opens is decided at deploy (the
        # gate's `egress_refusals`), so a stored manifest loads whatever the settings.
        for item in value:
            try:
                parse_grant_syntax(item)
            except EgressGrantError as e:
                raise ValueError(f"{e.message} ({e.hint})") from None
        return value


class HttpSpec(_Strict):
    path: str
    methods: tuple[str, ...] = ("POST",)
    auth: Literal["key", "jwt", "public"] = "key"
    #: None: Donjon's event and response. apigw-v1 / apigw-v2: API Gateway's proxy event
    #: (payload format 1.0 / 2.0) in, its proxy response out (gateway/apigw.py).
    event_format: Literal["apigw-v1", "apigw-v2"] | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_path(value)

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("methods must name at least one HTTP method")
        upper = tuple(m.upper() for m in value)
        bad = [m for m in upper if m not in _METHODS]
        if bad:
            raise ValueError(f"unknown HTTP methods {bad}; use {sorted(_METHODS)}")
        return upper


class HttpTrigger(_Strict):
    http: HttpSpec


class ScheduleTrigger(_Strict):
    schedule: str

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronExpression.parse(value).check_fires()
        except CronError as e:
            raise ValueError(
                f"schedule must be a 5-field cron expression or a macro such as @daily: {e}"
            ) from e
        return value


_KINDS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("http", HttpTrigger),
    ("schedule", ScheduleTrigger),
    ("webhook", WebhookTrigger),
    ("s3", S3Trigger),
    ("postgres", PostgresTrigger),
)


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kinds = [k for k, _ in _KINDS if k in value]
        return kinds[0] if len(kinds) == 1 else None
    for kind, model in _KINDS:
        if isinstance(value, model):
            return kind
    return None


Trigger = Annotated[
    Annotated[HttpTrigger, Tag("http")]
    | Annotated[ScheduleTrigger, Tag("schedule")]
    | Annotated[WebhookTrigger, Tag("webhook")]
    | Annotated[S3Trigger, Tag("s3")]
    | Annotated[PostgresTrigger, Tag("postgres")],
    Discriminator(
        _trigger_kind,
        custom_error_type="trigger_kind",
        custom_error_message=(
            "a trigger has exactly one of the keys http, schedule, webhook, s3, postgres"
        ),
    ),
]


#: The most schedule triggers a manifest may hold: one expression's lists and ranges name
#: any set of minutes, and a minute calls the function once however many match; each
#: parsed is kept in the node's memory (a few KB) for as long as the function is deployed.
MAX_SCHEDULES = 16


#: A function's `limits.queued` when its manifest sets none, and the most it may set.
DEFAULT_QUEUED = 10_000
MAX_QUEUED = 1_000_000


class Limits(_Strict):
    rate: str | None = None
    #: The rate's bucket size (calls at once after a quiet spell); None: the rate's count.
    # strict: a number, not `true` (read as 1) or "5", as queued below.
    burst: int | None = Field(default=None, ge=1, le=1_000_000_000, strict=True)
    concurrency: int = Field(default=8, ge=1, le=256, strict=True)
    #: The largest request body (event) a call of this function takes: ``512KiB``,
    #: ``2MiB`` (manifest/sizes.py); None: 1 MiB. Never over the node's maximum
    #: (DONJON_MAX_BODY_BYTES): a manifest asking more is refused at deploy.
    body: str | None = None
    #: The most async invocations of this function pending in the durable queue at once
    #: (queued, running or waiting for a retry; not dead-lettered, not finished). Past it
    #: an enqueue is refused (QueueFull, 503) and nothing is queued (docs/limits.md).
    queued: int = Field(default=DEFAULT_QUEUED, ge=1, le=MAX_QUEUED, strict=True)

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            Rate.parse(value)
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value

    @property
    def body_bytes(self) -> int:
        """The body limit in bytes (`body`, else 1 MiB)."""
        return parse_size(self.body) if self.body is not None else DEFAULT_BODY_BYTES

    @property
    def parsed_rate(self) -> Rate | None:
        return Rate.parse(self.rate) if self.rate else None


class Manifest(_Strict):
    """A validated donjon.yaml."""

    name: Annotated[str, Field(pattern=NAME_RE)]
    handler: str
    # strict: a number, not `timeout_s: true` (read as 1 s) or "10".
    memory_mb: int = Field(default=128, ge=16, le=8192, strict=True)
    timeout_s: float = Field(default=10.0, gt=0, le=900, strict=True)
    isolation: Isolation = Isolation.INVOCATION
    permissions: Permissions = Permissions()
    #: Runtime policies (manifest/policies.py): child processes blocked by default.
    policies: RuntimePolicies = RuntimePolicies()
    triggers: tuple[Trigger, ...] = ()
    limits: Limits = Limits()
    input_schema: dict[str, Any] | None = None
    #: How async deliveries (async invokes, webhooks, storage and database events) are
    #: retried, and where their outcomes go (manifest/delivery.py).
    retry: Retry = Retry()
    destinations: Destinations = Destinations()
    #: The root logger's level, as Lambda's ApplicationLogLevel; None: Python's (WARNING).
    log_level: LogLevel | None = None

    @field_validator("triggers", mode="before")
    @classmethod
    def _few_schedules(cls, value: Any) -> Any:
        """Counted before any is parsed: thousands fit in a manifest, ~6 KB each once parsed."""
        if isinstance(value, list | tuple):
            count = sum(1 for t in value if isinstance(t, dict) and "schedule" in t)
            if count > MAX_SCHEDULES:
                raise ValueError(
                    f"{count} schedule triggers; a function has at most {MAX_SCHEDULES} "
                    "schedule triggers (one expression's lists name any minutes: '0,30 9-17 * * *')"
                )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("handler")
    @classmethod
    def _handler(cls, value: str) -> str:
        if not _HANDLER_RE.fullmatch(value):
            raise ValueError(f"handler must be module.function (like main.handler), got {value!r}")
        return value

    @field_validator("input_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        check_size(value)  # before anything walks it whole, json.dumps included
        problem = _schema_problem(json.dumps(value, sort_keys=True))
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _unique_routes(self) -> Manifest:
        seen: set[tuple[str, str]] = set()
        for trig in self.triggers:
            if isinstance(trig, HttpTrigger):
                for method in trig.http.methods:
                    key = (trig.http.path, method)
                    if key in seen:
                        raise ValueError(f"two http triggers for {method} {trig.http.path}")
                    seen.add(key)
        hooks = [w.path for w in self.webhooks]
        hooks += [s.path for s in self.storage_events if s.path is not None]
        for path in hooks:
            if hooks.count(path) > 1:
                raise ValueError(f"two triggers for POST /hooks{path}")
        return self

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def function(self) -> str:
        return self.handler.rsplit(".", 1)[1]

    @property
    def http_triggers(self) -> tuple[HttpSpec, ...]:
        return tuple(t.http for t in self.triggers if isinstance(t, HttpTrigger))

    @property
    def schedules(self) -> tuple[str, ...]:
        return tuple(t.schedule for t in self.triggers if isinstance(t, ScheduleTrigger))

    @property
    def webhooks(self) -> tuple[WebhookSpec, ...]:
        return tuple(t.webhook for t in self.triggers if isinstance(t, WebhookTrigger))

    @property
    def storage_events(self) -> tuple[S3Spec, ...]:
        return tuple(t.s3 for t in self.triggers if isinstance(t, S3Trigger))

    @property
    def database_events(self) -> tuple[PostgresSpec, ...]:
        return tuple(t.postgres for t in self.triggers if isinstance(t, PostgresTrigger))
