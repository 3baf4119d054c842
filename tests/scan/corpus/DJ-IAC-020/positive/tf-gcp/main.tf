# A first-generation Cloud Function on Node.js 10, decommissioned.
resource "google_cloudfunctions_function" "legacy" {
  name        = "legacy"
  runtime     = "nodejs10" # expect: DJ-IAC-020
  entry_point = "handler"
}
