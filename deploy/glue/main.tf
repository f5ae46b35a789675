# An AWS Glue 5.0 job (Python 3.11) that runs `etlguard run -- dbt build` against Aurora MySQL:
# the job script (glue_etlguard.py), the etlguard wheel and etlguard.yml are uploaded to S3; Glue
# installs the wheel and dbt through --additional-python-modules. Glue Python shell jobs run
# Python 3.9 and cannot run etlguard, which needs 3.11.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  prefix     = trimsuffix(var.s3_prefix, "/")
  script_key = "${local.prefix}/glue_etlguard.py"
  wheel_key  = "${local.prefix}/${basename(var.wheel_path)}"
  config_key = "${local.prefix}/etlguard.yml"
  dbt_key    = "${local.prefix}/dbt_project.zip"
  bucket_arn = "arn:${data.aws_partition.current.partition}:s3:::${var.s3_bucket}"
  python_modules = join(",", concat(
    ["s3://${var.s3_bucket}/${local.wheel_key}"],
    var.python_modules,
  ))
  default_arguments = {
    "--job-language"                     = "python"
    "--additional-python-modules"        = local.python_modules
    "--etlguard_config"                  = "s3://${var.s3_bucket}/${local.config_key}"
    "--dbt_project"                      = "s3://${var.s3_bucket}/${local.dbt_key}"
    "--dbt_command"                      = var.dbt_command
    "--enable-metrics"                   = "true"
    "--enable-continuous-cloudwatch-log" = "true"
  }
}

resource "aws_s3_object" "script" {
  bucket = var.s3_bucket
  key    = local.script_key
  source = "${path.module}/glue_etlguard.py"
  etag   = filemd5("${path.module}/glue_etlguard.py")
}

resource "aws_s3_object" "wheel" {
  bucket = var.s3_bucket
  key    = local.wheel_key
  source = var.wheel_path
  etag   = filemd5(var.wheel_path)
}

resource "aws_s3_object" "config" {
  bucket = var.s3_bucket
  key    = local.config_key
  source = var.config_path
  etag   = filemd5(var.config_path)
}

resource "aws_s3_object" "dbt_project" {
  bucket = var.s3_bucket
  key    = local.dbt_key
  source = var.dbt_project_zip
  etag   = filemd5(var.dbt_project_zip)
}

resource "aws_glue_job" "etlguard" {
  name              = var.job_name
  description       = "dbt under etlguard: snapshot, run, audit, and roll back the protected tables if anything fails"
  role_arn          = aws_iam_role.glue.arn
  glue_version      = "5.0"
  worker_type       = "G.1X"
  number_of_workers = 2
  timeout           = var.timeout_minutes
  max_retries       = 0 # etlguard's exit code says whether a retry can help; let the scheduler decide
  connections       = var.glue_connection_name == null ? [] : [var.glue_connection_name]

  command {
    name            = "glueetl"
    python_version  = "3"
    script_location = "s3://${var.s3_bucket}/${aws_s3_object.script.key}"
  }

  default_arguments = local.default_arguments

  execution_property {
    max_concurrent_runs = 1 # etlguard locks the target: a second run would only wait and fail (exit 3)
  }

  tags = var.tags
}

resource "aws_iam_role" "glue" {
  name               = "${var.job_name}-etlguard"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["glue.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy_attachment" "glue_service" {
  role       = aws_iam_role.glue.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSGlueServiceRole"
}

# What etlguard itself calls, and nothing more: the artifacts it reads, its metrics, its alerts,
# the database password (Secrets Manager) or an IAM token (rds-db:connect).
data "aws_iam_policy_document" "etlguard" {
  statement {
    sid       = "ReadArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/${local.prefix}/*"]
  }

  statement {
    sid       = "PutMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource: the namespace condition limits it
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }

  dynamic "statement" {
    for_each = var.alert_topic_arn == null ? [] : [var.alert_topic_arn]
    content {
      sid       = "PublishAlerts"
      actions   = ["sns:Publish"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.db_secret_arn == null ? [] : [var.db_secret_arn]
    content {
      sid       = "ReadDatabaseSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.rds_iam_db_user == null ? [] : [var.rds_iam_db_user]
    content {
      sid     = "ConnectWithIamToken"
      actions = ["rds-db:connect"]
      resources = [
        "arn:${data.aws_partition.current.partition}:rds-db:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:dbuser:${var.rds_cluster_resource_id}/${statement.value}",
      ]
    }
  }

  dynamic "statement" {
    for_each = var.report_s3_prefix == null ? [] : [var.report_s3_prefix]
    content {
      sid       = "WriteReport"
      actions   = ["s3:PutObject"]
      resources = ["${local.bucket_arn}/${trimsuffix(statement.value, "/")}/*"]
    }
  }
}

resource "aws_iam_role_policy" "etlguard" {
  name   = "etlguard"
  role   = aws_iam_role.glue.id
  policy = data.aws_iam_policy_document.etlguard.json
}
