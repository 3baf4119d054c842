# A supported Python version through the same variable.
resource "azurerm_linux_function_app" "current" {
  name       = "current"
  https_only = true
  site_config {
    application_stack {
      python_version = var.python
    }
  }
}

variable "python" {
  default = "3.12"
}
