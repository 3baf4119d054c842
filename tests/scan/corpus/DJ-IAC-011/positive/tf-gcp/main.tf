# A bucket whose predefined ACL lets anyone read its objects.
resource "google_storage_bucket" "assets" {
  name                        = "assets"
  location                    = "EU"
  public_access_prevention    = "inherited" # expect: DJ-IAC-013
  uniform_bucket_level_access = false
  encryption {
    default_kms_key_name = "projects/p/locations/eu/keyRings/r/cryptoKeys/storage"
  }
}

resource "google_storage_bucket_acl" "assets" {
  bucket         = google_storage_bucket.assets.name
  predefined_acl = "publicRead" # expect: DJ-IAC-011
}
