resource "aws_iam_role" "exporter" {
  name = "exporter"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "lambda.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
}

data "aws_iam_policy_document" "exporter" {
  statement { # expect: DJ-IAC-003
    actions   = ["kinesis:PutRecord", "kinesis:PutRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "exporter" {
  role   = aws_iam_role.exporter.id
  policy = data.aws_iam_policy_document.exporter.json
}
