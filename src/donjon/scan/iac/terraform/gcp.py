"""Google Cloud Functions and Cloud Storage in a Terraform module.

- ``google_cloudfunctions_function`` (1st gen): ``runtime``, ``entry_point``,
  ``environment_variables``, ``service_account_email`` as the role; ``trigger_http``
  is an HTTP trigger, ``https_trigger_security_level`` SECURE_ALWAYS is HTTPS only.
- ``google_cloudfunctions2_function``: ``build_config`` runtime and entry point,
  ``service_config`` environment, service account and ``ingress_settings``; HTTP
  unless it has an ``event_trigger``.
- Who may invoke: ``google_cloudfunctions_function_iam_member``/``_binding``,
  ``google_cloudfunctions2_function_iam_*`` and ``google_cloud_run_service_iam_*`` /
  ``google_cloud_run_v2_service_iam_*`` naming the function. ``allUsers`` and
  ``allAuthenticatedUsers`` are public (``*``): the HTTP trigger's auth is ``none``
  (``private`` when ingress is internal only), else ``iam``.
- ``google_storage_bucket``: ``public_access_prevention = "enforced"`` blocks public
  access; ``google_storage_bucket_iam_member``/``_binding`` with ``allUsers`` is a
  public policy statement; ``google_storage_bucket_acl`` ``predefined_acl``.
"""

from __future__ import annotations

from typing import Any

from donjon.scan.iac.model import (
    Bucket,
    Cloud,
    Effect,
    Function,
    Statement,
    Trigger,
    TriggerKind,
    Unresolved,
    Val,
    Where,
)
from donjon.scan.iac.terraform.aws_triggers import FunctionRef as Named
from donjon.scan.iac.terraform.module import Module
from donjon.scan.iac.terraform.syntax import Block
from donjon.scan.iac.terraform.values import Choice, env_vars, to_str

__all__ = ["gcp_functions", "gcs_buckets"]

_PUBLIC = frozenset({"allUsers", "allAuthenticatedUsers"})
_INVOKER_IAM = (
    "google_cloudfunctions_function_iam_member",
    "google_cloudfunctions_function_iam_binding",
    "google_cloudfunctions2_function_iam_member",
    "google_cloudfunctions2_function_iam_binding",
    "google_cloud_run_service_iam_member",
    "google_cloud_run_service_iam_binding",
    "google_cloud_run_v2_service_iam_member",
    "google_cloud_run_v2_service_iam_binding",
)
_ACLS = {"publicRead": "public-read", "publicReadWrite": "public-read-write"}
_ACLS |= {"authenticatedRead": "authenticated-read"}


def _members(module: Module, block: Block) -> tuple[list[Any], int]:
    """The members an IAM member/binding resource grants, and their line."""
    member, line = module.attr(block, "member")
    if line:
        return (list(member) if isinstance(member, Choice) else [member]), line
    members, line = module.attr(block, "members")
    return (list(members) if isinstance(members, list) else [members]), line


def _grants(
    module: Module, kinds: tuple[str, ...], fields: tuple[str, ...], named: Named
) -> list[Statement]:
    """The IAM member/binding resources of `kinds` naming the resource, as statements
    (principal ``*`` for allUsers/allAuthenticatedUsers)."""
    out = []
    for kind in kinds:
        for _, block in module.of_type(kind):
            target = next((module.attr(block, f)[0] for f in fields if f in block.attributes), None)
            if not named.named_by(target):
                continue
            role = to_str(*module.attr(block, "role"))
            principals: list[str] = []
            unresolved: list[Unresolved] = list(role.unresolved)
            members, line = _members(module, block)
            for member in members:
                if isinstance(member, str):
                    principals.append("*" if member in _PUBLIC else member)
                else:
                    unresolved.extend(to_str(member, block.line).unresolved)
            out.append(
                Statement(
                    Effect.ALLOW,
                    line or block.line,
                    actions=role.known,
                    principals=tuple(principals),
                    unresolved=tuple(unresolved),
                    path=block.path,
                )
            )
    return out


