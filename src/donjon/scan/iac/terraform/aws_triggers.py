"""What invokes an AWS Lambda function in a Terraform module, with its authorisation.

- ``aws_lambda_function_url``: ``authorization_type`` NONE is ``none``, AWS_IAM is
  ``aws_iam``; its ``cors.allow_origins``.
- HTTP APIs: an ``aws_apigatewayv2_integration`` whose ``integration_uri`` names the
  function, each ``aws_apigatewayv2_route`` whose ``target`` names that integration
  (``authorization_type`` NONE or absent is ``none``; JWT, AWS_IAM, CUSTOM), the
  API's ``cors_configuration.allow_origins``.
- REST APIs: an ``aws_api_gateway_integration`` whose ``uri`` names the function, and
  the ``aws_api_gateway_method`` of the same API, resource and HTTP method
  (``authorization`` NONE is ``none``, or ``api_key`` when ``api_key_required``).
- Asynchronous and polled sources: ``aws_s3_bucket_notification``,
  ``aws_sns_topic_subscription``, ``aws_cloudwatch_event_target`` (a rule with a
  ``schedule_expression`` is a schedule), ``aws_lambda_event_source_mapping`` (SQS a
  queue, Kinesis/DynamoDB/Kafka a stream).
"""

from __future__ import annotations

from typing import Any

from donjon.scan.iac.model import Trigger, TriggerKind, Val, Where
from donjon.scan.iac.terraform.module import Module
from donjon.scan.iac.terraform.syntax import Block
from donjon.scan.iac.terraform.values import Choice, Ref, to_bool, to_str, to_strs

__all__ = ["FunctionRef", "triggers_of"]

_AUTH = {"NONE": "none", "AWS_IAM": "aws_iam", "JWT": "jwt", "CUSTOM": "lambda"}
_AUTH |= {"COGNITO_USER_POOLS": "cognito"}


class FunctionRef:
    """How other resources name one function: its address and its literal name."""

    def __init__(self, address: str, name: Any) -> None:
        self.address = address
        self.name = name if isinstance(name, str) and not isinstance(name, Ref) else None

    def named_by(self, value: Any) -> bool:
        """`value` (or, for a list or a choice, one of its strings) names the resource."""
        if isinstance(value, Choice | list):
            return any(self.named_by(v) for v in value if isinstance(v, str))
        if not isinstance(value, str):
            return False
        if isinstance(value, Ref):
            return value.address == self.address
        if self.address + "." in value:
            return True
        return self.name is not None and (
            value == self.name or value.endswith(f":function:{self.name}")
        )


def _where(block: Block, address: str, line: int = 0) -> Where:
    return Where(block.path, line or block.line, address)


def _auth(value: Any, line: int) -> Val[str]:
    """The effective authorisation: absent is NONE (API Gateway's default)."""
    if value is None:
        return Val.of("none", line)
    options = list(value) if isinstance(value, Choice) else [value]
    mapped = [_AUTH.get(v, v.lower()) if isinstance(v, str) else v for v in options]
    return to_str(Choice(mapped) if isinstance(value, Choice) else mapped[0], line)


def _function_urls(module: Module, ref: FunctionRef) -> list[Trigger]:
    out = []
    for address, block in module.of_type("aws_lambda_function_url"):
        if ref.named_by(module.attr(block, "function_name")[0]):
            value, line = module.attr(block, "authorization_type")
            out.append(
                Trigger(
                    TriggerKind.FUNCTION_URL,
                    _where(block, address),
                    auth=_auth(value, line),
                    cors_origins=to_strs(*module.attr(block.first("cors"), "allow_origins")),
                    cors_credentials=to_bool(
                        *module.attr(block.first("cors"), "allow_credentials")
                    ),
                )
            )
    return out


