variable "name" {
  description = "Name of the IAM role lifeboat runs as."
  type        = string
}

variable "s3_repositories" {
  description = "S3 buckets of lifeboat repositories, by bucket name: the key prefixes lifeboat uses (\"\" for the whole bucket), the bucket's region and key, and its replica in the DR region (read only: restores in a region failover)."
  type = map(object({
    bucket_arn          = string
    region              = string
    prefixes            = list(string)
    kms_key_arn         = optional(string)
    replica_bucket_arn  = optional(string)
    replica_region      = optional(string)
    replica_kms_key_arn = optional(string)
  }))
  default = {}
}

variable "rds_sources" {
  description = "RDS sources by source name (their lifeboat:source tag): the instance, its region, the prefix of lifeboat's snapshot names, the regions snapshots are copied to and the KMS keys of the copies."
  type = map(object({
    instance        = string
    region          = string
    snapshot_prefix = string
    copy_regions    = list(string)
    kms_key_arns    = list(string)
  }))
  default = {}
}

variable "dr_region" {
  description = "Region where DR plans restore RDS instances (tagged lifeboat:dr-run) from the copies."
  type        = string
}

variable "route53" {
  description = "The hosted zone DR plans switch: its id, the record names they write and the health checks they wait on. Null: no DNS rights."
  type = object({
    zone_id          = string
    record_names     = list(string)
    health_check_ids = list(string)
  })
  default = null
}

variable "oidc_provider_arn" {
  description = "ARN of the Kubernetes cluster's IAM OIDC provider (IRSA)."
  type        = string
}

variable "oidc_issuer" {
  description = "The cluster's OIDC issuer without https:// (e.g. oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE)."
  type        = string
}

variable "service_account" {
  description = "The Kubernetes service account lifeboat runs as."
  type = object({
    namespace = string
    name      = string
  })
}

variable "tags" {
  description = "Tags of the role."
  type        = map(string)
  default     = {}
}
