"""AWS storage, queues, APIs and identity of a Terraform module, with AWS's defaults
written in where a property is absent.

- ``aws_s3_bucket``: its ACL (``acl`` or an ``aws_s3_bucket_acl``; absent:
  ``private``), its policy (``policy`` or an ``aws_s3_bucket_policy``), whether an
  ``aws_s3_bucket_public_access_block`` turns on all four flags (absent: not
  blocked), its encryption (an ``aws_s3_bucket_server_side_encryption_configuration``
  or the legacy inline block: ``aws:kms`` is ``kms``, ``AES256`` ``managed``; absent:
  ``managed``, S3's default since 2023).
- ``aws_sqs_queue`` (``kms_master_key_id``; ``sqs_managed_sse_enabled = false`` is
  ``none``, absent ``managed``, SQS's default) and ``aws_sns_topic`` (absent key:
  ``none``), with ``aws_sqs_queue_policy`` / ``aws_sns_topic_policy``.
- ``aws_apigatewayv2_api`` and ``aws_api_gateway_rest_api``: CORS origins, access
  logs and tracing from their stages.
- ``aws_cognito_user_pool`` (password policy; absent: AWS's 8 characters and four
  classes; ``mfa_configuration`` absent: OFF) and ``aws_cognito_identity_pool``.
"""

from __future__ import annotations

from donjon.scan.iac.model import Bucket, Cloud, HttpApi, Queue, TriggerKind, UserPool, Val, Where
from donjon.scan.iac.terraform.aws_triggers import FunctionRef as Named
from donjon.scan.iac.terraform.module import Module
from donjon.scan.iac.terraform.policies import statements
from donjon.scan.iac.terraform.syntax import Block
from donjon.scan.iac.terraform.values import Choice, to_bool, to_int, to_str, to_strs

__all__ = ["apis", "buckets", "queues", "user_pools"]

_BLOCK_FLAGS = (
    "block_public_acls",
    "block_public_policy",
    "ignore_public_acls",
    "restrict_public_buckets",
)


def _where(block: Block, address: str) -> Where:
    return Where(block.path, block.line, address)


def _related(module: Module, kind: str, field: str, named: Named) -> list[tuple[str, Block]]:
    return [(a, b) for a, b in module.of_type(kind) if named.named_by(module.attr(b, field)[0])]


def _encryption(module: Module, block: Block | None) -> tuple[Val[str], Val[str]]:
    rule = block.first("rule") if block else None
    default = rule.first("apply_server_side_encryption_by_default") if rule else None
    algorithm, line = module.attr(default, "sse_algorithm")
    if not line:
        return Val.of("managed"), Val()
    options = list(algorithm) if isinstance(algorithm, Choice) else [algorithm]
    mapped = [
        ("kms" if v.startswith("aws:kms") else "managed") if isinstance(v, str) else v
        for v in options
    ]
    value = Choice(mapped) if isinstance(algorithm, Choice) else mapped[0]
    return to_str(value, line), to_str(*module.attr(default, "kms_master_key_id"))


def _blocked(module: Module, blocks: list[tuple[str, Block]]) -> Val[bool]:
    if not blocks:
        return Val.of(False)
    block = blocks[0][1]
    flags = [to_bool(*module.attr(block, f)) for f in _BLOCK_FLAGS]
    unknown = tuple(u for f in flags for u in f.unresolved)
    if unknown:
        return Val((), unknown, block.line)
    return Val.of(all(f.one is True for f in flags), block.line)


def buckets(module: Module) -> tuple[Bucket, ...]:
    out = []
    for address, block in module.of_type("aws_s3_bucket"):
        named = Named(address, module.attr(block, "bucket")[0])
        acl = to_str(*module.attr(block, "acl"))
        for _, acl_block in _related(module, "aws_s3_bucket_acl", "bucket", named):
            acl = to_str(*module.attr(acl_block, "acl")) if "acl" in acl_block.attributes else acl
        policy = statements(*module.attr(block, "policy"), block.path)
        for _, policy_block in _related(module, "aws_s3_bucket_policy", "bucket", named):
            policy += statements(*module.attr(policy_block, "policy"), policy_block.path)
        sse = [
            b
            for _, b in _related(
                module, "aws_s3_bucket_server_side_encryption_configuration", "bucket", named
            )
        ]
        encryption, key = _encryption(
            module, sse[0] if sse else block.first("server_side_encryption_configuration")
        )
        out.append(
            Bucket(
                _where(block, address),
                Cloud.AWS,
                acl=acl if acl.present else Val.of("private"),
                policy=policy,
                public_access_blocked=_blocked(
                    module, _related(module, "aws_s3_bucket_public_access_block", "bucket", named)
                ),
                encryption=encryption,
                kms_key=key,
            )
        )
    return tuple(out)


