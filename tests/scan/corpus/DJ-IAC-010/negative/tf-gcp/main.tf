# The same function, invoked only by one service account.
resource "google_cloudfunctions2_function" "hook" {
  name = "hook"
  build_config {
    runtime     = "python312"
    entry_point = "handle"
  }
  service_config {
    max_instance_count = 10
  }
}

resource "google_cloud_run_service_iam_member" "caller" {
  service = google_cloudfunctions2_function.hook.name
  role    = "roles/run.invoker"
  member  = "serviceAccount:caller@project.iam.gserviceaccount.com"
}
