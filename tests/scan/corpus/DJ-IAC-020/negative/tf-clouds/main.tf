resource "google_cloudfunctions_function" "thumbs" {
  name                  = "thumbs"
  runtime               = "python312"
  entry_point           = "handler"
  source_archive_bucket = "orders-src"
  source_archive_object = "thumbs.zip"
  event_trigger {
    event_type = "google.storage.object.finalize"
    resource   = "orders-uploads"
  }
}

resource "azurerm_linux_function_app" "reports" {
  name                       = "reports"
  resource_group_name        = "orders"
  location                   = "westeurope"
  service_plan_id            = "/subscriptions/0/resourceGroups/orders/providers/Microsoft.Web/serverFarms/plan"
  storage_account_name       = "orderssa"
  https_only                 = true
  site_config {
    application_stack {
      python_version = "3.12"
    }
  }
}
