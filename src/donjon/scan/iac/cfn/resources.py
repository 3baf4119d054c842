"""Storage, queues, topics, log groups and identity of a template, with the effective
value AWS applies where a property is absent (noted on each)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from donjon.scan.iac.cfn.props import as_bool, as_int, as_str, child, prop, referenced
from donjon.scan.iac.cfn.template import Resource, Template
from donjon.scan.iac.cfn.values import options, plain, val
from donjon.scan.iac.model import (
    Bucket,
    Cloud,
    LogGroup,
    Queue,
    Statement,
    Unresolved,
    UserPool,
    Val,
)
from donjon.scan.iac.statements import parse_policy

__all__ = ["build_buckets", "build_log_groups", "build_queues", "build_user_pools"]

_ACLS = {
    "Private": "private",
    "PublicRead": "public-read",
    "PublicReadWrite": "public-read-write",
    "AuthenticatedRead": "authenticated-read",
    "LogDeliveryWrite": "log-delivery-write",
    "BucketOwnerRead": "bucket-owner-read",
    "BucketOwnerFullControl": "bucket-owner-full-control",
    "AwsExecRead": "aws-exec-read",
}
_BLOCK_FLAGS = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
_AWS_KEYS = ("alias/aws/sqs", "alias/aws/sns")


def _policies(
    template: Template, types: tuple[str, ...], target: str, keys: tuple[str, ...]
) -> tuple[Statement, ...]:
    """The statements of every resource policy of `types` attached to `target`."""
    out: list[Statement] = []
    for policy in template.of_type(*types):
        for key in keys:
            raw = policy.raw.get(key)
            names = [referenced(r) for r in (raw if isinstance(raw, list) else [raw])]
            if target in names:
                line = policy.properties.line_of("PolicyDocument") or policy.where.line
                document = plain(policy.properties.get("PolicyDocument"), policy.conditional)
                out.extend(parse_policy(document, line, conditional=policy.conditional))
                break
    return tuple(out)


def _blocked(bucket: Resource) -> Val[bool]:
    config, line = child(bucket.properties, "PublicAccessBlockConfiguration")
    if config is None:
        return Val.of(False, conditional=bucket.conditional)  # absent: nothing blocked here
    if isinstance(config, Unresolved):
        return Val((), (config,), line)
    flags = [child(config, flag)[0] for flag in _BLOCK_FLAGS]
    missing = tuple(f for f in flags if isinstance(f, Unresolved))
    known = all(as_bool(f) is True for f in flags if not isinstance(f, Unresolved))
    if not known:
        return Val.of(False, line, conditional=bucket.conditional)
    return Val((), missing, line) if missing else Val.of(True, line, conditional=bucket.conditional)


def _algorithm(key: object) -> Callable[[object], str | None]:
    """The model's encryption kind of an SSE algorithm: a customer key or AWS's."""

    def kind(algorithm: object) -> str | None:
        if not isinstance(algorithm, str):
            return None
        return "kms" if algorithm.startswith("aws:kms") and key is not None else "managed"

    return kind


def _encryption(bucket: Resource) -> tuple[Val[str], Val[str]]:
    rules, line = child(bucket.properties, "BucketEncryption", "ServerSideEncryptionConfiguration")
    if rules is None:  # S3 encrypts every new object with its own key (SSE-S3) since 2023
        return Val.of("managed", conditional=bucket.conditional), Val()
    for rule, _ in options(rules):
        for item in rule if isinstance(rule, list) else [rule]:
            algorithm, at = child(item, "ServerSideEncryptionByDefault", "SSEAlgorithm")
            key, key_line = child(item, "ServerSideEncryptionByDefault", "KMSMasterKeyID")
            if algorithm is not None:
                kind = val(algorithm, at, _algorithm(key), conditional=bucket.conditional)
                return kind, val(key, key_line, as_str, conditional=bucket.conditional)
    return Val.of("managed", line, conditional=bucket.conditional), Val()


def build_buckets(template: Template) -> tuple[Bucket, ...]:
    out = []
    for bucket in template.of_type("AWS::S3::Bucket"):
        acl = prop(
            bucket,
            "AccessControl",
            convert=lambda v: _ACLS.get(v, str(v)) if isinstance(v, str) else None,
        )
        encryption, kms_key = _encryption(bucket)
        out.append(
            Bucket(
                bucket.where,
                Cloud.AWS,
                acl=acl if acl.present else Val.of("private", conditional=bucket.conditional),
                policy=_policies(template, ("AWS::S3::BucketPolicy",), bucket.name, ("Bucket",)),
                public_access_blocked=_blocked(bucket),
                encryption=encryption,
                kms_key=kms_key,
            )
        )
    return tuple(out)


def _queue_encryption(queue: Resource, sqs: bool) -> tuple[Val[str], Val[str]]:
    key = prop(queue, "KmsMasterKeyId", convert=as_str)
    if key.present:
        kind = Val(
            tuple(dict.fromkeys("managed" if k in _AWS_KEYS else "kms" for k in key.known)),
            key.unresolved,
            key.line,
            key.conditional,
        )
        return kind, key
    if sqs:
        managed = prop(queue, "SqsManagedSseEnabled", convert=as_bool)
        if managed.present:
            return Val(
                tuple("managed" if m else "none" for m in managed.known),
                managed.unresolved,
                managed.line,
                managed.conditional,
            ), key
        return Val.of(
            "managed", conditional=queue.conditional
        ), key  # SSE-SQS by default since 2022
    return Val.of("none", conditional=queue.conditional), key


def build_queues(template: Template) -> tuple[Queue, ...]:
    out = []
    for queue in template.of_type("AWS::SQS::Queue", "AWS::SNS::Topic"):
        sqs = queue.type == "AWS::SQS::Queue"
        encryption, key = _queue_encryption(queue, sqs)
        if sqs:
            policy = _policies(template, ("AWS::SQS::QueuePolicy",), queue.name, ("Queues",))
        else:
            policy = _policies(
                template,
                ("AWS::SNS::TopicPolicy", "AWS::SNS::TopicInlinePolicy"),
                queue.name,
                ("Topics", "TopicArn"),
            )
        out.append(Queue(queue.where, Cloud.AWS, "sqs" if sqs else "sns", encryption, key, policy))
    return tuple(out)


def build_log_groups(template: Template) -> dict[str, LogGroup]:
    """Every log group, by its name (resolved) and by its logical id."""
    out: dict[str, LogGroup] = {}
    for group in template.of_type("AWS::Logs::LogGroup"):
        log = LogGroup(
            group.where,
            retention_days=prop(group, "RetentionInDays", convert=as_int),
            kms_key=prop(group, "KmsKeyId", convert=as_str),
        )
        name = group.properties.get("LogGroupName")
        if isinstance(name, str):
            out[name] = log
        out["${" + group.name + "}"] = log
    return out


def _classes(policy: Mapping[str, object]) -> int:
    flags = ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols")
    return sum(1 for flag in flags if as_bool(policy.get(flag)) is True)


def build_user_pools(template: Template) -> tuple[UserPool, ...]:
    out = []
    for pool in template.of_type("AWS::Cognito::UserPool"):
        policy, line = child(pool.properties, "Policies", "PasswordPolicy")
        if isinstance(policy, Mapping):
            length = prop(pool, "MinimumLength", convert=as_int, source=policy)
            classes = Val.of(_classes(policy), line, conditional=pool.conditional)
        else:  # Cognito's default policy: 8 characters, all four classes
            length, classes = (
                Val.of(8, conditional=pool.conditional),
                Val.of(4, conditional=pool.conditional),
            )
        mfa = prop(pool, "MfaConfiguration", convert=as_str)
        out.append(
            UserPool(
                pool.where,
                "user-pool",
                password_min_length=length if length.present else Val.of(8, line),
                password_classes=classes,
                mfa=mfa if mfa.present else Val.of("OFF", conditional=pool.conditional),
            )
        )
    for identity in template.of_type("AWS::Cognito::IdentityPool"):
        allow = prop(identity, "AllowUnauthenticatedIdentities", convert=as_bool)
        out.append(UserPool(identity.where, "identity-pool", allow_unauthenticated=allow))
    return tuple(out)
