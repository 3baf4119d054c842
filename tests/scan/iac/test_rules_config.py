"""DJ-IAC-021..025 over hand-built models: secrets written in templates (masked, never a
reference), environments without KMS, unencrypted storage and messaging, log groups."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from donjon.scan.iac import config_rules as rules
from donjon.scan.iac.model import App, Cloud, EnvVar, LogGroup, Val, Where
from donjon.scan.iac.template_secrets import is_secret_name
from donjon.scan.model import Confidence, Severity
from iac_support import app, bucket, function, graded, log_group, queue, run, where

HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW
#: Made-up values in real formats (split so no scanner finds them in this file).
AWS_KEY = "AKIA" + "Q3EGRTHJ5TUVWX2Y"
PASSWORD = "k9Jx2mQ8" + "vLp4Rz7W"


def _env(*pairs: tuple[str, Val[str]], **kw: Any) -> App:
    env = tuple(EnvVar(name, value) for name, value in pairs)
    return app(functions=(function(environment=env, **kw),))


def test_secret_named_variable_with_a_literal_is_reported_masked() -> None:
    """DB_PASSWORD with a random literal: medium, the value never in the message."""
    found = run(rules.hard_coded_secrets, _env(("DB_PASSWORD", Val.of(PASSWORD, 14))))
    assert graded(found) == [(14, MEDIUM)]
    assert PASSWORD not in found[0].message and "(16 chars)" in found[0].message


def test_known_token_format_is_reported_under_any_name() -> None:
    """An AWS access key in a variable named CONFIG_A is still a credential (high)."""
    found = run(rules.hard_coded_secrets, _env(("CONFIG_A", Val.of(AWS_KEY, 15))))
    assert graded(found) == [(15, HIGH)]
    assert AWS_KEY not in found[0].message and found[0].message.endswith("chars)")


def test_references_and_pointers_are_not_secrets() -> None:
    """Dynamic references, ${ssm:...}, ARNs, names of secrets, and unresolved values."""
    pairs = (
        ("DB_PASSWORD", Val.of("{{resolve:secretsmanager:prod/db:SecretString:password}}", 14)),
        ("API_KEY", Val.of("${ssm:/prod/api-key}", 15)),
        ("DB_SECRET_ARN", Val.of("arn:aws:secretsmanager:eu-west-1:1:secret:db", 16)),
        ("TOKEN_TTL", Val.of("3600", 17)),
        ("JWT_SECRET", Val[str].unknown("!Ref JwtSecret", "NoEcho parameter", 18)),
        ("SECRET_NAME", Val.of("prod/orders/db-password", 19)),
        ("STAGE", Val.of("prod", 20)),
        (
            "DB_PASSWORD",
            Val.of("@Microsoft.KeyVault(SecretUri=https://o.vault.azure.net/secrets/db/)"),
        ),
        (
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            Val.of(
                "InstrumentationKey=8d2a1b3c-4e5f-6789-abcd-ef0123456789;IngestionEndpoint=https://x"
            ),
        ),
    )
    assert run(rules.hard_coded_secrets, _env(*pairs)) == []


def test_passwords_in_urls_and_connection_strings_are_found_under_any_name() -> None:
    """A database URL or an ODBC string with a password is a credential whatever its name."""
    found = run(
        rules.hard_coded_secrets,
        _env(
            ("DATABASE_URL", Val.of(f"postgresql://app:{PASSWORD}@db.internal:5432/orders", 14)),
            (
                "ORDERS_DB",
                Val.of(f"Server=db;Database=orders;User Id=app;Password={PASSWORD};", 15),
            ),
        ),
    )
    assert graded(found) == [(14, HIGH), (15, HIGH)]
    assert all(PASSWORD not in f.message for f in found)


def test_weak_literal_is_low_and_conditional_says_may() -> None:
    """A short plain word is low; a secret in one Fn::If branch "may be set"."""
    found = run(
        rules.hard_coded_secrets,
        _env(
            ("ADMIN_PASSWORD", Val.of("hunter2", 14)),
            ("API_TOKEN", Val((PASSWORD, "{{resolve:ssm:/t}}"), (), 15, True)),
        ),
    )
    assert graded(found) == [(14, LOW), (15, MEDIUM)]
    assert "may be set to" in found[1].message


def test_template_literals_are_checked() -> None:
    """A parameter default named like a password holds a secret (App.literals)."""
    built = app(literals=((where("DbPassword", 5), "DbPassword", PASSWORD),
                          (where("BucketName", 6), "BucketName", "my-data-bucket")))  # fmt: skip
    found = run(rules.hard_coded_secrets, built)
    assert graded(found) == [(5, MEDIUM)]
    assert found[0].location.resource == "DbPassword"


def test_parameter_defaults_and_property_paths_are_named_by_their_key() -> None:
    """A parameter's Default is judged by the parameter's name; a property path by its
    last key (as the SAM/CloudFormation loader writes literals)."""
    built = app(
        literals=(
            (where("ReportsPassword", 5), "Default", PASSWORD),
            (where("Db", 9), "Properties.MasterUserPassword", PASSWORD),
            (where("Stage", 12), "Default", PASSWORD),
        )
    )
    found = run(rules.hard_coded_secrets, built)
    assert graded(found) == [(5, MEDIUM), (9, MEDIUM)]
    assert found[0].message.startswith("ReportsPassword holds")
    assert found[1].message.startswith("MasterUserPassword of Db holds")


def test_templates_under_tests_are_graded_low() -> None:
    """A template in tests/ or examples/ holds made-up secrets, as the secrets scanner says."""
    built = app(literals=((Where("examples/t.yaml", 5, "K"), "Key", AWS_KEY),))
    assert graded(run(rules.hard_coded_secrets, built)) == [(5, LOW)]


def test_secret_names() -> None:
    """Names holding secrets, and names that only point at one."""
    for name in ("DB_PASSWORD", "stripeApiKey", "JWT_SECRET", "GITHUB_TOKEN", "DbPassword"):
        assert is_secret_name(name), name
    for name in ("DB_PASSWORD_ARN", "API_KEY_PARAM", "TOKEN_TTL", "SECRET_NAME", "TABLE"):
        assert not is_secret_name(name), name


def test_environment_with_secret_names_needs_a_kms_key() -> None:
    """Secret-named variables without KmsKeyArn are reported; with a key, or none, not."""
    secret_env = (("DB_PASSWORD", Val.of("{{resolve:ssm-secure:/db}}", 14)),)
    assert graded(run(rules.environments_without_kms, _env(*secret_env))) == [(10, HIGH)]
    keyed = _env(*secret_env, kms_key=Val.of("arn:aws:kms:eu-west-1:1:key/k", 16))
    assert run(rules.environments_without_kms, keyed) == []
    unresolved_key = _env(*secret_env, kms_key=Val[str].unknown("!ImportValue Key", "import"))
    assert run(rules.environments_without_kms, unresolved_key) == []
    assert run(rules.environments_without_kms, _env(("STAGE", Val.of("prod", 14)))) == []
    iffy = _env(*secret_env, kms_key=Val(("arn:aws:kms:eu-west-1:1:key/k",), (), 16, True))
    assert graded(run(rules.environments_without_kms, iffy)) == [(16, MEDIUM)]


def test_environment_kms_is_an_aws_rule() -> None:
    """Azure app settings have no per-function key to set: not reported."""
    built = _env(("DB_PASSWORD", Val.of("@Microsoft.KeyVault(x)", 14)), cloud=Cloud.AZURE)
    assert run(rules.environments_without_kms, built) == []


def test_unencrypted_buckets_queues_and_topics() -> None:
    """Encryption none is DJ-IAC-024 (an unresolved mode low); the provider's key only is
    DJ-IAC-023 (low severity); a customer key is clean."""
    built = app(
        buckets=(bucket(encryption=Val.of("none", 53)), bucket("Ok"),
                 bucket("Sse", line=120, encryption=Val.of("managed", 123))),
        queues=(
            queue("Alerts", "sns", encryption=Val.of("none", 61)),
            queue("Jobs", encryption=Val.of("kms", 61)),
            queue("Maybe", line=90, encryption=Val[str].unknown("!Ref Mode", "no default", 91)),
            queue("Iffy", line=100, encryption=Val(("kms", "managed"), (), 101, True)),
            queue("Keyed", line=110, kms_key=Val[str].unknown("!Ref Key", "no default", 111),
                  encryption=Val[str].unknown("!Ref Key", "no default", 111)),
        ),
    )  # fmt: skip
    found = run(rules.unencrypted_storage, built)
    assert [(f.rule_id, f.location.line, f.confidence) for f in found] == [
        ("DJ-IAC-024", 53, HIGH),
        ("DJ-IAC-023", 123, HIGH),
        ("DJ-IAC-024", 61, HIGH),
        ("DJ-IAC-024", 91, LOW),
        ("DJ-IAC-023", 101, MEDIUM),
    ]
    assert found[1].severity is Severity.LOW


def test_log_groups_without_kms() -> None:
    """A declared log group with no key is low severity; a key (even unresolved) is enough;
    the group Lambda makes itself (written at the function) is left to DJ-IAC-030."""
    bare = log_group("Bare", line=100, kms_key=Val())
    unknown = log_group("Imported", line=110, kms_key=Val[str].unknown("!ImportValue K", "import"))
    implicit = function("Implicit", line=120)
    implicit = replace(implicit, log_group=LogGroup(implicit.where))
    built = app(log_groups=(bare, unknown), functions=(function(), implicit))
    found = run(rules.log_groups_without_kms, built)
    assert [(f.location.resource, f.confidence) for f in found] == [("Bare", HIGH)]
