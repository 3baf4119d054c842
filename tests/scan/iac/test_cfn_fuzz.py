"""Arbitrary template shapes never crash the loader: a model or a note, nothing else."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.scan.iac.cfn import load_text
from donjon.scan.iac.interface import IacError
from donjon.scan.iac.model import App

_TYPES = [
    "AWS::Serverless::Function",
    "AWS::Lambda::Function",
    "AWS::Serverless::Api",
    "AWS::Serverless::HttpApi",
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::S3::Bucket",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::Queue",
    "AWS::SNS::Topic",
    "AWS::Logs::LogGroup",
    "AWS::Cognito::UserPool",
    "AWS::Cognito::IdentityPool",
    "AWS::Lambda::Permission",
    "AWS::Lambda::Url",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Lambda::EventSourceMapping",
    "AWS::ApiGateway::Method",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Api",
]
_KEYS = [
    "Ref",
    "Fn::If",
    "Fn::Sub",
    "Fn::GetAtt",
    "Fn::Join",
    "Fn::Select",
    "Fn::Split",
    "Fn::FindInMap",
    "Policies",
    "Statement",
    "Effect",
    "Action",
    "Resource",
    "Principal",
    "Condition",
    "Events",
    "Type",
    "Properties",
    "Auth",
    "Authorizer",
    "DefaultAuthorizer",
    "Environment",
    "Variables",
    "Role",
    "ManagedPolicyArns",
    "PolicyDocument",
    "Roles",
    "Cors",
    "FunctionUrlConfig",
    "AuthType",
    "LoggingConfig",
    "LogGroup",
    "DestinationConfig",
    "OnFailure",
    "RestApiId",
    "Bucket",
    "Queues",
    "FunctionName",
    "S3CrudPolicy",
    "Fn",
    "P",
]
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["*", "NONE", "Fn", "P", "${Fn.Arn}", "${P}", "${!x}", "a,b", "Allow"]),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4),
    ),
    max_leaves=25,
)
_RESOURCE = st.fixed_dictionaries(
    {"Type": st.sampled_from(_TYPES)},
    optional={"Properties": _VALUES, "Condition": st.just("C")},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    resources=st.dictionaries(st.sampled_from(["Fn", "P", "Q", "R"]), _RESOURCE, max_size=4),
    globals_=_VALUES,
    parameters=st.dictionaries(st.sampled_from(["P", "Q"]), _VALUES, max_size=2),
)
def test_any_shape_gives_a_model_or_a_note(
    resources: dict[str, object], globals_: object, parameters: dict[str, object]
) -> None:
    """Whatever the shapes of properties, Globals and parameters, loading returns an app;
    the model builder never trips (its safety net stays unused)."""
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Globals": globals_,
        "Parameters": parameters,
        "Conditions": {"C": {"Fn::Equals": ["a", "b"]}},
        "Resources": resources,
    }
    problem = ""
    try:
        app: App | None = load_text("fuzz.json", json.dumps(template))
    except IacError as e:
        app, problem = None, e.message
    # Only a template the decoder refuses may fail; a shape the model builder trips on is
    # a bug (turned into a note in production, but none may exist).
    assert "could not be read as a template" not in problem, problem
    assert isinstance(app, App) or problem
