"""AWS resources of a Terraform module in the model: Lambda with its role's policies,
invoke permissions, triggers, S3, queues, APIs, Cognito."""

from __future__ import annotations

from pathlib import Path

from donjon.scan.iac.model import App, Effect, TriggerKind
from donjon.scan.iac.terraform import TerraformFormat
from donjon.scan.project import discover

IAM = """
resource "aws_iam_role" "fn" {
  name = "fn-role"
}
resource "aws_iam_role_policy_attachment" "admin" {
  role       = aws_iam_role.fn.name
  policy_arn = "arn:aws:iam::aws:policy/AdministratorAccess"
}
resource "aws_iam_policy" "custom" {
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Effect = "Allow", Action = ["iam:PassRole"], Resource = "*" },
    ]
  })
}
resource "aws_iam_role_policy_attachment" "custom" {
  role       = aws_iam_role.fn.id
  policy_arn = aws_iam_policy.custom.arn
}
resource "aws_iam_role_policy" "heredoc" {
  role   = "fn-role"
  policy = <<EOF
{"Version": "2012-10-17",
 "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "${aws_s3_bucket.data.arn}/*"}]}
EOF
}
resource "aws_iam_role_policy" "doc" {
  role   = aws_iam_role.fn.id
  policy = data.aws_iam_policy_document.doc.json
}
data "aws_iam_policy_document" "doc" {
  statement {
    effect      = "Deny"
    not_actions = ["s3:GetObject"]
    resources   = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = ["eu-west-1"]
    }
  }
}
"""

LAMBDA = """
resource "aws_lambda_function" "api" {
  function_name                  = "api"
  runtime                        = "python3.12"
  handler                        = "app.handler"
  role                           = aws_iam_role.fn.arn
  reserved_concurrent_executions = 5
  kms_key_arn                    = var.key
  environment {
    variables = {
      TOKEN = "abc"
    }
  }
  tracing_config {
    mode = "Active"
  }
}
variable "key" {}
resource "aws_lambda_function_event_invoke_config" "api" {
  function_name = aws_lambda_function.api.function_name
  destination_config {
    on_failure {
      destination = aws_sqs_queue.dlq.arn
    }
  }
}
resource "aws_lambda_permission" "anyone" {
  function_name = aws_lambda_function.api.function_name
  action        = "lambda:InvokeFunction"
  principal     = "*"
}
resource "aws_lambda_function_url" "url" {
  function_name      = aws_lambda_function.api.arn
  authorization_type = "NONE"
  cors {
    allow_origins = ["*"]
  }
}
resource "aws_cloudwatch_log_group" "api" {
  name              = "/aws/lambda/api"
  retention_in_days = 14
}
resource "aws_apigatewayv2_api" "http" {
  name          = "http"
  protocol_type = "HTTP"
  cors_configuration {
    allow_origins     = ["https://example.com"]
    allow_credentials = true
  }
}
resource "aws_apigatewayv2_integration" "api" {
  api_id           = aws_apigatewayv2_api.http.id
  integration_type = "AWS_PROXY"
  integration_uri  = aws_lambda_function.api.invoke_arn
}
resource "aws_apigatewayv2_route" "open" {
  api_id    = aws_apigatewayv2_api.http.id
  route_key = "GET /items"
  target    = "integrations/${aws_apigatewayv2_integration.api.id}"
}
resource "aws_apigatewayv2_route" "jwt" {
  api_id             = aws_apigatewayv2_api.http.id
  route_key          = "POST /items"
  target             = "integrations/${aws_apigatewayv2_integration.api.id}"
  authorization_type = "JWT"
}
"""

STORAGE = """
resource "aws_s3_bucket" "data" {
  bucket = "data-bucket"
}
resource "aws_s3_bucket_acl" "data" {
  bucket = aws_s3_bucket.data.id
  acl    = "public-read"
}
resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = jsonencode({
    Statement = [{
      Effect = "Allow", Principal = "*", Action = "s3:GetObject",
      Resource = "${aws_s3_bucket.data.arn}/*"
    }]
  })
}
resource "aws_s3_bucket" "locked" {
  bucket = "locked"
}
resource "aws_s3_bucket_public_access_block" "locked" {
  bucket                  = aws_s3_bucket.locked.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}
resource "aws_s3_bucket_server_side_encryption_configuration" "locked" {
  bucket = aws_s3_bucket.locked.bucket
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = "arn:aws:kms:eu-west-1:123456789012:key/k"
    }
  }
}
resource "aws_sqs_queue" "dlq" {
  name                    = "dlq"
  sqs_managed_sse_enabled = false
}
resource "aws_sns_topic" "t" {
  name = "t"
}
resource "aws_sns_topic" "encrypted" {
  kms_master_key_id = var.topic_key
}
variable "topic_key" {}
resource "aws_cognito_user_pool" "users" {
  name = "users"
  password_policy {
    minimum_length    = 6
    require_lowercase = true
  }
}
resource "aws_cognito_identity_pool" "ids" {
  identity_pool_name               = "ids"
  allow_unauthenticated_identities = true
}
"""


