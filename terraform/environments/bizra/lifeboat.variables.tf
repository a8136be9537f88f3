# Set by `lifeboat terraform vars --policies policies/bizra --out terraform/environments/bizra`,
# which writes lifeboat.auto.tfvars.json from the policy set: change the policies, not
# these values. tests/terraform checks that the command writes exactly these variables,
# each of its declared type.

variable "primary_region" {
  description = "Region of the S3 repositories and the RDS instances."
  type        = string
}

variable "dr_region" {
  description = "Region the RDS snapshots are copied to, the buckets replicate to and the runbooks restore in."
  type        = string
}

variable "s3_buckets" {
  description = "S3 buckets by name: the repositories they hold and their prefixes, encryption and object lock."
  type = map(object({
    repositories  = list(string)
    prefixes      = list(string)
    sse_algorithm = string
    kms_key_id    = string
    object_lock = object({
      mode                   = string
      default_retention_days = number
    })
  }))
}

variable "azure_storage" {
  description = "Azure storage accounts by name: the repositories they hold, the container and the prefixes."
  type = map(object({
    repositories = list(string)
    container    = string
    prefixes     = list(string)
  }))
}

variable "rds_sources" {
  description = "RDS sources by source name: instance, region, lifeboat's snapshot name prefix and the copies."
  type = map(object({
    instance        = string
    region          = string
    snapshot_prefix = string
    copies = list(object({
      region     = string
      kms_key_id = string
    }))
  }))
}

variable "route53" {
  description = "The hosted zone the DR plans switch, their record names and health checks; null when no plan switches DNS."
  type = object({
    zone_id          = string
    record_names     = list(string)
    health_check_ids = list(string)
  })
}
