variable "zone_id" {
  description = "Hosted zone id (the zone of the DR plans' route53_failover steps)."
  type        = string
}

variable "record_name" {
  description = "Name of the failover record, e.g. api.example.com."
  type        = string
}

variable "primary" {
  description = "Where the name points while the primary is healthy: a host name (CNAME), or an alias target (alias_zone_id set: an A alias, e.g. a load balancer)."
  type = object({
    target        = string
    alias_zone_id = optional(string)
  })
}

variable "secondary" {
  description = "Where the name points while the primary is unhealthy: the service in the DR region."
  type = object({
    target        = string
    alias_zone_id = optional(string)
  })
}

variable "health_check" {
  description = "How the primary is probed: host name, protocol, port and path."
  type = object({
    fqdn              = string
    type              = optional(string, "HTTPS")
    port              = optional(number, 443)
    resource_path     = optional(string, "/healthz")
    failure_threshold = optional(number, 3)
    request_interval  = optional(number, 30)
  })
}

variable "ttl" {
  description = "TTL of CNAME records in seconds; short, so clients follow a failover quickly."
  type        = number
  default     = 60
}

variable "tags" {
  description = "Tags of the health check."
  type        = map(string)
  default     = {}
}
