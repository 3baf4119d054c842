variable "role_arn" {
  type        = string
  description = "The role the worker runs as (no default)."
}

resource "aws_lambda_function" "worker" {
  function_name = "worker"
  role          = var.role_arn # expect: DJ-IAC-005@low
  handler       = "worker.handler"
  runtime       = "python3.12"
  filename      = "worker.zip"
  tracing_config {
    mode = "Active"
  }
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = "/aws/lambda/worker"
  retention_in_days = 30
  kms_key_id        = "arn:aws:kms:eu-west-1:111122223333:key/0d1c5b1e-7f4a-4c3e-9a52-2b7e1f0c9d11"
}
