# A Route53 health check on the primary endpoint and PRIMARY/SECONDARY failover
# records: Route53 answers with the secondary while the primary fails its check. A DR
# plan's route53_failover step may point the records elsewhere; apply this module
# again, with the new targets, once the incident is over.

locals {
  records = {
    primary   = merge(var.primary, { failover = "PRIMARY" })
    secondary = merge(var.secondary, { failover = "SECONDARY" })
  }
}

resource "aws_route53_health_check" "primary" {
  fqdn              = var.health_check.fqdn
  type              = var.health_check.type
  port              = var.health_check.port
  resource_path     = var.health_check.resource_path
  failure_threshold = var.health_check.failure_threshold
  request_interval  = var.health_check.request_interval
  tags              = merge(var.tags, { Name = "${var.record_name} primary" })
}

resource "aws_route53_record" "this" {
  for_each        = local.records
  zone_id         = var.zone_id
  name            = var.record_name
  type            = each.value.alias_zone_id == null ? "CNAME" : "A"
  set_identifier  = each.key
  ttl             = each.value.alias_zone_id == null ? var.ttl : null
  records         = each.value.alias_zone_id == null ? [each.value.target] : null
  health_check_id = each.key == "primary" ? aws_route53_health_check.primary.id : null

  failover_routing_policy {
    type = each.value.failover
  }

  dynamic "alias" {
    for_each = each.value.alias_zone_id == null ? [] : [each.value]
    content {
      name                   = alias.value.target
      zone_id                = alias.value.alias_zone_id
      evaluate_target_health = true
    }
  }
}
