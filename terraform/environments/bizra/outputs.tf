output "lifeboat_role_arn" {
  description = "Annotate lifeboat's service account with it: eks.amazonaws.com/role-arn."
  value       = module.lifeboat_iam.role_arn
}

output "buckets" {
  description = "Each bucket's ARN and its replica's in the DR region."
  value = {
    for bucket, m in module.backup_bucket : bucket => {
      arn         = m.bucket_arn
      replica_arn = m.replica_bucket_arn
    }
  }
}

output "azure_containers" {
  description = "URL of each Azure container."
  value       = { for account, m in module.azure_backup_storage : account => m.container_url }
}

output "health_check_id" {
  description = "The primary's health check (null without failover records): a DR plan's require-healthy may name it."
  value       = one([for m in module.dns_failover : m.health_check_id])
}