def _line(text: str, needle: str) -> int:
    """The 1-based line of `text` holding `needle`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def _app(tmp_path: Path) -> App:
    (tmp_path / "iam.tf").write_text(IAM)
    (tmp_path / "main.tf").write_text(LAMBDA)
    (tmp_path / "storage.tf").write_text(STORAGE)
    loaded = TerraformFormat().load(discover(tmp_path))
    assert loaded.notes == ()
    (app,) = loaded.apps
    return app


def test_role_policies_from_every_attachment(tmp_path: Path) -> None:
    """The role gets the managed ARN, the module's aws_iam_policy, a heredoc JSON policy
    attached by name and a policy document, each with its file and line."""
    (fn,) = _app(tmp_path).functions
    policies = {p.name: p for p in fn.policies}
    assert fn.role.one == "aws_iam_role.fn.arn"
    admin = policies["AdministratorAccess"]
    assert admin.managed == "arn:aws:iam::aws:policy/AdministratorAccess"
    (passrole,) = policies["aws_iam_policy.custom"].statements
    assert passrole.actions == ("iam:PassRole",)
    assert passrole.resources == ("*",)
    assert (passrole.path, passrole.line) == ("iam.tf", 13)
    (heredoc,) = policies["aws_iam_role_policy.heredoc"].statements
    assert heredoc.actions == ("s3:*",)
    assert heredoc.resources == ("arn:aws:s3:::data-bucket/*",)
    (deny,) = policies["aws_iam_role_policy.doc"].statements
    assert deny.effect is Effect.DENY
    assert deny.not_actions == ("s3:GetObject",)
    assert deny.conditions[0].key == "aws:RequestedRegion"
    assert deny.line == 33


def test_lambda_configuration(tmp_path: Path) -> None:
    """Environment, on-failure destination, concurrency, KMS (unresolved), tracing and
    the log group found by name."""
    (fn,) = _app(tmp_path).functions
    assert [(e.name, e.value.one) for e in fn.environment] == [("TOKEN", "abc")]
    assert fn.environment[0].value.line == _line(LAMBDA, 'TOKEN = "abc"')
    assert fn.dead_letter.one == "aws_sqs_queue.dlq.arn"
    assert fn.reserved_concurrency.one == 5
    assert fn.kms_key.unresolved[0].expression == "var.key"
    assert fn.tracing.one == "Active"
    assert fn.log_group is not None
    assert fn.log_group.retention_days.one == 14


def test_public_invoke_and_unauthenticated_routes(tmp_path: Path) -> None:
    """principal "*" is a public invoke statement; the NONE function URL and the route
    without authorization are "none", the JWT route "jwt"."""
    (fn,) = _app(tmp_path).functions
    (permission,) = fn.invoke_policy
    assert permission.principals == ("*",)
    assert permission.path == "main.tf"
    assert permission.line == _line(LAMBDA, 'principal     = "*"')
    triggers = {t.where.resource: t for t in fn.triggers}
    url = triggers["aws_lambda_function_url.url"]
    assert (url.kind, url.auth.one) == (TriggerKind.FUNCTION_URL, "none")
    assert url.cors_origins.known == ("*",)
    route = triggers["aws_apigatewayv2_route.open"]
    assert (route.auth.one, route.method, route.path) == ("none", "GET", "/items")
    assert route.cors_origins.known == ("https://example.com",)
    assert route.cors_credentials.one is True
    assert url.cors_credentials.present is False
    assert triggers["aws_apigatewayv2_route.jwt"].auth.one == "jwt"


def test_buckets_queues_and_identity(tmp_path: Path) -> None:
    """S3 ACL, bucket policy, public access block and encryption; SQS/SNS encryption;
    Cognito password policy and unauthenticated identities."""
    app = _app(tmp_path)
    buckets = {b.where.resource: b for b in app.buckets}
    data, locked = buckets["aws_s3_bucket.data"], buckets["aws_s3_bucket.locked"]
    assert data.acl.one == "public-read"
    assert data.policy[0].principals == ("*",)
    assert data.policy[0].resources == ("arn:aws:s3:::data-bucket/*",)
    assert data.public_access_blocked.one is False
    assert data.encryption.one == "managed"
    assert locked.public_access_blocked.one is True
    assert locked.encryption.one == "kms"
    assert locked.acl.one == "private"
    queues = {q.where.resource: q for q in app.queues}
    assert queues["aws_sqs_queue.dlq"].encryption.one == "none"
    assert queues["aws_sns_topic.t"].encryption.one == "none"
    (encrypted,) = [q for q in app.queues if q.where.resource == "aws_sns_topic.encrypted"]
    assert encrypted.encryption.one == "kms"
    assert encrypted.kms_key.unresolved[0].expression == "var.topic_key"
    pools = {p.kind: p for p in app.user_pools}
    assert pools["user-pool"].password_min_length.one == 6
    assert pools["user-pool"].password_classes.one == 1
    assert pools["user-pool"].mfa.one == "OFF"
    assert pools["identity-pool"].allow_unauthenticated.one is True
    (api,) = app.apis
    assert api.cors_origins.known == ("https://example.com",)
    assert api.cors_credentials.one is True