def _http_api_routes(module: Module, ref: FunctionRef) -> list[Trigger]:
    out = []
    for address, quick in module.of_type("aws_apigatewayv2_api"):
        # Quick create: the API's own `target` makes a $default route with no authorizer.
        if ref.named_by(module.attr(quick, "target")[0]):
            cors = quick.first("cors_configuration")
            out.append(
                Trigger(
                    TriggerKind.HTTP_API,
                    _where(quick, address, module.attr(quick, "target")[1]),
                    auth=Val.of("none", module.attr(quick, "target")[1]),
                    path="$default",
                    cors_origins=to_strs(*module.attr(cors, "allow_origins")),
                    api=address,
                    cors_credentials=to_bool(*module.attr(cors, "allow_credentials")),
                )
            )
    for integration, block in module.of_type("aws_apigatewayv2_integration"):
        if not ref.named_by(module.attr(block, "integration_uri")[0]):
            continue
        for address, route in module.of_type("aws_apigatewayv2_route"):
            target, _ = module.attr(route, "target")
            if not (isinstance(target, str) and integration + "." in target):
                continue
            key, _ = module.attr(route, "route_key")
            method, _, path = (key if isinstance(key, str) else "").partition(" ")
            api_id, _ = module.attr(route, "api_id")
            api = api_id.address if isinstance(api_id, Ref) else ""
            api_block = module.resources.get(api)
            cors = api_block.first("cors_configuration") if api_block else None
            out.append(
                Trigger(
                    TriggerKind.HTTP_API,
                    _where(route, address),
                    auth=_auth(*module.attr(route, "authorization_type")),
                    method=method,
                    path=path,
                    cors_origins=to_strs(*module.attr(cors, "allow_origins")),
                    api=api,
                    cors_credentials=to_bool(*module.attr(cors, "allow_credentials")),
                )
            )
    return out


def _rest_methods(module: Module, ref: FunctionRef) -> list[Trigger]:
    out = []
    keys = ("rest_api_id", "resource_id", "http_method")
    for _, integration in module.of_type("aws_api_gateway_integration"):
        if not ref.named_by(module.attr(integration, "uri")[0]):
            continue
        wanted = [module.attr(integration, k)[0] for k in keys]
        for address, method in module.of_type("aws_api_gateway_method"):
            if [module.attr(method, k)[0] for k in keys] != wanted:
                continue
            auth = _auth(*module.attr(method, "authorization"))
            key_required, _ = module.attr(method, "api_key_required")
            if auth.one == "none" and key_required is True:
                auth = Val.of("api_key", auth.line)
            resource = wanted[1].address if isinstance(wanted[1], Ref) else ""
            path, _ = module.attr(module.resources.get(resource), "path_part")
            api = wanted[0].address if isinstance(wanted[0], Ref) else ""
            out.append(
                Trigger(
                    TriggerKind.REST_API,
                    _where(method, address),
                    auth=auth,
                    method=wanted[2] if isinstance(wanted[2], str) else "",
                    path=f"/{path}" if isinstance(path, str) else "",
                    api=api,
                )
            )
    return out


def _sources(module: Module, ref: FunctionRef) -> list[Trigger]:
    out = []
    for address, block in module.of_type("aws_s3_bucket_notification"):
        for item in block.nested("lambda_function"):
            if ref.named_by(module.attr(item, "lambda_function_arn")[0]):
                out.append(Trigger(TriggerKind.STORAGE, _where(block, address, item.line)))
    for address, block in module.of_type("aws_sns_topic_subscription"):
        if ref.named_by(module.attr(block, "endpoint")[0]):
            out.append(Trigger(TriggerKind.TOPIC, _where(block, address)))
    for address, block in module.of_type("aws_cloudwatch_event_target"):
        if ref.named_by(module.attr(block, "arn")[0]):
            rule, _ = module.attr(block, "rule")
            rule_block = module.resources.get(rule.address) if isinstance(rule, Ref) else None
            schedule = module.attr(rule_block, "schedule_expression")[1]
            kind = TriggerKind.SCHEDULE if schedule else TriggerKind.EVENT_BUS
            out.append(Trigger(kind, _where(block, address)))
    for address, block in module.of_type("aws_lambda_event_source_mapping"):
        if ref.named_by(module.attr(block, "function_name")[0]):
            source, _ = module.attr(block, "event_source_arn")
            text = str(source) if isinstance(source, str) else ""
            queue = text.startswith(("aws_sqs_queue.", "arn:aws:sqs:"))
            kind = TriggerKind.QUEUE if queue else TriggerKind.STREAM
            out.append(Trigger(kind, _where(block, address)))
    return out


def triggers_of(module: Module, ref: FunctionRef) -> tuple[Trigger, ...]:
    return tuple(
        _function_urls(module, ref)
        + _http_api_routes(module, ref)
        + _rest_methods(module, ref)
        + _sources(module, ref)
    )
