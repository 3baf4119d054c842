# The same bucket kept private, with public access prevention enforced.
resource "google_storage_bucket" "assets" {
  name                        = "assets"
  location                    = "EU"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  encryption {
    default_kms_key_name = "projects/p/locations/eu/keyRings/r/cryptoKeys/storage"
  }
}

resource "google_storage_bucket_acl" "assets" {
  bucket         = google_storage_bucket.assets.name
  predefined_acl = "private"
}
