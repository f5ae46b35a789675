output "sns_topic_arn" {
  description = "Put this in etlguard.yml under alerts: channels: - sns: so etlguard's own alerts go to the same people."
  value       = aws_sns_topic.etl_alerts.arn
}

output "alarm_arns" {
  description = "The alarms, by name."
  value = merge(
    {
      rollback_failures = aws_cloudwatch_metric_alarm.rollback_failures.arn
      runs_failed       = aws_cloudwatch_metric_alarm.runs_failed.arn
    },
    { for a in aws_cloudwatch_metric_alarm.glue_job_failure : "glue_job_failure" => a.arn },
  )
}

output "pitr_policy_arn" {
  description = "The IAM policy for `etlguard pitr`, when pitr_cluster_identifier is set; attach it to the role that runs etlguard."
  value       = one(aws_iam_policy.etlguard_pitr[*].arn)
}