def _auth(invokers: list[Statement], ingress: Any) -> Val[str]:
    if isinstance(ingress, str) and ingress.startswith("ALLOW_INTERNAL"):
        return Val.of("private")
    if any("*" in s.principals for s in invokers):
        return Val.of("none", next(s.line for s in invokers if "*" in s.principals))
    unknown = tuple(u for s in invokers for u in s.unresolved)
    return Val(("iam",), unknown)


def gcp_functions(module: Module) -> tuple[Function, ...]:
    out = []
    for kind in ("google_cloudfunctions_function", "google_cloudfunctions2_function"):
        for address, block in module.of_type(kind):
            name, n_line = module.attr(block, "name")
            fields = ("cloud_function", "service", "name")
            invokers = _grants(module, _INVOKER_IAM, fields, Named(address, name))
            where = Where(block.path, block.line, address)
            if kind.endswith("2_function"):
                build, service = block.first("build_config"), block.first("service_config")
                runtime, handler = module.attr(build, "runtime"), module.attr(build, "entry_point")
                environment = env_vars(*module.attr(service, "environment_variables"))
                account = module.attr(service, "service_account_email")
                ingress, _ = module.attr(service, "ingress_settings")
                http = block.first("event_trigger") is None
                https: Val[bool] = Val.of(True)
            else:
                runtime, handler = module.attr(block, "runtime"), module.attr(block, "entry_point")
                environment = env_vars(*module.attr(block, "environment_variables"))
                account = module.attr(block, "service_account_email")
                ingress, _ = module.attr(block, "ingress_settings")
                http = module.attr(block, "trigger_http")[0] is True
                level, l_line = module.attr(block, "https_trigger_security_level")
                https = Val.of(level == "SECURE_ALWAYS", l_line)
            triggers = (
                (Trigger(TriggerKind.HTTP, where, auth=_auth(invokers, ingress)),) if http else ()
            )
            out.append(
                Function(
                    where,
                    Cloud.GCP,
                    name=to_str(name, n_line),
                    runtime=to_str(*runtime),
                    handler=to_str(*handler),
                    environment=environment,
                    role=to_str(*account),
                    invoke_policy=tuple(invokers),
                    triggers=triggers,
                    https_only=https,
                )
            )
    return tuple(out)


def gcs_buckets(module: Module) -> tuple[Bucket, ...]:
    out = []
    kinds = ("google_storage_bucket_iam_member", "google_storage_bucket_iam_binding")
    for address, block in module.of_type("google_storage_bucket"):
        named = Named(address, module.attr(block, "name")[0])
        prevention, p_line = module.attr(block, "public_access_prevention")
        prevention = "inherited" if prevention is None else prevention
        acl: Val[str] = Val.of("private")
        for _, acl_block in module.of_type("google_storage_bucket_acl"):
            if named.named_by(module.attr(acl_block, "bucket")[0]):
                value, line = module.attr(acl_block, "predefined_acl")
                acl = to_str(_ACLS.get(value, "private") if isinstance(value, str) else value, line)
        key, k_line = module.attr(block.first("encryption"), "default_kms_key_name")
        out.append(
            Bucket(
                Where(block.path, block.line, address),
                Cloud.GCP,
                acl=acl,
                policy=tuple(_grants(module, kinds, ("bucket",), named)),
                public_access_blocked=_prevented(prevention, p_line),
                encryption=Val.of("kms" if k_line else "managed"),
                kms_key=to_str(key, k_line),
            )
        )
    return tuple(out)


def _prevented(value: Any, line: int) -> Val[bool]:
    """``public_access_prevention``: ``enforced`` blocks; absent or ``inherited`` does
    not (unless the organisation enforces it, which the module cannot show)."""
    setting = to_str(value, line)
    return Val(tuple(v == "enforced" for v in setting.known), setting.unresolved, line)
