variable "alert_email" {
  description = "Address that receives the alerts. AWS emails it a confirmation link first: nothing arrives until it is clicked."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be an email address."
  }
}

variable "job_name" {
  description = "etlguard's job_name (the JobName dimension of its metrics), as set in etlguard.yml."
  type        = string
}

variable "namespace" {
  description = "CloudWatch namespace etlguard publishes to (metrics.cloudwatch.namespace in etlguard.yml)."
  type        = string
  default     = "etlguard"
}

variable "name_prefix" {
  description = "Prefix of the SNS topic and alarm names. Defaults to job_name."
  type        = string
  default     = null
}

variable "glue_job_name" {
  description = "Name of the AWS Glue job that runs etlguard. Set it to also alarm on the Glue job's failed tasks; null leaves that alarm out."
  type        = string
  default     = null
}

variable "period_seconds" {
  description = "Period over which each alarm sums its metric."
  type        = number
  default     = 300
}

variable "notify_on_ok" {
  description = "Also email when an alarm returns to OK."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "pitr_cluster_identifier" {
  description = "The Aurora cluster `etlguard pitr --cluster` clones. Set it to create an IAM policy with exactly the permissions pitr needs (attach it to the role that runs etlguard); null leaves it out."
  type        = string
  default     = null
}
