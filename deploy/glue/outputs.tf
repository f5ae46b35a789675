output "job_name" {
  description = "The Glue job; pass it as glue_job_name to deploy/terraform for the alarm on its failed tasks."
  value       = aws_glue_job.etlguard.name
}

output "role_arn" {
  description = "The job's IAM role."
  value       = aws_iam_role.glue.arn
}

output "additional_python_modules" {
  description = "What Glue installs before the script runs: the etlguard wheel, then python_modules."
  value       = local.python_modules
}
