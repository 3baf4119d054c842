"""Azure Functions and storage in a Terraform module.

- ``azurerm_linux_function_app``, ``azurerm_windows_function_app`` and the legacy
  ``azurerm_function_app``: the runtime from ``site_config.application_stack``
  (``python_version = "3.8"`` is ``python3.8``, ``node_version = "~12"`` is
  ``node12``) or ``linux_fx_version`` (``PYTHON|3.8``), ``app_settings`` as the
  environment, ``https_only`` (absent: false), the managed ``identity`` as the role.
- Each ``azurerm_function_app_function`` of the app with an ``httpTrigger`` binding
  in its ``config_json`` is an HTTP trigger: ``authLevel`` anonymous is ``none``
  (function is ``function_key``, admin ``admin_key``), unless the app's
  ``auth_settings``/``auth_settings_v2`` is enabled and turns unauthenticated
  requests away (``app_service_auth``).
- ``azurerm_storage_account`` (public blob access allowed unless
  ``allow_nested_items_to_be_public``/``allow_blob_public_access`` is false;
  ``min_tls_version``) and each ``azurerm_storage_container`` (``container_access_type``
  blob or container is ``public-read``).
"""

from __future__ import annotations

from typing import Any

from donjon.scan.iac.model import Bucket, Cloud, Function, Trigger, TriggerKind, Val, Where
from donjon.scan.iac.terraform.aws_triggers import FunctionRef as Named
from donjon.scan.iac.terraform.module import Module
from donjon.scan.iac.terraform.policy_document import decode
from donjon.scan.iac.terraform.syntax import Block
from donjon.scan.iac.terraform.values import describe, env_vars, to_bool, to_str

__all__ = ["azure_functions", "storage"]

_APPS = ("azurerm_linux_function_app", "azurerm_windows_function_app", "azurerm_function_app")
_STACKS = {
    "python_version": "python",
    "node_version": "node",
    "dotnet_version": "dotnet",
    "java_version": "java",
    "powershell_core_version": "powershell",
}
_LEVELS = {"anonymous": "none", "function": "function_key", "admin": "admin_key"}


def _runtime(module: Module, app: Block) -> Val[str]:
    site = app.first("site_config")
    stack = site.first("application_stack") if site else None
    for name, prefix in _STACKS.items():
        version, line = module.attr(stack, name)
        if line:
            return to_str(
                f"{prefix}{version.lstrip('~')}" if isinstance(version, str) else version, line
            )
    fx, line = module.attr(site, "linux_fx_version")
    if isinstance(fx, str) and "|" in fx:
        language, _, version = fx.partition("|")
        return Val.of(f"{language.lower()}{version.lstrip('~')}", line)
    return to_str(fx, line)


def _app_auth(module: Module, app: Block) -> bool | None:
    """True when app-level authentication turns unauthenticated requests away; None
    when that is not known."""
    v1 = app.first("auth_settings")
    v2 = app.first("auth_settings_v2")
    if v2 is not None:
        enabled, _ = module.attr(v2, "auth_enabled")
        required, _ = module.attr(v2, "require_authentication")
        action, _ = module.attr(v2, "unauthenticated_action")
        if isinstance(enabled, bool) and isinstance(required, bool | None):
            return enabled and required is True and action != "AllowAnonymous"
        return None
    if v1 is not None:
        enabled, _ = module.attr(v1, "enabled")
        action, _ = module.attr(v1, "unauthenticated_client_action")
        if isinstance(enabled, bool):
            return enabled and action != "AllowAnonymous"
        return None
    return False


