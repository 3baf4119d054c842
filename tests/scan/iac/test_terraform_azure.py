"""Azure Functions and storage of a Terraform module in the model."""

from __future__ import annotations

from pathlib import Path

from donjon.scan.iac.model import App, Cloud, TriggerKind
from donjon.scan.iac.terraform import TerraformFormat
from donjon.scan.project import discover

APPS = """
variable "python" {
  default = "3.8"
}
resource "azurerm_linux_function_app" "open" {
  name       = "open-app"
  https_only = false
  site_config {
    application_stack {
      python_version = var.python
    }
  }
  app_settings = {
    DB_HOST = "db.internal"
  }
  identity {
    type = "SystemAssigned"
  }
}
resource "azurerm_function_app_function" "hello" {
  name            = "hello"
  function_app_id = azurerm_linux_function_app.open.id
  config_json = jsonencode({
    bindings = [
      { type = "httpTrigger", authLevel = "anonymous", direction = "in", methods = ["get"] },
      { type = "http", direction = "out", name = "res" },
    ]
  })
}
resource "azurerm_windows_function_app" "guarded" {
  name       = "guarded-app"
  https_only = true
  site_config {
    application_stack {
      node_version = "~12"
    }
  }
  auth_settings_v2 {
    auth_enabled           = true
    require_authentication = true
    unauthenticated_action = "Return401"
  }
}
resource "azurerm_function_app_function" "guarded" {
  name            = "guarded"
  function_app_id = azurerm_windows_function_app.guarded.id
  config_json = jsonencode({
    bindings = [{ type = "httpTrigger", authLevel = "anonymous" }]
  })
}
"""

STORAGE = """
resource "azurerm_storage_account" "sa" {
  name                            = "sa"
  allow_nested_items_to_be_public = true
  min_tls_version                 = "TLS1_0"
}
resource "azurerm_storage_container" "pub" {
  name                  = "pub"
  storage_account_name  = azurerm_storage_account.sa.name
  container_access_type = "blob"
}
resource "azurerm_storage_account" "closed" {
  name                            = "closed"
  allow_nested_items_to_be_public = false
}
"""


def _app(tmp_path: Path) -> App:
    (tmp_path / "apps.tf").write_text(APPS)
    (tmp_path / "storage.tf").write_text(STORAGE)
    loaded = TerraformFormat().load(discover(tmp_path))
    assert loaded.notes == ()
    (app,) = loaded.apps
    return app


def test_function_apps_runtime_settings_and_https(tmp_path: Path) -> None:
    """application_stack versions become runtimes ("python3.8" through a variable,
    "node12"); app_settings are the environment; https_only and the identity are kept."""
    functions = {f.where.resource: f for f in _app(tmp_path).functions}
    open_app = functions["azurerm_linux_function_app.open"]
    assert open_app.cloud is Cloud.AZURE
    assert open_app.runtime.one == "python3.8"
    assert [(e.name, e.value.one) for e in open_app.environment] == [("DB_HOST", "db.internal")]
    assert open_app.https_only.one is False
    assert open_app.role.one == "SystemAssigned"
    guarded = functions["azurerm_windows_function_app.guarded"]
    assert guarded.runtime.one == "node12"
    assert guarded.https_only.one is True


def test_anonymous_http_trigger_unless_app_auth(tmp_path: Path) -> None:
    """authLevel anonymous is auth "none"; with auth_settings_v2 requiring login the
    same binding is behind App Service authentication."""
    functions = {f.where.resource: f for f in _app(tmp_path).functions}
    (hello,) = functions["azurerm_linux_function_app.open"].triggers
    assert (hello.kind, hello.auth.one, hello.method) == (TriggerKind.HTTP, "none", "get")
    assert hello.where.resource == "azurerm_function_app_function.hello"
    (guarded,) = functions["azurerm_windows_function_app.guarded"].triggers
    assert guarded.auth.one == "app_service_auth"


def test_storage_accounts_and_containers(tmp_path: Path) -> None:
    """A container with access type blob is public-read on an account that allows
    public nested items; min_tls_version is kept; an account with it off is blocked."""
    buckets = {b.where.resource: b for b in _app(tmp_path).buckets}
    account = buckets["azurerm_storage_account.sa"]
    assert account.public_access_blocked.one is False
    assert account.min_tls_version.one == "TLS1_0"
    container = buckets["azurerm_storage_container.pub"]
    assert container.acl.one == "public-read"
    assert container.public_access_blocked.one is False
    assert buckets["azurerm_storage_account.closed"].public_access_blocked.one is True


def test_legacy_app_auth_settings_v1_and_unknown_bindings(tmp_path: Path) -> None:
    """The legacy azurerm_function_app reads linux_fx_version; auth_settings v1 with
    AllowAnonymous leaves an anonymous binding open; a config_json that is not known is
    an HTTP trigger with unresolved auth, not a missing one."""
    text = """
resource "azurerm_function_app" "old" {
  name = "old"
  site_config {
    linux_fx_version = "PYTHON|3.7"
  }
  auth_settings {
    enabled                       = true
    unauthenticated_client_action = "AllowAnonymous"
  }
}
resource "azurerm_function_app_function" "open" {
  function_app_id = azurerm_function_app.old.id
  config_json     = jsonencode({ bindings = [{ type = "httpTrigger", authLevel = "anonymous" }] })
}
resource "azurerm_function_app_function" "unknown" {
  function_app_id = azurerm_function_app.old.id
  config_json     = file("function.json")
}
"""
    (tmp_path / "main.tf").write_text(text)
    loaded = TerraformFormat().load(discover(tmp_path))
    (app,) = loaded.apps[0].functions
    assert app.runtime.one == "python3.7"
    assert app.https_only.one is False
    triggers = {t.where.resource: t for t in app.triggers}
    assert triggers["azurerm_function_app_function.open"].auth.one == "none"
    unknown = triggers["azurerm_function_app_function.unknown"].auth
    assert unknown.unresolved[0].expression == 'file("function.json")'
