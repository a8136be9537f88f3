output "role_arn" {
  description = "ARN of the role; annotate the service account with it (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.lifeboat.arn
}

output "role_name" {
  description = "Name of the role."
  value       = aws_iam_role.lifeboat.name
}

output "policy_json" {
  description = "The permissions policy document."
  value       = data.aws_iam_policy_document.lifeboat.json
}
