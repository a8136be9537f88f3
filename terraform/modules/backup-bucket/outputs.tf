output "bucket" {
  description = "Bucket name."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "Bucket ARN."
  value       = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  description = "ARN of the key objects are encrypted with (null with AES256)."
  value       = local.kms_key_arn
}

output "replica_bucket_arn" {
  description = "ARN of the replica in the DR region (null without one)."
  value       = local.replicate ? aws_s3_bucket.replica[0].arn : null
}

output "replica_kms_key_arn" {
  description = "ARN of the replica's key (null without a replica or with AES256)."
  value       = local.replicate && local.kms ? aws_kms_key.replica[0].arn : null
}
