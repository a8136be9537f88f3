# The IAM role lifeboat runs as, through a Kubernetes service account (IRSA), with the
# least privilege its AWS calls need. operations.txt beside this file lists every
# operation lifeboat sends and the actions each needs; tests/terraform checks that this
# document allows exactly those actions, each scoped to lifeboat's own resources: the
# repository prefixes, the snapshots named and tagged by lifeboat, instances tagged by
# a DR run, the one hosted zone.

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  partition = data.aws_partition.current.partition
  account   = data.aws_caller_identity.current.account_id

  # Per bucket: what may be listed (s3:prefix values) and the objects under each
  # repository prefix. The replica is only read: a restore in a region failover.
  s3 = {
    for bucket, r in var.s3_repositories : bucket => {
      bucket   = r.bucket_arn
      buckets  = compact([r.bucket_arn, r.replica_bucket_arn])
      prefixes = flatten([for p in r.prefixes : p == "" ? ["*"] : [p, "${p}/*"]])
      write    = [for p in r.prefixes : p == "" ? "${r.bucket_arn}/*" : "${r.bucket_arn}/${p}/*"]
      read     = flatten([for b in compact([r.bucket_arn, r.replica_bucket_arn]) : [for p in r.prefixes : p == "" ? "${b}/*" : "${b}/${p}/*"]])
    }
  }
  s3_write_keys = compact([for bucket, r in var.s3_repositories : r.kms_key_arn])
  s3_read_keys  = distinct(compact(flatten([for bucket, r in var.s3_repositories : [r.kms_key_arn, r.replica_kms_key_arn]])))
  s3_services   = distinct(flatten([for bucket, r in var.s3_repositories : [for region in compact([r.region, r.replica_region]) : "s3.${region}.amazonaws.com"]]))

  # Per RDS source: its instance, and the snapshots lifeboat names after it in every
  # region it copies to.
  rds = {
    for source, s in var.rds_sources : source => {
      instance  = "arn:${local.partition}:rds:${s.region}:${local.account}:db:${s.instance}"
      snapshot  = "arn:${local.partition}:rds:${s.region}:${local.account}:snapshot:${s.snapshot_prefix}*"
      snapshots = [for region in distinct(concat([s.region], s.copy_regions)) : "arn:${local.partition}:rds:${region}:${local.account}:snapshot:${s.snapshot_prefix}*"]
      # Listing a region's snapshots is authorised against all of them: lifeboat lists
      # and then reads the tags of those named after the source.
      listed      = [for region in distinct(concat([s.region], s.copy_regions)) : "arn:${local.partition}:rds:${region}:${local.account}:snapshot:*"]
      dr_snapshot = "arn:${local.partition}:rds:${var.dr_region}:${local.account}:snapshot:${s.snapshot_prefix}*"
    }
  }
  rds_sources  = [for source, s in var.rds_sources : source]
  rds_keys     = distinct(flatten([for source, s in var.rds_sources : s.kms_key_arns]))
  dr_instances = "arn:${local.partition}:rds:${var.dr_region}:${local.account}:db:*"
  # A restore also names the groups of the new instance.
  dr_groups = [
    "arn:${local.partition}:rds:${var.dr_region}:${local.account}:og:*",
    "arn:${local.partition}:rds:${var.dr_region}:${local.account}:pg:*",
    "arn:${local.partition}:rds:${var.dr_region}:${local.account}:subgrp:*",
  ]

  route53       = var.route53 == null ? [] : [var.route53]
  health_checks = flatten([for z in local.route53 : z.health_check_ids])
}

