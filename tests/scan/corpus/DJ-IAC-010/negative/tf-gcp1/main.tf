resource "google_cloudfunctions_function" "hello" {
  name                  = "hello"
  runtime               = "python312"
  entry_point           = "handler"
  source_archive_bucket = "orders-src"
  source_archive_object = "hello.zip"
  trigger_http          = true
  https_trigger_security_level = "SECURE_ALWAYS"
}

resource "google_cloudfunctions_function_iam_member" "invoker" {
  cloud_function = google_cloudfunctions_function.hello.name
  role           = "roles/cloudfunctions.invoker"
  member         = "serviceAccount:web@orders.iam.gserviceaccount.com"
}
