"""AWS Lambda triggers and role attachments of a Terraform module beyond the basics:
REST API methods, asynchronous and polled sources, instance indexes, auto tfvars."""

from __future__ import annotations

from pathlib import Path

from donjon.scan.iac.model import Function, TriggerKind
from donjon.scan.iac.terraform import TerraformFormat
from donjon.scan.project import discover

MAIN = """
resource "aws_lambda_function" "worker" {
  for_each      = toset(["a"])
  function_name = "worker"
  runtime       = var.runtime
  role          = aws_iam_role.worker["a"].arn
}
variable "runtime" {
  default = "python3.12"
}
resource "aws_iam_role" "worker" {
  for_each            = toset(["a"])
  managed_policy_arns = ["arn:aws:iam::aws:policy/AmazonS3FullAccess"]
}
resource "aws_iam_policy_attachment" "shared" {
  name       = "shared"
  roles      = [aws_iam_role.worker["a"].name]
  policy_arn = "arn:aws:iam::aws:policy/IAMFullAccess"
}
resource "aws_api_gateway_rest_api" "rest" {
  name = "rest"
}
resource "aws_api_gateway_resource" "items" {
  rest_api_id = aws_api_gateway_rest_api.rest.id
  parent_id   = aws_api_gateway_rest_api.rest.root_resource_id
  path_part   = "items"
}
resource "aws_api_gateway_method" "get" {
  rest_api_id      = aws_api_gateway_rest_api.rest.id
  resource_id      = aws_api_gateway_resource.items.id
  http_method      = "GET"
  authorization    = "NONE"
  api_key_required = true
}
resource "aws_api_gateway_method" "post" {
  rest_api_id   = aws_api_gateway_rest_api.rest.id
  resource_id   = aws_api_gateway_resource.items.id
  http_method   = "POST"
  authorization = "NONE"
}
resource "aws_api_gateway_integration" "get" {
  rest_api_id = aws_api_gateway_rest_api.rest.id
  resource_id = aws_api_gateway_resource.items.id
  http_method = aws_api_gateway_method.get.http_method
  type        = "AWS_PROXY"
  uri         = aws_lambda_function.worker["a"].invoke_arn
}
resource "aws_api_gateway_integration" "post" {
  rest_api_id = aws_api_gateway_rest_api.rest.id
  resource_id = aws_api_gateway_resource.items.id
  http_method = "POST"
  type        = "AWS_PROXY"
  uri         = aws_lambda_function.worker["a"].invoke_arn
}
resource "aws_s3_bucket" "uploads" {
  bucket = "uploads"
}
resource "aws_s3_bucket_notification" "uploads" {
  bucket = aws_s3_bucket.uploads.id
  lambda_function {
    lambda_function_arn = aws_lambda_function.worker["a"].arn
    events              = ["s3:ObjectCreated:*"]
  }
}
resource "aws_sns_topic_subscription" "alerts" {
  topic_arn = "arn:aws:sns:eu-west-1:123456789012:alerts"
  protocol  = "lambda"
  endpoint  = aws_lambda_function.worker["a"].arn
}
resource "aws_cloudwatch_event_rule" "nightly" {
  schedule_expression = "cron(0 3 * * ? *)"
}
resource "aws_cloudwatch_event_target" "nightly" {
  rule = aws_cloudwatch_event_rule.nightly.name
  arn  = aws_lambda_function.worker["a"].arn
}
resource "aws_apigatewayv2_api" "quick" {
  name          = "quick"
  protocol_type = "HTTP"
  target        = aws_lambda_function.worker["a"].arn
}
resource "aws_sqs_queue" "jobs" {
  name = "jobs"
}
resource "aws_lambda_event_source_mapping" "jobs" {
  event_source_arn = aws_sqs_queue.jobs.arn
  function_name    = aws_lambda_function.worker["a"].arn
}
"""


def _worker(tmp_path: Path) -> Function:
    (tmp_path / "main.tf").write_text(MAIN)
    (tmp_path / "terraform.tfvars").write_text('runtime = "python3.9"\n')
    (tmp_path / "zz.auto.tfvars").write_text('runtime = "python3.7"\n')
    loaded = TerraformFormat().load(discover(tmp_path))
    assert loaded.notes == ()
    (fn,) = loaded.apps[0].functions
    return fn


def test_auto_tfvars_win_over_terraform_tfvars(tmp_path: Path) -> None:
    """*.auto.tfvars are loaded after terraform.tfvars, so their value is the one."""
    assert _worker(tmp_path).runtime.one == "python3.7"


def test_role_by_instance_index_and_its_attachments(tmp_path: Path) -> None:
    """A role named through a for_each key still gets managed_policy_arns and an
    aws_iam_policy_attachment listing it in roles."""
    managed = {p.managed for p in _worker(tmp_path).policies}
    assert managed == {
        "arn:aws:iam::aws:policy/AmazonS3FullAccess",
        "arn:aws:iam::aws:policy/IAMFullAccess",
    }


def test_rest_methods_and_event_sources(tmp_path: Path) -> None:
    """A REST method with NONE is unauthenticated (api_key when a key is required);
    S3, SNS, a scheduled rule and an SQS mapping are triggers of their kinds."""
    triggers = {t.where.resource: t for t in _worker(tmp_path).triggers}
    post = triggers["aws_api_gateway_method.post"]
    assert (post.kind, post.auth.one, post.method, post.path) == (
        TriggerKind.REST_API,
        "none",
        "POST",
        "/items",
    )
    assert post.api == "aws_api_gateway_rest_api.rest"
    assert triggers["aws_api_gateway_method.get"].auth.one == "api_key"
    assert triggers["aws_s3_bucket_notification.uploads"].kind is TriggerKind.STORAGE
    assert triggers["aws_sns_topic_subscription.alerts"].kind is TriggerKind.TOPIC
    assert triggers["aws_cloudwatch_event_target.nightly"].kind is TriggerKind.SCHEDULE
    assert triggers["aws_lambda_event_source_mapping.jobs"].kind is TriggerKind.QUEUE
    assert triggers["aws_cloudwatch_event_target.nightly"].asynchronous
    quick = triggers["aws_apigatewayv2_api.quick"]
    assert (quick.kind, quick.auth.one, quick.path) == (TriggerKind.HTTP_API, "none", "$default")
