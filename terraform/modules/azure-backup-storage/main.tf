# An Azure storage account and container for lifeboat repositories: blob versioning,
# optional version-level immutability, soft delete, no public access, no shared keys.
#
# Lifecycle management follows the rule of the S3 module: retention belongs to
# lifeboat's prune, so no rule deletes or archives a current blob by age. Previous
# versions go some time after they stopped being current, and (optionally) blobs a
# prune tagged as given up. Uncommitted blocks of an unfinished upload are discarded by
# Azure itself after seven days.

resource "azurerm_storage_account" "this" {
  name                     = var.account
  resource_group_name      = var.resource_group_name
  location                 = var.location
  account_tier             = "Standard"
  account_kind             = "StorageV2"
  account_replication_type = var.replication_type
  min_tls_version          = "TLS1_2"
  # lifeboat authenticates with Entra ID (workload identity), never with account keys.
  shared_access_key_enabled       = false
  allow_nested_items_to_be_public = false
  https_traffic_only_enabled      = true
  tags                            = var.tags

  blob_properties {
    versioning_enabled  = true
    change_feed_enabled = true

    delete_retention_policy {
      days = var.soft_delete_days
    }

    container_delete_retention_policy {
      days = var.soft_delete_days
    }
  }

  dynamic "immutability_policy" {
    for_each = var.immutability != null ? [var.immutability] : []
    content {
      allow_protected_append_writes = false
      state                         = immutability_policy.value.state
      period_since_creation_in_days = immutability_policy.value.days
    }
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_storage_container" "this" {
  name                  = var.container
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"
}

resource "azurerm_storage_management_policy" "this" {
  storage_account_id = azurerm_storage_account.this.id

  rule {
    name    = "expire-previous-versions"
    enabled = true

    filters {
      blob_types   = ["blockBlob"]
      prefix_match = [for p in var.prefixes : p == "" ? "${var.container}/" : "${var.container}/${p}/"]
    }

    actions {
      version {
        delete_after_days_since_creation = var.previous_version_days
      }
    }
  }

  dynamic "rule" {
    for_each = var.deleted_tag != null ? [var.deleted_tag] : []
    content {
      name    = "expire-tagged-deleted"
      enabled = true

      filters {
        blob_types   = ["blockBlob"]
        prefix_match = [for p in var.prefixes : p == "" ? "${var.container}/" : "${var.container}/${p}/"]

        match_blob_index_tag {
          name      = rule.value.name
          operation = "=="
          value     = rule.value.value
        }
      }

      actions {
        base_blob {
          delete_after_days_since_modification_greater_than = rule.value.days
        }
      }
    }
  }
}

resource "azurerm_role_assignment" "lifeboat" {
  count                = var.lifeboat_principal_id != null ? 1 : 0
  scope                = azurerm_storage_container.this.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = var.lifeboat_principal_id
}
