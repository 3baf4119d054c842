"""Triggers declared apart from the function in plain CloudFormation: event source
mappings (queues and streams polled by Lambda) and HTTP APIs made by quick create
(``AWS::ApiGatewayV2::Api`` with a ``Target``: one ``$default`` route, no
authorizer)."""

from __future__ import annotations

from donjon.scan.iac.cfn.apis import cors_origins
from donjon.scan.iac.cfn.props import child
from donjon.scan.iac.cfn.template import Template
from donjon.scan.iac.model import Trigger, TriggerKind, Val

__all__ = ["source_triggers"]

_BY_TYPE = {
    "AWS::SQS::Queue": TriggerKind.QUEUE,
    "AWS::Kinesis::Stream": TriggerKind.STREAM,
    "AWS::DynamoDB::Table": TriggerKind.STREAM,
    "AWS::MSK::Cluster": TriggerKind.STREAM,
    "AWS::AmazonMQ::Broker": TriggerKind.QUEUE,
    "AWS::DocDB::DBCluster": TriggerKind.STREAM,
}
_BY_SERVICE = {
    "sqs": TriggerKind.QUEUE,
    "kinesis": TriggerKind.STREAM,
    "dynamodb": TriggerKind.STREAM,
    "kafka": TriggerKind.STREAM,
    "mq": TriggerKind.QUEUE,
}
_FUNCTIONS = ("AWS::Lambda::Function", "AWS::Serverless::Function")


def _function_named(template: Template, value: object) -> str:
    """The function of the template a resolved ``FunctionName``/``Target`` names."""
    if not isinstance(value, str) or not value.startswith("${") or not value.endswith("}"):
        return ""
    name = value[2:-1].split(".", 1)[0]
    found = template.resources.get(name)
    return name if found is not None and found.type in _FUNCTIONS else ""


def _source_kind(template: Template, arn: object) -> TriggerKind:
    if not isinstance(arn, str):
        return TriggerKind.OTHER
    if arn.startswith("${"):
        found = template.resources.get(arn[2:-1].split(".", 1)[0])
        return _BY_TYPE.get(found.type, TriggerKind.OTHER) if found else TriggerKind.OTHER
    parts = arn.split(":")
    return _BY_SERVICE.get(parts[2], TriggerKind.OTHER) if len(parts) > 2 else TriggerKind.OTHER


def source_triggers(template: Template) -> dict[str, list[Trigger]]:
    """Event source mappings and quick-create HTTP APIs, by the function they invoke."""
    out: dict[str, list[Trigger]] = {}
    for mapping in template.of_type("AWS::Lambda::EventSourceMapping"):
        target = _function_named(template, mapping.properties.get("FunctionName"))
        if target:
            kind = _source_kind(template, mapping.properties.get("EventSourceArn"))
            out.setdefault(target, []).append(Trigger(kind, mapping.where))
    for api in template.of_type("AWS::ApiGatewayV2::Api"):
        value, line = child(api.properties, "Target")
        target = _function_named(template, value)
        if not target:
            continue
        cors, cors_line = child(api.properties, "CorsConfiguration")
        trigger = Trigger(
            TriggerKind.HTTP_API,
            api.where.at(line),
            auth=Val.of("none", line, conditional=api.conditional),
            method="ANY",
            path="$default",
            cors_origins=cors_origins(cors, cors_line, api.conditional),
            api=api.name,
        )
        out.setdefault(target, []).append(trigger)
    return out
