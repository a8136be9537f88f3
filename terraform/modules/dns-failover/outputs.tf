output "health_check_id" {
  description = "Id of the primary's health check (a DR plan's require-healthy may name it)."
  value       = aws_route53_health_check.primary.id
}

output "record_fqdn" {
  description = "The failover name."
  value       = aws_route53_record.this["primary"].fqdn
}
