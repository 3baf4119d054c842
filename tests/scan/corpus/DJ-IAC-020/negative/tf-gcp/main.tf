# The same function on a supported runtime.
resource "google_cloudfunctions_function" "current" {
  name        = "current"
  runtime     = "nodejs22"
  entry_point = "handler"
}
