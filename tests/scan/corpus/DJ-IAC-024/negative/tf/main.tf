resource "aws_sns_topic" "alerts" {
  name              = "alerts"
  kms_master_key_id = var.data_key_arn
}

variable "data_key_arn" {
  type = string
}
