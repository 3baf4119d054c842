# Bucket IAM granting object reads to allUsers.
resource "google_storage_bucket" "reports" {
  name                        = "reports"
  location                    = "EU"
  public_access_prevention    = "inherited" # expect: DJ-IAC-013
  uniform_bucket_level_access = true
  encryption {
    default_kms_key_name = "projects/p/locations/eu/keyRings/r/cryptoKeys/storage"
  }
}

resource "google_storage_bucket_iam_member" "public" {
  bucket = google_storage_bucket.reports.name
  role   = "roles/storage.objectViewer"
  member = "allUsers" # expect: DJ-IAC-012
}
