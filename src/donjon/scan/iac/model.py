"""One model of a serverless app, whatever template it was written in.

A loader (`donjon.scan.iac.interface.TemplateFormat`) reads SAM/CloudFormation,
Serverless Framework or Terraform, resolves what it can, and fills this model; the
rules (`donjon.scan.iac.checks`) read only the model, never a format. The loader
decides what a missing property means in its format (SAM's `Auth` absent is no
authoriser; a Terraform bucket without `aws_s3_bucket_public_access_block` has
none) and writes the effective value, so a rule needs no format knowledge.

Every property is a `Val`: the values it may take, the expressions the resolver
could not resolve, and where it is written. Rules treat an unresolved value as
possibly bad (reported at low confidence, naming the expression), never as safe;
a value from one branch of a condition (`Fn::If`) is `conditional`, reported as
"may".
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from donjon.scan.model import Location

__all__ = [
    "App",
    "Bucket",
    "Cloud",
    "Condition",
    "Effect",
    "EnvVar",
    "Function",
    "HttpApi",
    "LogGroup",
    "Policy",
    "Queue",
    "Statement",
    "TemplateKind",
    "Trigger",
    "TriggerKind",
    "Unresolved",
    "UserPool",
    "Val",
    "Where",
]

T = TypeVar("T")


class TemplateKind(enum.Enum):
    """The format an app was read from."""

    SAM = "sam"
    CLOUDFORMATION = "cloudformation"
    SERVERLESS = "serverless"
    TERRAFORM = "terraform"


class Cloud(enum.Enum):
    AWS = "aws"
    AZURE = "azure"
    GCP = "gcp"


@dataclass(frozen=True)
class Where:
    """Where a resource is declared: the template's path (relative to the scan root), the
    line, and the resource's logical id (CloudFormation/SAM), function key (Serverless)
    or address (Terraform: ``aws_lambda_function.api``)."""

    path: str
    line: int
    resource: str

    def at(self, line: int) -> Where:
        """The same resource, pointing at one of its properties' line (0 keeps this one)."""
        return Where(self.path, line or self.line, self.resource)

    def location(self, line: int = 0) -> Location:
        """A finding's location: the property's line (0: the resource's), with the resource."""
        return Location(self.path, line or self.line, 0, self.resource)


@dataclass(frozen=True)
class Unresolved:
    """A value the resolver could not know: the expression as written, and why."""

    expression: str
    reason: str

    def __str__(self) -> str:
        return f"{self.expression} ({self.reason})"


@dataclass(frozen=True)
class Val(Generic[T]):
    """A property's value as resolved.

    `known` holds every value the property may take (one, or one per branch of a
    condition), `unresolved` what could not be resolved. Both empty: the property is
    absent (and the loader found no default to apply). `line` is the property's own
    line (0 when absent: use the resource's).
    """

    known: tuple[T, ...] = ()
    unresolved: tuple[Unresolved, ...] = ()
    line: int = 0
    #: The value holds only under a condition (``Fn::If``, a ``${opt:}`` default...).
    conditional: bool = False

    @classmethod
    def of(cls, value: T, line: int = 0, *, conditional: bool = False) -> Val[T]:
        return cls((value,), (), line, conditional)

    @classmethod
    def unknown(cls, expression: str, reason: str, line: int = 0) -> Val[T]:
        return cls((), (Unresolved(expression, reason),), line)

    @property
    def present(self) -> bool:
        return bool(self.known or self.unresolved)

    @property
    def resolved(self) -> bool:
        """Every value it may take is known."""
        return not self.unresolved

    @property
    def one(self) -> T | None:
        """The value, when there is exactly one and nothing unresolved."""
        return self.known[0] if len(self.known) == 1 and not self.unresolved else None

    def any(self, test: Callable[[T], bool]) -> bool:
        """Some known value passes `test`."""
        return any(test(v) for v in self.known)

    def all(self, test: Callable[[T], bool]) -> bool:
        """The property is present, fully resolved, and every value passes `test`."""
        return self.present and self.resolved and all(test(v) for v in self.known)


