"""The errors of a function's lifecycle: each refuses a deploy or a removal and changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from donjon.errors import Error

__all__ = [
    "AllowBroadRefused",
    "AllowPublicRefused",
    "DeployBlocked",
    "DeployForbidden",
    "FunctionNotFound",
    "InvokeGrantForbidden",
    "LifecycleError",
    "OwnedFunctionsLimit",
    "SecretGrantForbidden",
    "SkipScanRefused",
]


class LifecycleError(Error):
    """A deploy, replacement or removal of a function that was refused."""

    title = "Bad request"


class DeployBlocked(LifecycleError):
    """The deploy gate found what the admin's scan policy does not let through."""

    title = "Deploy blocked by the scanner"

    def __init__(self, message: str, report_text: str, problems: list[str]) -> None:
        super().__init__(message, hint="fix the findings, or ask an admin (--unsafe-skip-scan)")
        self.report_text = report_text
        self.problems = problems


class SkipScanRefused(LifecycleError):
    """A deploy without the scan asked for by a principal that is not an admin."""

    title = "Forbidden"

    def __init__(self) -> None:
        super().__init__("only admins may skip the deploy scan")


class AllowBroadRefused(LifecycleError):
    """Broad permission grants let through, asked for by a principal that is not an admin."""

    title = "Forbidden"

    def __init__(self) -> None:
        super().__init__("only admins may deploy broad permission grants")


class AllowPublicRefused(LifecycleError):
    """Triggers open to unauthenticated events let through, asked for by a non-admin."""

    title = "Forbidden"

    def __init__(self) -> None:
        super().__init__("only admins may deploy triggers open to unauthenticated events")


class DeployForbidden(LifecycleError):
    """The policy does not let this principal deploy this function (another's, say)."""

    title = "Forbidden"

    def __init__(self, name: str, statement: str, shown: str | None = None) -> None:
        """`statement` decided it (the audit record keeps it); `shown`, if given, is what
        the caller is told instead (a statement that names another principal)."""
        super().__init__(
            f"this credential may not deploy {name!r} ({shown or statement})",
            hint="a developer deploys only functions it owns or that its role names",
        )
        self.statement = statement


class OwnedFunctionsLimit(LifecycleError):
    """A deploy of a new function by a principal that owns this node's limit of them."""

    title = "Forbidden"

    def __init__(self, limit: int, removed: Sequence[str] = ()) -> None:
        if not removed:
            super().__init__(
                f"this credential already owns {limit} functions, this node's limit"
                " (DONJON_MAX_FUNCTIONS_PER_OWNER); nothing deployed",
                hint="remove one it owns (donjon rm NAME), or ask the node's operator to raise it",
            )
        else:  # removed functions whose dead letters (or pending invocations) remain
            shown = ", ".join(removed[:5]) + (
                f" and {len(removed) - 5} more" if len(removed) > 5 else ""
            )
            super().__init__(
                f"this credential already owns {limit} functions, this node's limit"
                f" (DONJON_MAX_FUNCTIONS_PER_OWNER), counting {len(removed)} removed ones"
                f" whose dead letters or pending invocations remain ({shown}); nothing deployed",
                hint="have their dead letters redriven or purged (donjon dlq purge NAME), "
                "remove a function it owns (donjon rm NAME), or ask the node's operator to "
                "raise the limit",
            )
        self.limit = limit


class InvokeGrantForbidden(DeployForbidden):
    """A manifest grants `context.invoke` of a function, or names it as a destination, that
    its deployer may not invoke itself."""

    def __init__(self, name: str, statement: str) -> None:
        LifecycleError.__init__(
            self,
            f"this credential may not grant permissions.invoke of {name!r} nor send it "
            f"destination records: it may not invoke it itself ({statement})",
            hint="a deploy grants a function only what its deployer may do",
        )
        self.statement = statement


class SecretGrantForbidden(DeployForbidden):
    """A manifest grants a secret (or a trigger names one) its deployer may not use."""

    def __init__(self, name: str, statement: str) -> None:
        LifecycleError.__init__(
            self,
            f"this credential may not grant the secret {name!r} to a function: "
            f"secret:use is not allowed on it ({statement})",
            hint="a deploy grants a function only what its deployer may do; "
            "an admin may allow secret:use on it in the deployer's role",
        )
        self.statement = statement


class FunctionNotFound(LifecycleError):
    """No function of that name is deployed on this node."""

    title = "Not found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no function named {name!r}")
        self.name = name
