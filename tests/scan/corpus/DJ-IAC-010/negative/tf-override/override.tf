# An override that changes nothing the rules judge: the URL stays AWS_IAM.
resource "aws_lambda_function_url" "api" {
  cors {
    allow_origins = ["https://example.com"]
  }
}
