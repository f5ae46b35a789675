# Layer 4 of the design note: CloudWatch alarms on etlguard's metrics, and on the Glue job's
# failed tasks, emailed through one SNS topic. etlguard publishes every counter with the
# dimension JobName alone (and again with JobName + Target); CloudWatch matches dimensions
# exactly, so these alarms use JobName and nothing else.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 4.0"
    }
  }
}

locals {
  prefix     = coalesce(var.name_prefix, var.job_name)
  ok_actions = var.notify_on_ok ? [aws_sns_topic.etl_alerts.arn] : []
}

resource "aws_sns_topic" "etl_alerts" {
  name = "${local.prefix}-etl-alerts"
  tags = var.tags
}

resource "aws_sns_topic_subscription" "etl_email_alert" {
  topic_arn = aws_sns_topic.etl_alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

# A rollback that failed leaves tables a person must restore: the loudest alarm.
resource "aws_cloudwatch_metric_alarm" "rollback_failures" {
  alarm_name          = "${local.prefix}-etlguard-rollback-failed"
  alarm_description   = "etlguard could not roll back ${var.job_name}: a person must run the recovery command in the alert email."
  namespace           = var.namespace
  metric_name         = "RollbackFailures"
  dimensions          = { JobName = var.job_name }
  statistic           = "Sum"
  period              = var.period_seconds
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.etl_alerts.arn]
  ok_actions          = local.ok_actions
  tags                = var.tags
}

# Any run that did not succeed: rolled back (ETL or audit failed), snapshot failed, or rollback failed.
resource "aws_cloudwatch_metric_alarm" "runs_failed" {
  alarm_name          = "${local.prefix}-etlguard-run-failed"
  alarm_description   = "An etlguard run of ${var.job_name} failed; the protected tables were rolled back unless the rollback alarm fired too."
  namespace           = var.namespace
  metric_name         = "RunsFailed"
  dimensions          = { JobName = var.job_name }
  statistic           = "Sum"
  period              = var.period_seconds
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.etl_alerts.arn]
  ok_actions          = local.ok_actions
  tags                = var.tags
}

# The design note's alarm, with the dimensions Glue really publishes: its job metrics carry
# JobName, JobRunId and Type, so an alarm on JobName alone (as in the note) never sees data.
resource "aws_cloudwatch_metric_alarm" "glue_job_failure" {
  count = var.glue_job_name == null ? 0 : 1

  alarm_name          = "${local.prefix}-glue-etl-failure"
  alarm_description   = "Glue job ${coalesce(var.glue_job_name, "-")} had failed tasks."
  namespace           = "Glue"
  metric_name         = "glue.driver.aggregate.numFailedTasks"
  dimensions          = { JobName = var.glue_job_name, JobRunId = "ALL", Type = "count" }
  statistic           = "Sum"
  period              = var.period_seconds
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.etl_alerts.arn]
  ok_actions          = local.ok_actions
  tags                = var.tags
}

# `etlguard pitr`: what the role that runs etlguard may do to make, use and delete a clone of
# the cluster. Deleting is allowed only for clusters and instances named etlguard-pitr-*, the
# names etlguard gives its clones, so the role cannot delete the production cluster.
data "aws_iam_policy_document" "etlguard_pitr" {
  count = var.pitr_cluster_identifier == null ? 0 : 1

  statement {
    sid       = "Describe"
    actions   = ["rds:DescribeDBClusters", "rds:DescribeDBInstances"]
    resources = ["*"]
  }

  statement {
    sid     = "CloneTheCluster"
    actions = ["rds:RestoreDBClusterToPointInTime", "rds:AddTagsToResource"]
    resources = [
      "arn:*:rds:*:*:cluster:${var.pitr_cluster_identifier}",
      "arn:*:rds:*:*:cluster:etlguard-pitr-*",
      "arn:*:rds:*:*:subgrp:*",
    ]
  }

  statement {
    sid       = "OneInstanceForTheClone"
    actions   = ["rds:CreateDBInstance", "rds:AddTagsToResource"]
    resources = ["arn:*:rds:*:*:db:etlguard-pitr-*", "arn:*:rds:*:*:cluster:etlguard-pitr-*"]
  }

  statement {
    sid       = "DeleteOnlyClones"
    actions   = ["rds:DeleteDBInstance", "rds:DeleteDBCluster"]
    resources = ["arn:*:rds:*:*:db:etlguard-pitr-*", "arn:*:rds:*:*:cluster:etlguard-pitr-*"]
  }
}

resource "aws_iam_policy" "etlguard_pitr" {
  count       = var.pitr_cluster_identifier == null ? 0 : 1
  name        = "${local.prefix}-etlguard-pitr"
  description = "etlguard pitr on ${coalesce(var.pitr_cluster_identifier, "-")}: clone, read, delete only its own clones."
  policy      = data.aws_iam_policy_document.etlguard_pitr[0].json
  tags        = var.tags
}
