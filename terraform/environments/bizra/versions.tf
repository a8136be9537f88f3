terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.0"
    }
  }

  # State of the infrastructure the backups depend on must not live only in the
  # primary region: configure a backend that survives its loss, e.g.
  # backend "s3" { bucket = "...", key = "lifeboat/bizra.tfstate", region = "us-west-2" }
}
