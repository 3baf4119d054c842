"""DJ-IAC-031..033 over hand-built models: password length against ASVS/NIST, MFA off,
identity pools handing credentials to guests."""

from __future__ import annotations

from donjon.scan.iac import identity_rules as rules
from donjon.scan.iac.model import Val
from donjon.scan.model import Confidence, Severity
from iac_support import app, graded, pool, run

HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


def test_short_passwords_without_mfa() -> None:
    """8 characters without MFA is under the ASVS 12 (low); 6 is under every standard
    (medium); 12 passes."""
    built = app(
        user_pools=(
            pool("Eight", mfa=Val.of("OFF", 82), password_min_length=Val.of(8, 81)),
            pool("Six", line=90, mfa=Val.of("OPTIONAL", 92), password_min_length=Val.of(6, 91)),
            pool("Twelve", line=100, mfa=Val.of("OFF"), password_min_length=Val.of(12, 101)),
        )
    )
    found = run(rules.weak_password_policies, built)
    assert [(f.location.resource, f.severity, f.confidence) for f in found] == [
        ("Eight", Severity.LOW, HIGH),
        ("Six", Severity.MEDIUM, HIGH),
    ]
    assert "at least 12" in found[0].message


def test_mfa_lowers_the_bar_to_eight() -> None:
    """With MFA ON, NIST's 8 is enough."""
    built = app(user_pools=(pool(password_min_length=Val.of(8, 81)),))
    assert run(rules.weak_password_policies, built) == []


def test_absent_policy_is_cognitos_default_and_unresolved_is_low() -> None:
    """No policy written: Cognito's 8 (reported, without MFA); an unresolved length: low."""
    built = app(
        user_pools=(
            pool("Default", mfa=Val.of("OFF", 82), password_min_length=Val()),
            pool("Unknown", line=90, mfa=Val.of("OFF"),
                 password_min_length=Val[int].unknown("!Ref MinLen", "no default", 91)),
        )
    )  # fmt: skip
    found = run(rules.weak_password_policies, built)
    assert [(f.location.resource, f.confidence) for f in found] == [
        ("Default", HIGH),
        ("Unknown", LOW),
    ]
    assert "Cognito's default" in found[0].message and "!Ref MinLen" in found[1].message


def test_mfa_off_absent_optional_conditional() -> None:
    """OFF and absent are reported; OPTIONAL and ON are not; OFF in one branch is may."""
    built = app(
        user_pools=(
            pool("Off", mfa=Val.of("OFF", 82)),
            pool("Absent", line=90, mfa=Val()),
            pool("Optional", line=100, mfa=Val.of("OPTIONAL", 102)),
            pool("Iffy", line=110, mfa=Val(("ON", "OFF"), (), 112, True)),
            pool("On", line=120),
        )
    )
    found = run(rules.mfa_disabled, built)
    assert [(f.location.resource, f.location.line, f.confidence) for f in found] == [
        ("Off", 82, HIGH),
        ("Absent", 90, HIGH),
        ("Iffy", 112, MEDIUM),
    ]


def test_identity_pool_with_guests() -> None:
    """AllowUnauthenticatedIdentities true is reported; false or absent is not."""
    built = app(
        user_pools=(
            pool("Guests", "identity-pool", allow_unauthenticated=Val.of(True, 131)),
            pool("Members", "identity-pool", line=140, allow_unauthenticated=Val.of(False, 141)),
            pool("Silent", "identity-pool", line=150),
        )
    )
    found = run(rules.unauthenticated_identities, built)
    assert graded(found) == [(131, HIGH)]
    assert found[0].rule_id == "DJ-IAC-033"


def test_identity_pools_are_not_password_checked() -> None:
    """An identity pool has no password policy or MFA of its own."""
    built = app(user_pools=(pool("Ids", "identity-pool", mfa=Val(), password_min_length=Val()),))
    assert run(rules.weak_password_policies, built) == []
    assert run(rules.mfa_disabled, built) == []