class Effect(enum.Enum):
    ALLOW = "Allow"
    DENY = "Deny"


@dataclass(frozen=True)
class Condition:
    """One IAM condition: operator (``StringEquals``), key (``aws:SourceArn``), values."""

    operator: str
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Statement:
    """One IAM statement (identity or resource policy), resolved.

    Actions, resources and principals are kept as written after resolution
    (``s3:Get*``, ``arn:aws:s3:::b/*``, ``*``); a part that could not be resolved is
    in `unresolved` and the statement's meaning is then only partly known.
    """

    effect: Effect
    line: int
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    #: Resource policies: ``*`` (anyone), an account/ARN, or ``service:s3.amazonaws.com``.
    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    conditional: bool = False
    unresolved: tuple[Unresolved, ...] = ()
    #: The file the statement is written in, when it may not be its resource's own (a
    #: Terraform module spans files: a role policy in iam.tf, the function in main.tf).
    path: str = ""


@dataclass(frozen=True)
class Policy:
    """A policy attached to a function's role: inline statements, a managed policy by
    name or ARN (`managed`, with `statements` filled when its content is known, such as
    ``AdministratorAccess``), or a SAM policy template expanded (`template`)."""

    name: str
    line: int
    statements: tuple[Statement, ...] = ()
    managed: str = ""
    template: str = ""
    conditional: bool = False
    unresolved: tuple[Unresolved, ...] = ()
    #: The file the policy is written in, when it may not be the function's (Terraform).
    path: str = ""


class TriggerKind(enum.Enum):
    REST_API = "rest-api"  # API Gateway v1 (SAM Api, serverless `http`)
    HTTP_API = "http-api"  # API Gateway v2 (SAM HttpApi, serverless `httpApi`)
    FUNCTION_URL = "function-url"
    HTTP = "http"  # Azure and Google HTTP triggers
    STORAGE = "storage"  # S3, Blob, Cloud Storage events
    QUEUE = "queue"  # SQS, Service Bus, Pub/Sub
    TOPIC = "topic"  # SNS, Event Grid
    SCHEDULE = "schedule"
    EVENT_BUS = "event-bus"  # EventBridge / CloudWatch Events
    STREAM = "stream"  # DynamoDB, Kinesis, Kafka
    OTHER = "other"


#: Sources that invoke a function asynchronously (an event lost on failure unless a DLQ
#: or on-failure destination keeps it).
ASYNC_TRIGGERS = frozenset(
    {TriggerKind.STORAGE, TriggerKind.TOPIC, TriggerKind.SCHEDULE, TriggerKind.EVENT_BUS}
)


@dataclass(frozen=True)
class Trigger:
    """One event source of a function.

    `auth` is the effective authorisation after defaults: ``none`` is public; any other
    value names the mechanism (``aws_iam``, ``cognito``, ``jwt``, ``lambda``,
    ``api_key``, ``function_key``, ``admin_key``, ``private``...). `cors_origins` holds
    the allowed origins of an HTTP trigger (``*`` is any).
    """

    kind: TriggerKind
    where: Where
    auth: Val[str] = Val()
    method: str = ""
    path: str = ""
    cors_origins: Val[str] = Val()
    #: The API resource this route belongs to (its logical id or address), if any.
    api: str = ""
    #: CORS allows credentials (cookies, ``Authorization``) from the allowed origins.
    cors_credentials: Val[bool] = Val()

    @property
    def asynchronous(self) -> bool:
        return self.kind in ASYNC_TRIGGERS


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: Val[str]


@dataclass(frozen=True)
class LogGroup:
    """Where a function's or an API's logs go."""

    where: Where
    retention_days: Val[int] = Val()
    kms_key: Val[str] = Val()


