# Bucket IAM granting object reads to one service account only.
resource "google_storage_bucket" "reports" {
  name                        = "reports"
  location                    = "EU"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  encryption {
    default_kms_key_name = "projects/p/locations/eu/keyRings/r/cryptoKeys/storage"
  }
}

resource "google_storage_bucket_iam_member" "reader" {
  bucket = google_storage_bucket.reports.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:reader@project.iam.gserviceaccount.com"
}
