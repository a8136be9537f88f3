# An S3 bucket for lifeboat repositories: versioned, optionally object-locked,
# encrypted, never public, optionally replicated to the DR region.
#
# Retention belongs to lifeboat's prune, which knows which backup is the last good
# (verified) one. The lifecycle rules below therefore never expire a current object by
# age: they abort unfinished uploads, remove versions some time after they stopped
# being current, and (optionally) expire objects a prune tagged as given up.

locals {
  kms           = var.sse_algorithm == "aws:kms"
  create_key    = local.kms && (var.kms_key_id == null || startswith(coalesce(var.kms_key_id, "alias/"), "alias/"))
  key_alias     = coalesce(var.kms_key_id, "alias/${var.bucket}")
  kms_key_arn   = local.kms ? (local.create_key ? aws_kms_key.this[0].arn : var.kms_key_id) : null
  replicate     = var.replica_region != null
  replica_name  = "${var.bucket}-${coalesce(var.replica_region, "replica")}"
  replica_alias = "alias/${var.bucket}-replica"
}

resource "aws_kms_key" "this" {
  count                   = local.create_key ? 1 : 0
  description             = "lifeboat backups in s3://${var.bucket}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  count         = local.create_key ? 1 : 0
  name          = local.key_alias
  target_key_id = aws_kms_key.this[0].key_id
}

resource "aws_s3_bucket" "this" {
  bucket              = var.bucket
  object_lock_enabled = var.object_lock != null
  # Destroying the bucket must never empty it: the backups outlive this configuration.
  force_destroy = false
  tags          = var.tags

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "this" {
  count  = var.object_lock != null ? 1 : 0
  bucket = aws_s3_bucket.this.id

  # Without a default retention only the retain-until lifeboat puts on each object holds.
  dynamic "rule" {
    for_each = try(var.object_lock.default_retention_days, null) != null ? [var.object_lock] : []
    content {
      default_retention {
        mode = rule.value.mode
        days = rule.value.default_retention_days
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.sse_algorithm
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = local.kms
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.tls_only.json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    # Removes only delete markers left with no version behind them.
    expiration {
      expired_object_delete_marker = true
    }
  }

  dynamic "rule" {
    for_each = var.deleted_tag != null ? [var.deleted_tag] : []
    content {
      id     = "expire-tagged-deleted"
      status = "Enabled"

      filter {
        tag {
          key   = rule.value.key
          value = rule.value.value
        }
      }

      expiration {
        days = rule.value.days
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

# --- the replica in the DR region

resource "aws_kms_key" "replica" {
  provider                = aws.replica
  count                   = local.replicate && local.kms ? 1 : 0
  description             = "lifeboat backups replicated from s3://${var.bucket}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  tags                    = var.tags
}

resource "aws_kms_alias" "replica" {
  provider      = aws.replica
  count         = local.replicate && local.kms ? 1 : 0
  name          = local.replica_alias
  target_key_id = aws_kms_key.replica[0].key_id
}

resource "aws_s3_bucket" "replica" {
  provider            = aws.replica
  count               = local.replicate ? 1 : 0
  bucket              = local.replica_name
  object_lock_enabled = var.object_lock != null
  force_destroy       = false
  tags                = var.tags

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_versioning" "replica" {
  provider = aws.replica
  count    = local.replicate ? 1 : 0
  bucket   = aws_s3_bucket.replica[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "replica" {
  provider = aws.replica
  count    = local.replicate ? 1 : 0
  bucket   = aws_s3_bucket.replica[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.sse_algorithm
      kms_master_key_id = local.kms ? aws_kms_key.replica[0].arn : null
    }
    bucket_key_enabled = local.kms
  }
}

resource "aws_s3_bucket_public_access_block" "replica" {
  provider                = aws.replica
  count                   = local.replicate ? 1 : 0
  bucket                  = aws_s3_bucket.replica[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "replica" {
  provider = aws.replica
  count    = local.replicate ? 1 : 0
  bucket   = aws_s3_bucket.replica[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Replicas keep the retain-until of their source versions; they age out like the source.
resource "aws_s3_bucket_lifecycle_configuration" "replica" {
  provider = aws.replica
  count    = local.replicate ? 1 : 0
  bucket   = aws_s3_bucket.replica[0].id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.replica]
}

data "aws_iam_policy_document" "replication_trust" {
  count = local.replicate ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "replication" {
  count              = local.replicate ? 1 : 0
  name               = "${var.bucket}-replication"
  assume_role_policy = data.aws_iam_policy_document.replication_trust[0].json
  tags               = var.tags
}

data "aws_iam_policy_document" "replication" {
  count = local.replicate ? 1 : 0

  statement {
    sid       = "ReadSourceConfiguration"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]
  }

  statement {
    sid = "ReadSourceVersions"
    actions = [
      "s3:GetObjectVersionForReplication",
      "s3:GetObjectVersionAcl",
      "s3:GetObjectVersionTagging",
      "s3:GetObjectRetention",
      "s3:GetObjectLegalHold",
    ]
    resources = ["${aws_s3_bucket.this.arn}/*"]
  }

  statement {
    sid       = "WriteReplica"
    actions   = ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
    resources = ["${aws_s3_bucket.replica[0].arn}/*"]
  }

  dynamic "statement" {
    for_each = local.kms ? ["kms"] : []
    content {
      sid       = "DecryptSource"
      actions   = ["kms:Decrypt"]
      resources = [local.kms_key_arn]
    }
  }

  dynamic "statement" {
    for_each = local.kms ? ["kms"] : []
    content {
      sid       = "EncryptReplica"
      actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.replica[0].arn]
    }
  }
}

resource "aws_iam_role_policy" "replication" {
  count  = local.replicate ? 1 : 0
  name   = "replicate-to-${var.replica_region}"
  role   = aws_iam_role.replication[0].id
  policy = data.aws_iam_policy_document.replication[0].json
}

resource "aws_s3_bucket_replication_configuration" "this" {
  count  = local.replicate ? 1 : 0
  role   = aws_iam_role.replication[0].arn
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "to-${var.replica_region}"
    status = "Enabled"

    filter {}

    # A prune's delete markers follow, so the replica lists what the source lists;
    # the versions behind them stay, locked, until the lifecycle rule removes them.
    delete_marker_replication {
      status = "Enabled"
    }

    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = local.kms ? "Enabled" : "Disabled"
      }
    }

    destination {
      bucket        = aws_s3_bucket.replica[0].arn
      storage_class = "STANDARD"

      dynamic "encryption_configuration" {
        for_each = local.kms ? ["kms"] : []
        content {
          replica_kms_key_id = aws_kms_key.replica[0].arn
        }
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this, aws_s3_bucket_versioning.replica]
}
