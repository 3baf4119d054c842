"""Google Cloud Functions and Cloud Storage of a Terraform module in the model."""

from __future__ import annotations

from pathlib import Path

from donjon.scan.iac.model import App, Cloud, TriggerKind
from donjon.scan.iac.terraform import TerraformFormat
from donjon.scan.project import discover

MAIN = """
resource "google_cloudfunctions_function" "v1" {
  name                         = "v1"
  runtime                      = "python37"
  entry_point                  = "handler"
  trigger_http                 = true
  https_trigger_security_level = "SECURE_OPTIONAL"
  environment_variables = {
    MODE = "prod"
  }
}
resource "google_cloudfunctions_function_iam_member" "public" {
  cloud_function = google_cloudfunctions_function.v1.name
  role           = "roles/cloudfunctions.invoker"
  member         = "allUsers"
}
resource "google_cloudfunctions2_function" "v2" {
  name = "v2"
  build_config {
    runtime     = "nodejs20"
    entry_point = "main"
  }
  service_config {
    environment_variables = {
      LEVEL = "debug"
    }
    ingress_settings = "ALLOW_ALL"
  }
}
resource "google_cloud_run_service_iam_binding" "v2" {
  service = google_cloudfunctions2_function.v2.name
  role    = "roles/run.invoker"
  members = ["serviceAccount:caller@p.iam.gserviceaccount.com"]
}
resource "google_storage_bucket" "open" {
  name                        = "open"
  uniform_bucket_level_access = true
}
resource "google_storage_bucket_iam_member" "open" {
  bucket = google_storage_bucket.open.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}
resource "google_storage_bucket" "closed" {
  name                     = "closed"
  public_access_prevention = "enforced"
}
"""


def _app(tmp_path: Path) -> App:
    (tmp_path / "main.tf").write_text(MAIN)
    loaded = TerraformFormat().load(discover(tmp_path))
    assert loaded.notes == ()
    (app,) = loaded.apps
    return app


def test_first_generation_function_public_invoker(tmp_path: Path) -> None:
    """runtime, entry point and environment; allUsers as invoker makes the HTTP
    trigger's auth "none"; SECURE_OPTIONAL is not HTTPS-only."""
    functions = {f.where.resource: f for f in _app(tmp_path).functions}
    v1 = functions["google_cloudfunctions_function.v1"]
    assert v1.cloud is Cloud.GCP
    assert (v1.runtime.one, v1.handler.one) == ("python37", "handler")
    assert [(e.name, e.value.one) for e in v1.environment] == [("MODE", "prod")]
    (trigger,) = v1.triggers
    assert (trigger.kind, trigger.auth.one) == (TriggerKind.HTTP, "none")
    assert trigger.auth.line == 15
    (grant,) = v1.invoke_policy
    assert grant.principals == ("*",)
    assert v1.https_only.one is False


def test_second_generation_function_private_invoker(tmp_path: Path) -> None:
    """build_config and service_config are read; a Cloud Run binding to a service
    account only leaves the HTTP trigger behind IAM."""
    functions = {f.where.resource: f for f in _app(tmp_path).functions}
    v2 = functions["google_cloudfunctions2_function.v2"]
    assert (v2.runtime.one, v2.handler.one) == ("nodejs20", "main")
    assert [(e.name, e.value.one) for e in v2.environment] == [("LEVEL", "debug")]
    (trigger,) = v2.triggers
    assert trigger.auth.one == "iam"
    assert v2.invoke_policy[0].principals == ("serviceAccount:caller@p.iam.gserviceaccount.com",)


def test_storage_buckets(tmp_path: Path) -> None:
    """allUsers on a bucket is a public policy statement; public access prevention
    enforced blocks public access."""
    buckets = {b.where.resource: b for b in _app(tmp_path).buckets}
    open_bucket = buckets["google_storage_bucket.open"]
    assert open_bucket.policy[0].principals == ("*",)
    assert open_bucket.public_access_blocked.one is False
    assert buckets["google_storage_bucket.closed"].public_access_blocked.one is True


def test_internal_ingress_keeps_a_public_invoker_private(tmp_path: Path) -> None:
    """allUsers on a function whose ingress is internal only is not reachable from the
    internet: the trigger's auth is "private" (the grant stays in the invoke policy)."""
    text = """
resource "google_cloudfunctions2_function" "internal" {
  name = "internal"
  service_config {
    ingress_settings = "ALLOW_INTERNAL_ONLY"
  }
}
resource "google_cloudfunctions2_function_iam_member" "all" {
  cloud_function = google_cloudfunctions2_function.internal.name
  role           = "roles/cloudfunctions.invoker"
  member         = "allUsers"
}
"""
    (tmp_path / "main.tf").write_text(text)
    (fn,) = TerraformFormat().load(discover(tmp_path)).apps[0].functions
    (trigger,) = fn.triggers
    assert trigger.auth.one == "private"
    assert fn.invoke_policy[0].principals == ("*",)
