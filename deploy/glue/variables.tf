variable "job_name" {
  description = "Name of the Glue job (and prefix of its IAM role). Use the same name as job_name in etlguard.yml."
  type        = string
}

variable "s3_bucket" {
  description = "Bucket that holds the job script, the etlguard wheel, etlguard.yml and the zipped dbt project."
  type        = string
}

variable "s3_prefix" {
  description = "Key prefix under s3_bucket for those files."
  type        = string
  default     = "etlguard"
}

variable "wheel_path" {
  description = "Local path of the etlguard wheel to upload (pip wheel --no-deps . -w dist)."
  type        = string

  validation {
    condition     = endswith(var.wheel_path, ".whl")
    error_message = "wheel_path must be a .whl file, built with: pip wheel --no-deps . -w dist"
  }
}

variable "config_path" {
  description = "Local path of the etlguard.yml the job runs with."
  type        = string
}

variable "dbt_project_zip" {
  description = "Local path of the dbt project, zipped with dbt_project.yml and profiles.yml at its top."
  type        = string
}

variable "python_modules" {
  description = "Further packages for --additional-python-modules: dbt and its adapter (dbt-mysql 1.7 pins dbt-core 1.7)."
  type        = list(string)
  default     = ["dbt-mysql==1.7.0", "boto3"]
}

variable "dbt_command" {
  description = "The dbt command etlguard runs, after `etlguard run --`."
  type        = string
  default     = "dbt build --target prod"
}

variable "timeout_minutes" {
  description = "Glue's job timeout. Keep it above etlguard's own --timeout so that etlguard, not Glue, stops dbt and rolls back."
  type        = number
  default     = 240
}

variable "glue_connection_name" {
  description = "Glue connection that puts the job in the Aurora cluster's VPC; null for none."
  type        = string
  default     = null
}

variable "metrics_namespace" {
  description = "CloudWatch namespace etlguard publishes to (metrics.cloudwatch.namespace in etlguard.yml)."
  type        = string
  default     = "etlguard"
}

variable "alert_topic_arn" {
  description = "SNS topic etlguard alerts to (alerts.channels in etlguard.yml); null grants no sns:Publish."
  type        = string
  default     = null
}

variable "db_secret_arn" {
  description = "Secrets Manager secret holding the database password; null grants no GetSecretValue."
  type        = string
  default     = null
}

variable "rds_iam_db_user" {
  description = "Database user that connects with an RDS IAM token; null grants no rds-db:connect."
  type        = string
  default     = null
}

variable "rds_cluster_resource_id" {
  description = "The Aurora cluster's resource id (cluster-XXXX), for rds-db:connect."
  type        = string
  default     = "*"
}

variable "report_s3_prefix" {
  description = "Key prefix under s3_bucket where `etlguard report` uploads; null grants no s3:PutObject."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
