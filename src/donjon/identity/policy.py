"""The action catalog, principals, and the built-in roles.

Roles are data (`policy_doc.py` validates a role document, `policy_eval.py`
decides a request against the roles); this module names what they talk about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from donjon.ratelimit.rates import NO_LIMITS, CallerLimits

__all__ = [
    "BUILTIN_ROLES",
    "FUNCTION_ACTIONS",
    "FUNCTION_LIMITED",
    "LEGACY_ACTIONS",
    "OWNER_SCOPED",
    "Action",
    "Principal",
    "Role",
]


class Role(StrEnum):
    """The built-in roles. Any other role is a document applied with `donjon role apply`."""

    ADMIN = "admin"
    DEVELOPER = "developer"
    INVOKER = "invoker"
    AUDITOR = "auditor"
    #: A scraper's: `metrics:read` and nothing else (GET /metrics).
    METRICS = "metrics"


class Action(StrEnum):
    """Everything the API does, by name: what statements allow or deny."""

    INVOKE = "function:invoke"
    DEPLOY = "function:deploy"
    READ = "function:read"
    DELETE = "function:delete"
    LOGS = "function:logs"
    SECRET_WRITE = "secret:write"  # noqa: S105  # nosec B105 - an action name
    SECRET_LIST = "secret:list"  # noqa: S105  # nosec B105 - an action name
    #: Grant a secret to a function one deploys (`permissions.secrets`, a trigger's secret):
    #: its value then reaches the function, so a deploy grants only what this allows.
    SECRET_USE = "secret:use"  # noqa: S105  # nosec B105 - an action name
    KEYS = "key:manage"
    ROLES = "role:manage"
    AUDIT = "audit:read"
    ALERTS = "alert:read"
    METRICS = "metrics:read"
    REPORTS = "report:read"
    #: Re-wrap every data key of the vault under a new key-encryption key.
    VAULT_REKEY = "vault:rekey"
    #: Add, list and remove trusted JWT issuers.
    ISSUERS = "issuer:manage"
    #: Read the API's own description (GET /openapi.json): every built-in role holds it.
    API_READ = "api:read"
    #: Undo or set the monitor's automatic responses: release a quarantined function,
    #: lift a throttle, quarantine by hand (monitor/). Admins only among the built-in roles.
    RESPONSES = "response:manage"
    #: Set, list and remove daily quotas (denial of wallet). Admins only among the built-in roles.
    QUOTAS = "quota:manage"
    #: Read any async invocation, and list, show, redrive and purge the dead-letter queue
    #: (triggers/queue/). Admins only among the built-in roles.
    DLQ = "dlq:manage"


#: The names audit records written before roles were data used (they stay readable).
LEGACY_ACTIONS: dict[str, Action] = {
    "functions:invoke": Action.INVOKE,
    "functions:deploy": Action.DEPLOY,
    "functions:read": Action.READ,
    "functions:delete": Action.DELETE,
    "functions:logs": Action.LOGS,
    "keys:manage": Action.KEYS,
}

#: Actions on a function: their resources are function names.
FUNCTION_ACTIONS = frozenset(
    {Action.INVOKE, Action.DEPLOY, Action.READ, Action.DELETE, Action.LOGS}
)
#: Actions a key limited to some functions (`functions`) is denied on any other: all but
#: the secrets' (decided on a secret's name). Its operators' actions too, decided on the
#: function a dead event, a quarantine, a throttle or a quota is about: before, the limit
#: held for the `function:*` actions alone, and such a key read any function's dead events.
FUNCTION_LIMITED = frozenset(Action) - {Action.SECRET_WRITE, Action.SECRET_LIST, Action.SECRET_USE}
#: Actions where `*` reaches only the functions the principal owns (see policy_eval).
OWNER_SCOPED = frozenset({Action.DEPLOY, Action.READ, Action.DELETE, Action.LOGS})

_DEV = [a.value for a in sorted(FUNCTION_ACTIONS)]
#: Reading the API description: a statement of its own in each built-in role (admin has all).
_API_READ: dict[str, object] = {"effect": "allow", "actions": [Action.API_READ], "resources": ["*"]}

#: The built-in role documents (the admin role is also free of function owners).
BUILTIN_ROLES: dict[str, list[dict[str, object]]] = {
    Role.ADMIN: [{"effect": "allow", "actions": [a.value for a in Action], "resources": ["*"]}],
    Role.DEVELOPER: [
        {"effect": "allow", "actions": _DEV, "resources": ["*"]},
        {
            "effect": "allow",
            "actions": [Action.SECRET_WRITE, Action.SECRET_LIST, Action.SECRET_USE],
            "resources": ["*"],
        },
        _API_READ,
    ],
    Role.INVOKER: [
        {"effect": "allow", "actions": [Action.INVOKE.value], "resources": ["*"]},
        _API_READ,
    ],
    Role.AUDITOR: [
        {
            "effect": "allow",
            "actions": [Action.AUDIT, Action.ALERTS, Action.METRICS, Action.REPORTS],
            "resources": ["*"],
        },
        _API_READ,
    ],
    Role.METRICS: [{"effect": "allow", "actions": [Action.METRICS], "resources": ["*"]}],
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    id: str
    name: str
    #: A role name: built in (`Role`) or a custom role document's.
    role: str
    #: The only functions this key may act on; None means any its role allows.
    functions: frozenset[str] | None = None
    #: How it authenticated: "key" (an API key) or "jwt" (id is "<issuer>:<sub>").
    kind: str = "key"
    #: Further custom roles whose statements also apply (a JWT may be granted several).
    more_roles: tuple[str, ...] = ()
    #: The key's own limits (rate, burst, concurrency); what it leaves unset comes from
    #: its roles' documents, else the server's defaults (gateway/limits.py resolves them).
    limits: CallerLimits = NO_LIMITS
    #: When the credential stops authenticating, as a Unix time: a JWT's `exp` (a key's
    #: expiry is its record's, read where it matters: None here).
    expires_at: float | None = None
    #: Quota subjects a call by it spends besides its own: a function calling another
    #: for a request spends the quotas of that request's caller too (function_calls.py).
    charged_to: tuple[str, ...] = ()
    #: A JWT's: the kid of its issuer's key that signed it (its queued calls run only
    #: while the issuer still publishes that key: triggers' deliveries.py).
    signed_by: str | None = None
    #: A JWT's: the fingerprint of that key (jwks.py `TrustedKey`): its queued calls run
    #: only while the issuer's key under `signed_by` is still this one.
    signed_key: str | None = None
    #: "<kind>:<id>": made once, with the principal (the hot path reads it several times).
    label: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", f"{self.kind}:{self.id}")

    @property
    def sole_admin(self) -> bool:
        """Whether it holds the built-in admin role and no other: a token granted a custom
        role beside it is bound by that role's denies, which a key, a role or an issuer
        it made or rewrote would shed, so it reaches them as any other role does."""
        return self.role == Role.ADMIN and not self.more_roles
