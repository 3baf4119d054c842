"""Who "anyone" is in a resource policy, and which conditions make it someone.

A resource policy statement (a bucket, queue or topic policy; a function's invoke
permission) is public when its principal is anyone: ``*``, ``AWS: *`` (loaders write it
``*``), Google's ``allUsers``/``allAuthenticatedUsers``, or an Allow with NotPrincipal
(everyone but the few it names). A condition narrows it only when it pins who calls or
where from, with a positive operator and a value that is not itself a wildcard: an
``...IfExists`` operator passes when the key is missing (a direct call carries no
aws:SourceArn), a negated one (``StringNotEquals``) lets everyone else in, and
``aws:SecureTransport`` or ``lambda:FunctionUrlAuthType`` say how, not who.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from donjon.scan.iac.model import Condition, Effect, Statement, TriggerKind
from donjon.scan.model import Confidence

__all__ = [
    "NARROWING_KEYS",
    "ROUTES",
    "is_public_principal",
    "narrowing_condition",
    "public_statements",
    "url_permission",
]

#: Triggers that are HTTP routes: their `auth` says who may call them.
ROUTES = frozenset(
    {TriggerKind.REST_API, TriggerKind.HTTP_API, TriggerKind.FUNCTION_URL, TriggerKind.HTTP}
)

#: Condition keys that pin the caller (account, organisation, source resource) or the
#: network path (VPC endpoint, VPC, address range). Compared case-insensitively, as IAM does.
NARROWING_KEYS = frozenset(
    {
        "aws:sourcearn",
        "aws:sourceaccount",
        "aws:sourceowner",
        "aws:sourceorgid",
        "aws:sourceorgpaths",
        "aws:principalarn",
        "aws:principalaccount",
        "aws:principalorgid",
        "aws:principalorgpaths",
        "aws:principalservicename",
        "aws:userid",
        "aws:username",
        "aws:sourcevpce",
        "aws:sourcevpc",
        "aws:sourceip",
        "aws:vpcsourceip",
        "aws:resourceaccount",
        "aws:resourceorgid",
        "s3:dataaccesspointaccount",
        "s3:dataaccesspointarn",
        "lambda:sourcefunctionarn",
        "aws:calledvia",
    }
)
#: A value that is only wildcards past the ARN's service (``arn:aws:sns:*:*:*``).
_ANY_ARN = re.compile(r"(?:arn:[^:]*:[^:]*:)?[*?:/]*")
_PUBLIC = frozenset({"*", "aws:*", "allusers", "allauthenticatedusers"})


def is_public_principal(principal: str) -> bool:
    """Whether `principal` (as a loader writes it) is anyone."""
    text = principal.strip().lower()
    return text in _PUBLIC or text.endswith(("/allusers", ":allusers"))


def _narrows(condition: Condition) -> bool:
    operator = condition.operator.strip()
    base = operator.split(":")[-1]  # ForAnyValue:StringEquals -> StringEquals
    if condition.key.strip().lower() not in NARROWING_KEYS:
        return False
    if "Not" in base or base.endswith("IfExists") or base == "Null":
        return False
    values = [v.strip() for v in condition.values]
    return bool(values) and not any(_ANY_ARN.fullmatch(v) for v in values)


def narrowing_condition(conditions: Iterable[Condition]) -> Condition | None:
    """The first condition that pins who or where the caller is, if any."""
    return next((c for c in conditions if _narrows(c)), None)


def public_statements(
    statements: Iterable[Statement],
) -> Iterator[tuple[Statement, Confidence, str]]:
    """Allow statements anyone may use: each with how sure, and what makes it so.

    An Allow with NotPrincipal lets in everyone it does not name; an Allow whose
    principal is not known at all is reported at low confidence."""
    for st in statements:
        if st.effect is not Effect.ALLOW or narrowing_condition(st.conditions):
            continue
        unresolved = "; ".join(str(u) for u in st.unresolved)
        public = any(map(is_public_principal, st.principals)) or bool(st.not_principals)
        if not public:
            if unresolved and not st.principals:
                yield st, Confidence.LOW, f"its principal is unresolved: {unresolved}"
            continue
        if unresolved:
            yield st, Confidence.LOW, f"part of it is unresolved: {unresolved}"
        elif st.conditional:
            yield st, Confidence.MEDIUM, "under a template condition"
        else:
            yield st, Confidence.HIGH, ""


def url_permission(st: Statement) -> bool:
    """The permission a function URL with AuthType NONE needs: its exposure is the URL's
    (DJ-IAC-010), not a second finding."""
    url_only = bool(st.actions) and all(a.lower() == "lambda:invokefunctionurl" for a in st.actions)
    return url_only and any(
        c.key.lower() == "lambda:functionurlauthtype" and c.values == ("NONE",)
        for c in st.conditions
    )
