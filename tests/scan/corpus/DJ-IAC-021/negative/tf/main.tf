resource "aws_lambda_function" "reports" {
  function_name = "reports"
  role          = aws_iam_role.reports.arn
  runtime       = "python3.13"
  handler       = "app.handler"
  filename      = "reports.zip"
  kms_key_arn   = var.env_key_arn
  environment {
    variables = {
      DB_PASSWORD_PARAM = "/orders/db-password"
      STAGE             = "prod"
    }
  }
  tracing_config {
    mode = "Active"
  }
}

resource "aws_iam_role" "reports" {
  name = "reports"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "lambda.amazonaws.com" } }]
  })
}

resource "aws_cloudwatch_log_group" "reports" {
  name              = "/aws/lambda/reports"
  retention_in_days = 30
  kms_key_id        = var.log_key_arn
}

variable "log_key_arn" {
  type = string
}
variable "env_key_arn" {
  type = string
}
