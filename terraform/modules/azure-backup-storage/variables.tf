variable "account" {
  description = "Storage account name (the policy's azure://ACCOUNT/CONTAINER/PREFIX)."
  type        = string
}

variable "container" {
  description = "Container lifeboat's repositories live in."
  type        = string
}

variable "prefixes" {
  description = "Blob name prefixes of the repositories (\"\" for the whole container); the lifecycle rules apply under them."
  type        = list(string)
}

variable "resource_group_name" {
  description = "Resource group of the storage account."
  type        = string
}

variable "location" {
  description = "Azure region of the storage account."
  type        = string
}

variable "replication_type" {
  description = "Account replication (LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS)."
  type        = string
  default     = "GZRS"
}

variable "immutability" {
  description = "Version-level immutability: days each blob version is kept from its creation, and the policy's state (Unlocked can still be changed; Locked cannot). Null: none. Keep the period no longer than the shortest keep-within of the sources stored here, or prune cannot remove what it gave up."
  type = object({
    days  = number
    state = optional(string, "Unlocked")
  })
  default = null

  validation {
    condition     = var.immutability == null || contains(["Unlocked", "Locked"], try(var.immutability.state, ""))
    error_message = "immutability.state must be Unlocked or Locked."
  }
}

variable "previous_version_days" {
  description = "Days a blob version stays after it stopped being current (a prune's delete, an overwrite) before lifecycle management removes it: the margin to undo a wrong prune."
  type        = number
  default     = 30

  validation {
    condition     = var.previous_version_days >= 1
    error_message = "previous_version_days must be at least 1."
  }
}

variable "deleted_tag" {
  description = "Delete current blobs carrying this blob index tag (name and value), days after their last change: for a prune that tags what it gives up instead of deleting it. Null: no such rule."
  type = object({
    name  = string
    value = string
    days  = number
  })
  default = null
}

variable "soft_delete_days" {
  description = "Days a deleted blob or container can be undeleted."
  type        = number
  default     = 14
}

variable "lifeboat_principal_id" {
  description = "Object id of the identity lifeboat runs as (workload identity); it gets Storage Blob Data Contributor on the container only. Null: no role assignment."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags of the storage account."
  type        = map(string)
  default     = {}
}