def _queue_encryption(module: Module, block: Block, *, sqs: bool) -> Val[str]:
    _, line = module.attr(block, "kms_master_key_id")
    if line:
        return Val.of("kms", line)  # whichever key it is (`kms_key` says which)
    managed, m_line = module.attr(block, "sqs_managed_sse_enabled")
    if sqs and managed is False:
        return Val.of("none", m_line)
    return Val.of("managed" if sqs else "none", m_line)


def queues(module: Module) -> tuple[Queue, ...]:
    out = []
    for kind, policy_kind, field in (
        ("aws_sqs_queue", "aws_sqs_queue_policy", "queue_url"),
        ("aws_sns_topic", "aws_sns_topic_policy", "arn"),
    ):
        for address, block in module.of_type(kind):
            named = Named(address, module.attr(block, "name")[0])
            policy = statements(*module.attr(block, "policy"), block.path)
            for _, policy_block in _related(module, policy_kind, field, named):
                policy += statements(*module.attr(policy_block, "policy"), policy_block.path)
            out.append(
                Queue(
                    _where(block, address),
                    Cloud.AWS,
                    kind.removeprefix("aws_").split("_")[0],
                    encryption=_queue_encryption(module, block, sqs=kind == "aws_sqs_queue"),
                    kms_key=to_str(*module.attr(block, "kms_master_key_id")),
                    policy=policy,
                )
            )
    return tuple(out)


def apis(module: Module) -> tuple[HttpApi, ...]:
    out = []
    for kind, stage_kind, field, trigger in (
        ("aws_apigatewayv2_api", "aws_apigatewayv2_stage", "api_id", TriggerKind.HTTP_API),
        ("aws_api_gateway_rest_api", "aws_api_gateway_stage", "rest_api_id", TriggerKind.REST_API),
    ):
        for address, block in module.of_type(kind):
            stages = [b for _, b in _related(module, stage_kind, field, Named(address, None))]
            logged = any(s.first("access_log_settings") for s in stages)
            traced = any(module.attr(s, "xray_tracing_enabled")[0] is True for s in stages)
            out.append(
                HttpApi(
                    _where(block, address),
                    trigger,
                    cors_origins=to_strs(
                        *module.attr(block.first("cors_configuration"), "allow_origins")
                    ),
                    cors_credentials=to_bool(
                        *module.attr(block.first("cors_configuration"), "allow_credentials")
                    ),
                    access_log=Val.of(logged),
                    tracing=Val.of(traced),
                )
            )
    return tuple(out)


def user_pools(module: Module) -> tuple[UserPool, ...]:
    out = []
    for address, block in module.of_type("aws_cognito_user_pool"):
        policy = block.first("password_policy")
        length = to_int(*module.attr(policy, "minimum_length")) if policy else Val.of(8)
        classes = 4
        if policy:
            flags = ("require_lowercase", "require_uppercase", "require_numbers", "require_symbols")
            classes = sum(module.attr(policy, f)[0] is True for f in flags)
        mfa = to_str(*module.attr(block, "mfa_configuration"))
        out.append(
            UserPool(
                _where(block, address),
                "user-pool",
                password_min_length=length if length.present else Val.of(8),
                password_classes=Val.of(classes, policy.line if policy else 0),
                mfa=mfa if mfa.present else Val.of("OFF"),
            )
        )
    for address, block in module.of_type("aws_cognito_identity_pool"):
        allowed = to_bool(*module.attr(block, "allow_unauthenticated_identities"))
        out.append(
            UserPool(
                _where(block, address),
                "identity-pool",
                allow_unauthenticated=allowed if allowed.present else Val.of(False),
            )
        )
    return tuple(out)
