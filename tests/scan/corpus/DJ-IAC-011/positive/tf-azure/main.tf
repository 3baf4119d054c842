# A blob container anyone may read, in an account that allows public containers.
resource "azurerm_storage_account" "uploads" {
  name                            = "uploads"
  allow_nested_items_to_be_public = true # expect: DJ-IAC-013
  min_tls_version                 = "TLS1_2"
  customer_managed_key {
    key_vault_key_id          = "https://vault.vault.azure.net/keys/uploads/1"
    user_assigned_identity_id = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/storage"
  }
}

resource "azurerm_storage_container" "images" {
  name                  = "images"
  storage_account_name  = azurerm_storage_account.uploads.name
  container_access_type = "blob" # expect: DJ-IAC-011
}