def _http_triggers(module: Module, app: Block, named: Named) -> tuple[Trigger, ...]:
    protected = _app_auth(module, app)
    out = []
    for address, block in module.of_type("azurerm_function_app_function"):
        if not named.named_by(module.attr(block, "function_app_id")[0]):
            continue
        config, line = module.attr(block, "config_json")
        document = decode(config, line)
        bindings = document.get("bindings", []) if isinstance(document, dict) else None
        where = Where(block.path, block.line, address)
        if bindings is None:
            out.append(Trigger(TriggerKind.HTTP, where, auth=to_str(document, line)))
            continue
        for binding in bindings:
            if not isinstance(binding, dict) or binding.get("type") != "httpTrigger":
                continue
            level = str(binding.get("authLevel", "function")).lower()
            auth: Val[str] = Val.of(_LEVELS.get(level, level), line)
            if protected:
                auth = Val.of("app_service_auth", line)
            methods = binding.get("methods")
            method = ",".join(methods) if isinstance(methods, list) else ""
            out.append(Trigger(TriggerKind.HTTP, where, auth=auth, method=method))
    return tuple(out)


def azure_functions(module: Module) -> tuple[Function, ...]:
    out = []
    for kind in _APPS:
        for address, app in module.of_type(kind):
            name, n_line = module.attr(app, "name")
            environment = env_vars(*module.attr(app, "app_settings"))
            https = to_bool(*module.attr(app, "https_only"))
            out.append(
                Function(
                    Where(app.path, app.line, address),
                    Cloud.AZURE,
                    name=to_str(name, n_line),
                    runtime=_runtime(module, app),
                    environment=environment,
                    role=to_str(*module.attr(app.first("identity"), "type")),
                    triggers=_http_triggers(module, app, Named(address, name)),
                    https_only=https if https.present else Val.of(False),
                )
            )
    return tuple(out)


def _public(module: Module, account: Block) -> Val[bool]:
    """Public blob access *blocked* on the account (azurerm 3+'s default allows it)."""
    for name in ("allow_nested_items_to_be_public", "allow_blob_public_access"):
        value, line = module.attr(account, name)
        if line:
            allowed = to_bool(value, line)
            return Val(tuple(not v for v in allowed.known), allowed.unresolved, line)
    return Val.of(False)


def storage(module: Module) -> tuple[Bucket, ...]:
    out = []
    accounts: dict[str, tuple[Named, Bucket]] = {}
    for address, account in module.of_type("azurerm_storage_account"):
        cmk = account.first("customer_managed_key") is not None or any(
            named_by_account(module, b, address) for _, b in module.of_type(_CMK)
        )
        bucket = Bucket(
            Where(account.path, account.line, address),
            Cloud.AZURE,
            acl=Val.of("private"),
            public_access_blocked=_public(module, account),
            encryption=Val.of("kms" if cmk else "managed"),
            kms_key=to_str(*module.attr(account.first("customer_managed_key"), "key_vault_key_id")),
            min_tls_version=_tls(module, account),
        )
        accounts[address] = (Named(address, module.attr(account, "name")[0]), bucket)
        out.append(bucket)
    for address, container in module.of_type("azurerm_storage_container"):
        access, line = module.attr(container, "container_access_type")
        acl = to_str(_acl(access), line) if line else Val.of("private")
        owner: Any = (
            module.attr(container, "storage_account_name")[0]
            or module.attr(container, "storage_account_id")[0]
        )
        why = "storage account not in this module"
        blocked: Val[bool] = Val.unknown(describe(owner), why)
        encryption: Val[str] = Val.of("managed")  # Azure Storage always encrypts at rest
        for named, account_bucket in accounts.values():
            if named.named_by(owner):
                blocked = account_bucket.public_access_blocked
                encryption = account_bucket.encryption
        out.append(
            Bucket(
                Where(container.path, container.line, address),
                Cloud.AZURE,
                acl=acl,
                public_access_blocked=blocked,
                encryption=encryption,
            )
        )
    return tuple(out)


_CMK = "azurerm_storage_account_customer_managed_key"


def named_by_account(module: Module, block: Block, account: str) -> bool:
    """An ``azurerm_storage_account_customer_managed_key`` for the account at `account`."""
    value, _ = module.attr(block, "storage_account_id")
    return Named(account, None).named_by(value)


def _acl(access: Any) -> Any:
    if isinstance(access, str):
        return "private" if access == "private" else "public-read"
    return access


def _tls(module: Module, account: Block) -> Val[str]:
    value, line = module.attr(account, "min_tls_version")
    return to_str(value, line) if line else Val.of("TLS1_2")
