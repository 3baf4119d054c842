"""DJ-IAC-031..033: weak identity configuration (Cognito user and identity pools).

The password length bar: OWASP ASVS 4.0.3 V2.1.1 asks for at least 12 characters;
NIST SP 800-63B-4 (3.1.1.2) asks for 15 when a password is the only factor and allows 8
when it is one factor of several. So a pool that requires MFA passes at 8, any other at
12; under 8 (Cognito's own floor is 6) is below every standard and graded medium. A
pool that writes no password policy gets Cognito's default minimum of 8.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from donjon.scan.iac.judge import read
from donjon.scan.iac.model import App, UserPool, Val
from donjon.scan.model import Cwe, Finding, FindingKind, SasCategory, Severity
from donjon.scan.rule import Rule

__all__ = ["CHECKS", "COGNITO_DEFAULT_MIN", "MIN_LENGTH", "MIN_LENGTH_WITH_MFA", "RULES"]

_IAC = FindingKind.IAC

WEAK_PASSWORDS = Rule(
    "DJ-IAC-031", "weak-password-policy", _IAC, Severity.LOW, Cwe.WEAK_PASSWORD_REQUIREMENTS,
    SasCategory.SAS_2,
    "A user pool accepts passwords shorter than 12 characters (8 when MFA is required): "
    "the OWASP ASVS 4.0.3 V2.1.1 and NIST SP 800-63B-4 minimums. Under 8 is medium.",
    "Set Policies.PasswordPolicy.MinimumLength (password_policy.minimum_length) to 12 or "
    "more (15 for password-only sign-in), or require MFA.",
)  # fmt: skip
MFA_OFF = Rule(
    "DJ-IAC-032", "mfa-disabled", _IAC, Severity.MEDIUM, Cwe.SINGLE_FACTOR_AUTHENTICATION,
    SasCategory.SAS_2,
    "A user pool with MFA OFF (Cognito's default when MfaConfiguration is absent): a "
    "stolen or guessed password is the whole account.",
    "Set MfaConfiguration to ON (or OPTIONAL with adaptive authentication) with TOTP "
    "(software token) as a factor.",
)  # fmt: skip
UNAUTHENTICATED_IDENTITIES = Rule(
    "DJ-IAC-033", "unauthenticated-identities", _IAC, Severity.MEDIUM,
    Cwe.MISSING_AUTHENTICATION, SasCategory.SAS_2,
    "An identity pool that allows unauthenticated identities hands AWS credentials (its "
    "unauthenticated role's) to anyone who asks.",
    "Set AllowUnauthenticatedIdentities to false, or keep the unauthenticated role to the "
    "least it needs and say why guests need credentials.",
)  # fmt: skip

RULES: tuple[Rule, ...] = (WEAK_PASSWORDS, MFA_OFF, UNAUTHENTICATED_IDENTITIES)

#: OWASP ASVS 4.0.3 V2.1.1.
MIN_LENGTH = 12
#: NIST SP 800-63B-4: a password that is one factor of several.
MIN_LENGTH_WITH_MFA = 8
#: Cognito's MinimumLength when the template writes no password policy.
COGNITO_DEFAULT_MIN = 8


def _mfa_required(pool: UserPool) -> bool:
    return pool.mfa.all(lambda mode: mode.upper() == "ON")


def _shorter(length: int, *, bar: int) -> bool:
    return length < bar


def _length(pool: UserPool) -> Val[int]:
    length = pool.password_min_length
    return length if length.present else Val.of(COGNITO_DEFAULT_MIN)


def weak_password_policies(app: App) -> Iterator[Finding]:
    """DJ-IAC-031: user pools with a short minimum password length."""
    for pool in app.user_pools:
        if pool.kind != "user-pool":
            continue
        bar = MIN_LENGTH_WITH_MFA if _mfa_required(pool) else MIN_LENGTH
        length = _length(pool)
        reading = read(length, partial(_shorter, bar=bar))
        if reading is None:
            continue
        short = reading.value if isinstance(reading.value, int) else None
        default = "" if pool.password_min_length.present else " (Cognito's default)"
        severity = Severity.MEDIUM if short is not None and short < 8 else None
        yield WEAK_PASSWORDS.finding(
            pool.where.location(pool.password_min_length.line),
            f"user pool {pool.where.resource} {reading.may}accepts passwords of "
            f"{short if short is not None else 'an unresolved number of'} characters"
            f"{default}; at least {bar} are needed{reading.note()}",
            confidence=reading.confidence,
            severity=severity,
        )


def mfa_disabled(app: App) -> Iterator[Finding]:
    """DJ-IAC-032: user pools whose MFA is OFF (absent is OFF)."""
    for pool in app.user_pools:
        if pool.kind != "user-pool":
            continue
        mfa = pool.mfa if pool.mfa.present else Val.of("OFF")
        reading = read(mfa, lambda mode: mode.upper() == "OFF")
        if reading is None:
            continue
        default = "" if pool.mfa.present else " (MfaConfiguration absent: Cognito's default)"
        yield MFA_OFF.finding(
            pool.where.location(pool.mfa.line),
            f"user pool {pool.where.resource} {reading.verb} without MFA{default}{reading.note()}",
            confidence=reading.confidence,
        )


def unauthenticated_identities(app: App) -> Iterator[Finding]:
    """DJ-IAC-033: identity pools that give credentials to unauthenticated users."""
    for pool in app.user_pools:
        if pool.kind != "identity-pool":
            continue
        reading = read(pool.allow_unauthenticated, bool)
        if reading is None:
            continue
        yield UNAUTHENTICATED_IDENTITIES.finding(
            pool.where.location(pool.allow_unauthenticated.line),
            f"identity pool {pool.where.resource} {reading.may}allows unauthenticated "
            f"identities{reading.note()}",
            confidence=reading.confidence,
        )


CHECKS = (weak_password_policies, mfa_disabled, unauthenticated_identities)
