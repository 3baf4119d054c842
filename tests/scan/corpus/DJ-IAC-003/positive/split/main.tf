# A module over two files: the function here, its role's policy in iam.tf.
resource "aws_lambda_function" "exporter" {
  function_name = "exporter"
  role          = aws_iam_role.exporter.arn
  handler       = "exporter.handler"
  runtime       = "python3.12"
  filename      = "exporter.zip"
  tracing_config {
    mode = "Active"
  }
}

resource "aws_cloudwatch_log_group" "exporter" {
  name              = "/aws/lambda/exporter"
  retention_in_days = 30
  kms_key_id        = "arn:aws:kms:eu-west-1:111122223333:key/0d1c5b1e-7f4a-4c3e-9a52-2b7e1f0c9d11"
}
