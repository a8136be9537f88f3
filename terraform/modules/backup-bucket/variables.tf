variable "bucket" {
  description = "Name of the bucket lifeboat's repositories live in (the policy's s3://BUCKET/PREFIX)."
  type        = string
}

variable "sse_algorithm" {
  description = "Default encryption: \"aws:kms\" or \"AES256\" (the policy's sse)."
  type        = string
  default     = "aws:kms"

  validation {
    condition     = contains(["aws:kms", "AES256"], var.sse_algorithm)
    error_message = "sse_algorithm must be \"aws:kms\" or \"AES256\"."
  }
}

variable "kms_key_id" {
  description = "The policy's kms-key-id: an alias (alias/NAME, created here) or the ARN of an existing key. Null with aws:kms: a key is created for the bucket."
  type        = string
  default     = null

  # lifeboat's IAM policy names the key by ARN: a bare key id would leave it unknown.
  validation {
    condition     = var.kms_key_id == null || can(regex("^(alias/|arn:)", var.kms_key_id))
    error_message = "kms_key_id must be an alias (alias/NAME) or a key ARN; write the policy's kms-key-id as one."
  }
}

variable "object_lock" {
  description = "Object lock: mode (GOVERNANCE or COMPLIANCE) and the default retention for objects put without their own retain-until (lifeboat sets one on every backup object). Null: no object lock."
  type = object({
    mode                   = string
    default_retention_days = optional(number)
  })
  default = null

  validation {
    condition     = var.object_lock == null || contains(["GOVERNANCE", "COMPLIANCE"], try(var.object_lock.mode, ""))
    error_message = "object_lock.mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "replica_region" {
  description = "Region of the replica bucket (the DR region), reached through the aws.replica provider. Null: no replica."
  type        = string
  default     = null
}

variable "noncurrent_version_days" {
  description = "Days a version stays after it stopped being current (a prune's delete, an overwrite) before lifecycle removes it: the margin to undo a wrong prune. Object lock keeps a locked version longer."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "abort_incomplete_multipart_days" {
  description = "Days after which an unfinished multipart upload is aborted (lifeboat aborts its own; this catches a killed process)."
  type        = number
  default     = 7
}

variable "deleted_tag" {
  description = "Expire current objects carrying this tag (key and value), days after they were last written: for a prune that tags what it gives up instead of deleting it. Null: no such rule."
  type = object({
    key   = string
    value = string
    days  = number
  })
  default = null
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}
