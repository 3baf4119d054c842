# An Azure function whose HTTP binding takes anonymous requests, and no App Service
# authentication in front of it.
resource "azurerm_linux_function_app" "orders" {
  name       = "orders"
  https_only = true
  site_config {
    application_stack {
      python_version = "3.12"
    }
  }
}

resource "azurerm_function_app_function" "list" {
  name            = "list"
  function_app_id = azurerm_linux_function_app.orders.id
  config_json = jsonencode({ # expect: DJ-IAC-010
    bindings = [
      { type = "httpTrigger", direction = "in", name = "req", authLevel = "anonymous" },
      { type = "http", direction = "out", name = "res" },
    ]
  })
}
