# Python 3.6 on Azure Functions, long past its end of support.
resource "azurerm_linux_function_app" "legacy" {
  name       = "legacy"
  https_only = true
  site_config {
    application_stack {
      python_version = var.python # expect: DJ-IAC-020
    }
  }
}

variable "python" {
  default = "3.6"
}
