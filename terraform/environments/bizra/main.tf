# The runbooks' infrastructure for lifeboat: repositories in us-east-1 replicated to
# us-west-2, the Azure secondary, the keys of the RDS snapshot copies, lifeboat's IAM
# role and the DNS failover records. What comes from the policy set arrives through
# lifeboat.auto.tfvars.json (see lifeboat.variables.tf).

locals {
  tags = merge(var.tags, { "managed-by" = "terraform", "lifeboat-policies" = "policies/bizra" })

  # The keys of RDS snapshot copies that the policy names by alias are made here; one
  # named by ARN exists already.
  rds_copy_aliases = toset(flatten([
    for source, s in var.rds_sources : [
      for c in s.copies : c.kms_key_id if startswith(coalesce(c.kms_key_id, "-"), "alias/")
    ]
  ]))
}

resource "aws_kms_key" "rds_copy" {
  provider                = aws.dr
  for_each                = local.rds_copy_aliases
  description             = "lifeboat: RDS snapshot copies in ${var.dr_region} (${each.key})"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  tags                    = local.tags
}

resource "aws_kms_alias" "rds_copy" {
  provider      = aws.dr
  for_each      = local.rds_copy_aliases
  name          = each.key
  target_key_id = aws_kms_key.rds_copy[each.key].key_id
}

module "backup_bucket" {
  source   = "../../modules/backup-bucket"
  for_each = var.s3_buckets

  providers = {
    aws         = aws
    aws.replica = aws.dr
  }

  bucket         = each.key
  sse_algorithm  = each.value.sse_algorithm
  kms_key_id     = each.value.kms_key_id
  object_lock    = each.value.object_lock
  replica_region = var.dr_region
  tags           = local.tags
}

module "azure_backup_storage" {
  source   = "../../modules/azure-backup-storage"
  for_each = var.azure_storage

  account               = each.key
  container             = each.value.container
  prefixes              = each.value.prefixes
  resource_group_name   = var.azure_resource_group
  location              = var.azure_location
  lifeboat_principal_id = var.azure_lifeboat_principal_id
  tags                  = local.tags
}

module "dns_failover" {
  source = "../../modules/dns-failover"
  count  = var.route53 != null && var.dns_failover != null ? 1 : 0

  zone_id      = var.route53 == null ? "" : var.route53.zone_id
  record_name  = var.dns_failover == null ? "" : var.dns_failover.record_name
  primary      = var.dns_failover == null ? null : var.dns_failover.primary
  secondary    = var.dns_failover == null ? null : var.dns_failover.secondary
  health_check = var.dns_failover == null ? null : var.dns_failover.health_check
  tags         = local.tags
}

check "dns_failover_record_is_one_of_the_plans" {
  assert {
    condition     = try(contains(var.route53.record_names, lower(trimsuffix(var.dns_failover.record_name, "."))), var.dns_failover == null)
    error_message = "dns_failover.record_name is not among the records the DR plans' route53_failover steps write (route53.record_names): lifeboat's role may not change it, and no failover record is made without a zone."
  }
}

module "lifeboat_iam" {
  source = "../../modules/lifeboat-iam"

  name = var.iam_role_name
  s3_repositories = {
    for bucket, b in var.s3_buckets : bucket => {
      bucket_arn          = module.backup_bucket[bucket].bucket_arn
      region              = var.primary_region
      prefixes            = b.prefixes
      kms_key_arn         = module.backup_bucket[bucket].kms_key_arn
      replica_bucket_arn  = module.backup_bucket[bucket].replica_bucket_arn
      replica_region      = var.dr_region
      replica_kms_key_arn = module.backup_bucket[bucket].replica_kms_key_arn
    }
  }
  rds_sources = {
    for source, s in var.rds_sources : source => {
      instance        = s.instance
      region          = s.region
      snapshot_prefix = s.snapshot_prefix
      copy_regions    = [for c in s.copies : c.region]
      kms_key_arns = [
        for c in s.copies : contains(keys(aws_kms_key.rds_copy), c.kms_key_id) ? aws_kms_key.rds_copy[c.kms_key_id].arn : c.kms_key_id
        if c.kms_key_id != null
      ]
    }
  }
  dr_region = var.dr_region
  route53 = var.route53 == null ? null : {
    zone_id          = var.route53.zone_id
    record_names     = var.route53.record_names
    health_check_ids = concat(var.route53.health_check_ids, [for m in module.dns_failover : m.health_check_id])
  }
  oidc_provider_arn = var.eks_oidc_provider_arn
  oidc_issuer       = var.eks_oidc_issuer
  service_account   = var.service_account
  tags              = local.tags
}
