# What the policy set does not know: the cluster, the Azure subscription, the DNS
# endpoints. Set them in a *.tfvars file (bizra.tfvars.example shows each).

variable "eks_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider lifeboat's service account authenticates through."
  type        = string
}

variable "eks_oidc_issuer" {
  description = "The cluster's OIDC issuer without https://."
  type        = string
}

variable "service_account" {
  description = "The Kubernetes service account lifeboat runs as."
  type = object({
    namespace = string
    name      = string
  })
  default = {
    namespace = "bizra"
    name      = "lifeboat"
  }
}

variable "iam_role_name" {
  description = "Name of lifeboat's IAM role."
  type        = string
  default     = "bizra-lifeboat"
}

variable "azure_subscription_id" {
  description = "Azure subscription of the storage account."
  type        = string
}

variable "azure_resource_group" {
  description = "Resource group of the storage account."
  type        = string
}

variable "azure_location" {
  description = "Azure region of the storage account."
  type        = string
}

variable "azure_lifeboat_principal_id" {
  description = "Object id of the workload identity lifeboat runs as in Azure; null: assign its role elsewhere."
  type        = string
  default     = null
}

variable "dns_failover" {
  description = "The failover record of the DR plans' zone: its name (one of the plans' records), the primary and secondary targets and the primary's health check. Null: no failover records."
  type = object({
    record_name = string
    primary = object({
      target        = string
      alias_zone_id = optional(string)
    })
    secondary = object({
      target        = string
      alias_zone_id = optional(string)
    })
    health_check = object({
      fqdn          = string
      resource_path = optional(string, "/healthz")
    })
  })
  default = null
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}
