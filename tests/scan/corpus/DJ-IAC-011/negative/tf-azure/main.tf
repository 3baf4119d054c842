# A private container in an account that refuses public containers.
resource "azurerm_storage_account" "uploads" {
  name                            = "uploads"
  allow_nested_items_to_be_public = false
  min_tls_version                 = "TLS1_2"
  customer_managed_key {
    key_vault_key_id          = "https://vault.vault.azure.net/keys/uploads/1"
    user_assigned_identity_id = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/storage"
  }
}

resource "azurerm_storage_container" "images" {
  name                  = "images"
  storage_account_name  = azurerm_storage_account.uploads.name
  container_access_type = "private"
}
