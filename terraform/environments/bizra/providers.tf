provider "aws" {
  region = var.primary_region
}

# The DR region: bucket replicas, the keys of RDS snapshot copies.
provider "aws" {
  alias  = "dr"
  region = var.dr_region
}

provider "azurerm" {
  features {}
  subscription_id = var.azure_subscription_id
  # The storage account takes no shared keys; terraform manages its data plane with
  # Entra ID too.
  storage_use_azuread = true
}
