terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
      # The replica bucket lives in the DR region.
      configuration_aliases = [aws.replica]
    }
  }
}