data "aws_iam_policy_document" "lifeboat" {
  # --- S3 repositories

  # Listing (prune, catalog rebuild, reconcile) only under the repository prefixes.
  dynamic "statement" {
    for_each = local.s3
    content {
      actions   = ["s3:ListBucket"]
      resources = statement.value.buckets

      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = statement.value.prefixes
      }
    }
  }

  # Neither call takes a key prefix in IAM: the unfinished uploads to clean up, and
  # the bucket's object-lock setting that doctor checks.
  dynamic "statement" {
    for_each = local.s3
    content {
      actions   = ["s3:ListBucketMultipartUploads", "s3:GetBucketObjectLockConfiguration"]
      resources = [statement.value.bucket]
    }
  }

  # Backups, manifests and verification results; the retain-until of each object.
  # No s3:BypassGovernanceRetention: a lock is never shortened.
  dynamic "statement" {
    for_each = local.s3
    content {
      actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutObjectRetention"]
      resources = statement.value.write
    }
  }

  dynamic "statement" {
    for_each = local.s3
    content {
      actions   = ["s3:GetObject", "s3:GetObjectRetention"]
      resources = statement.value.read
    }
  }

  # SSE-KMS: S3 uses the bucket keys on lifeboat's behalf, and only S3 may.
  dynamic "statement" {
    for_each = length(local.s3_write_keys) > 0 ? ["kms"] : []
    content {
      sid       = "RepositoryKeysEncrypt"
      actions   = ["kms:GenerateDataKey"]
      resources = local.s3_write_keys

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = local.s3_services
      }
    }
  }

  dynamic "statement" {
    for_each = length(local.s3_read_keys) > 0 ? ["kms"] : []
    content {
      sid       = "RepositoryKeysDecrypt"
      actions   = ["kms:Decrypt"]
      resources = local.s3_read_keys

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = local.s3_services
      }
    }
  }

  # --- RDS snapshots (src/engine/rds.rs): made, copied and tagged as the source's

  dynamic "statement" {
    for_each = local.rds
    content {
      actions   = ["rds:CreateDBSnapshot"]
      resources = [statement.value.instance, statement.value.snapshot]

      condition {
        test     = "StringEquals"
        variable = "aws:RequestTag/lifeboat:source"
        values   = [statement.key]
      }
    }
  }

  dynamic "statement" {
    for_each = local.rds
    content {
      actions   = ["rds:CopyDBSnapshot", "rds:AddTagsToResource"]
      resources = statement.value.snapshots

      condition {
        test     = "StringEquals"
        variable = "aws:RequestTag/lifeboat:source"
        values   = [statement.key]
      }
    }
  }

  # Prune deletes a snapshot only when its tag names the source.
  dynamic "statement" {
    for_each = local.rds
    content {
      actions   = ["rds:DeleteDBSnapshot"]
      resources = statement.value.snapshots

      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/lifeboat:source"
        values   = [statement.key]
      }
    }
  }

  # Reads: a tag condition would hide the snapshots lifeboat must look at to decide.
  dynamic "statement" {
    for_each = local.rds
    content {
      actions   = ["rds:DescribeDBSnapshots", "rds:ListTagsForResource"]
      resources = statement.value.listed
    }
  }

  dynamic "statement" {
    for_each = local.rds
    content {
      actions   = ["rds:DescribeDBInstances", "rds:ListTagsForResource"]
      resources = [statement.value.instance]
    }
  }

  # --- DR restores (src/dr/step/rds.rs) in the DR region

  # From lifeboat's copies only.
  dynamic "statement" {
    for_each = length(local.rds_sources) > 0 ? ["dr"] : []
    content {
      sid       = "RestoreFromLifeboatSnapshots"
      actions   = ["rds:RestoreDBInstanceFromDBSnapshot"]
      resources = [for source, s in local.rds : s.dr_snapshot]

      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/lifeboat:source"
        values   = local.rds_sources
      }
    }
  }

  # Into instances that carry the run's tag from their creation on.
  dynamic "statement" {
    for_each = length(local.rds_sources) > 0 ? ["dr"] : []
    content {
      sid       = "RestoreTaggedInstances"
      actions   = ["rds:RestoreDBInstanceFromDBSnapshot"]
      resources = concat([local.dr_instances], local.dr_groups)

      condition {
        test     = "Null"
        variable = "aws:RequestTag/lifeboat:dr-run"
        values   = ["false"]
      }
    }
  }

  dynamic "statement" {
    for_each = length(local.rds_sources) > 0 ? ["dr"] : []
    content {
      sid       = "TagRestoredInstances"
      actions   = ["rds:AddTagsToResource"]
      resources = [local.dr_instances]

      condition {
        test     = "Null"
        variable = "aws:RequestTag/lifeboat:dr-run"
        values   = ["false"]
      }
    }
  }

  # Teardown deletes only what a DR run created.
  dynamic "statement" {
    for_each = length(local.rds_sources) > 0 ? ["dr"] : []
    content {
      sid       = "DeleteRestoredInstances"
      actions   = ["rds:DeleteDBInstance"]
      resources = [local.dr_instances]

      condition {
        test     = "Null"
        variable = "aws:ResourceTag/lifeboat:dr-run"
        values   = ["false"]
      }
    }
  }

  # Waiting on a restored instance, and reading its run tag, before it carries it.
  dynamic "statement" {
    for_each = length(local.rds_sources) > 0 ? ["dr"] : []
    content {
      sid       = "ReadRestoredInstances"
      actions   = ["rds:DescribeDBInstances", "rds:ListTagsForResource"]
      resources = [local.dr_instances]
    }
  }

  # The keys snapshot copies (and restores from them) are encrypted with: RDS takes a
  # grant on them for the copy; doctor reads whether they are enabled.
  dynamic "statement" {
    for_each = length(local.rds_keys) > 0 ? ["kms"] : []
    content {
      sid       = "SnapshotKeysDescribe"
      actions   = ["kms:DescribeKey"]
      resources = local.rds_keys
    }
  }

  dynamic "statement" {
    for_each = length(local.rds_keys) > 0 ? ["kms"] : []
    content {
      sid       = "SnapshotKeysGrantToRds"
      actions   = ["kms:CreateGrant"]
      resources = local.rds_keys

      condition {
        test     = "Bool"
        variable = "kms:GrantIsForAWSResource"
        values   = ["true"]
      }
    }
  }

  # --- DNS failover (src/dr/step/route53.rs): the plans' records in the one zone

  dynamic "statement" {
    for_each = local.route53
    content {
      sid       = "ChangePlanRecords"
      actions   = ["route53:ChangeResourceRecordSets"]
      resources = ["arn:${local.partition}:route53:::hostedzone/${statement.value.zone_id}"]

      condition {
        test     = "ForAllValues:StringEquals"
        variable = "route53:ChangeResourceRecordSetsNormalizedRecordNames"
        values   = statement.value.record_names
      }
    }
  }

  dynamic "statement" {
    for_each = local.route53
    content {
      sid       = "ReadZone"
      actions   = ["route53:ListResourceRecordSets"]
      resources = ["arn:${local.partition}:route53:::hostedzone/${statement.value.zone_id}"]
    }
  }

  # A change id is made by Route53 for each change: no narrower ARN exists.
  dynamic "statement" {
    for_each = local.route53
    content {
      sid       = "WaitForChanges"
      actions   = ["route53:GetChange"]
      resources = ["arn:${local.partition}:route53:::change/*"]
    }
  }

  dynamic "statement" {
    for_each = length(local.health_checks) > 0 ? ["route53"] : []
    content {
      sid       = "ReadHealthChecks"
      actions   = ["route53:GetHealthCheckStatus"]
      resources = [for id in local.health_checks : "arn:${local.partition}:route53:::healthcheck/${id}"]
    }
  }
}

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.service_account.namespace}:${var.service_account.name}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lifeboat" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "lifeboat" {
  name   = "lifeboat"
  role   = aws_iam_role.lifeboat.id
  policy = data.aws_iam_policy_document.lifeboat.json
}
