resource "aws_cognito_identity_pool" "identities" {
  identity_pool_name               = "orders"
  allow_unauthenticated_identities = false
}
