# A module in both syntaxes, as Terraform allows: the role and function here, the
# policy attachment in iam.tf.json, the policy chosen in terraform.tfvars.json.
resource "aws_iam_role" "worker" {
  name = "worker"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "lambda.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
}

resource "aws_lambda_function" "worker" {
  function_name = "worker"
  role          = aws_iam_role.worker.arn
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