@dataclass(frozen=True)
class Function:
    """A function of any cloud, with what its template grants it."""

    where: Where
    cloud: Cloud
    name: Val[str] = Val()
    runtime: Val[str] = Val()
    handler: Val[str] = Val()
    environment: tuple[EnvVar, ...] = ()
    #: The role as written (an ARN, a reference); its policies when the loader knows them.
    role: Val[str] = Val()
    policies: tuple[Policy, ...] = ()
    #: Who may invoke it directly (``AWS::Lambda::Permission``, Cloud Functions invoker IAM).
    invoke_policy: tuple[Statement, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    #: A dead-letter queue or on-failure destination for asynchronous invocations.
    dead_letter: Val[str] = Val()
    reserved_concurrency: Val[int] = Val()
    #: The KMS key encrypting its environment (absent: the provider's default key).
    kms_key: Val[str] = Val()
    #: ``Active``/``PassThrough`` (X-Ray), ``enabled``/``disabled`` elsewhere.
    tracing: Val[str] = Val()
    log_group: LogGroup | None = None
    #: Plain HTTP refused (Azure ``https_only``, Google ``SECURE_ALWAYS``); absent where
    #: the cloud serves HTTPS only (AWS).
    https_only: Val[bool] = Val()


@dataclass(frozen=True)
class Bucket:
    """Object storage: S3 bucket, Azure storage account/container, GCS bucket.

    `acl` is normalised to S3 canned-ACL names (``private``, ``public-read``,
    ``public-read-write``, ``authenticated-read``); `public_access_blocked` is True
    when every public path is blocked (S3's four flags on; Azure's public blob access
    off; GCS's public access prevention enforced).
    """

    where: Where
    cloud: Cloud
    acl: Val[str] = Val()
    policy: tuple[Statement, ...] = ()
    public_access_blocked: Val[bool] = Val()
    #: ``kms`` (a customer key), ``managed`` (the provider's key), ``none``.
    encryption: Val[str] = Val()
    kms_key: Val[str] = Val()
    #: The oldest TLS version accepted (Azure ``min_tls_version``: ``TLS1_0``...).
    min_tls_version: Val[str] = Val()


@dataclass(frozen=True)
class Queue:
    """A queue or topic (SQS, SNS, Service Bus, Pub/Sub)."""

    where: Where
    cloud: Cloud
    kind: str  # "sqs", "sns", ...
    encryption: Val[str] = Val()
    kms_key: Val[str] = Val()
    policy: tuple[Statement, ...] = ()


@dataclass(frozen=True)
class HttpApi:
    """An API Gateway (REST or HTTP) or equivalent front door."""

    where: Where
    kind: TriggerKind
    default_auth: Val[str] = Val()
    cors_origins: Val[str] = Val()
    access_log: Val[bool] = Val()
    tracing: Val[bool] = Val()
    #: CORS allows credentials (cookies, ``Authorization``) from the allowed origins.
    cors_credentials: Val[bool] = Val()


@dataclass(frozen=True)
class UserPool:
    """An identity configuration: a Cognito user pool or identity pool (or the cloud's
    equivalent)."""

    where: Where
    kind: str  # "user-pool" or "identity-pool"
    password_min_length: Val[int] = Val()
    #: Character classes the password policy requires (of lower, upper, digits, symbols).
    password_classes: Val[int] = Val()
    #: ``OFF``, ``OPTIONAL``, ``ON``.
    mfa: Val[str] = Val()
    allow_unauthenticated: Val[bool] = Val()


@dataclass(frozen=True)
class App:
    """Everything one template (or Terraform module directory) declares."""

    path: str
    kind: TemplateKind
    functions: tuple[Function, ...] = ()
    buckets: tuple[Bucket, ...] = ()
    queues: tuple[Queue, ...] = ()
    apis: tuple[HttpApi, ...] = ()
    log_groups: tuple[LogGroup, ...] = ()
    user_pools: tuple[UserPool, ...] = ()
    #: Strings written in the template outside function environments that a secret rule
    #: should see (parameter defaults, literal property values), with their lines.
    literals: tuple[tuple[Where, str, str], ...] = field(default=(), compare=False)
