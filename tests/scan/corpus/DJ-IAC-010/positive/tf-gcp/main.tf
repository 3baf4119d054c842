# An HTTP Cloud Function anyone on the internet may invoke.
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

resource "google_cloud_run_service_iam_member" "public" {
  service = google_cloudfunctions2_function.hook.name
  role    = "roles/run.invoker"
  member  = "allUsers" # expect: DJ-IAC-010, DJ-IAC-014
}
