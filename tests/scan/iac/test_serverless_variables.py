"""Serverless variables: ${self:} paths (nested), ${opt:} and other fallbacks as
conditional values, ${sls:stage}, ${aws:}, and the sources known only at deploy time
(${env:}, ${ssm:}, ${file()}, ${cf:}, ${s3:}) left unresolved."""

from __future__ import annotations

import pytest

from donjon.scan.iac.model import App, EnvVar, Unresolved, Val
from donjon.scan.iac.serverless import read_text

HEAD = "service: shop\nprovider:\n  name: aws\n"


def _env(variables: str, extra: str = "") -> dict[str, Val[str]]:
    text = f"{HEAD}{extra}functions:\n  fn:\n    handler: a.h\n    environment:\n{variables}"
    app = read_text("serverless.yml", text)
    assert isinstance(app, App)
    return {e.name: e.value for e in app.functions[0].environment}


def test_self_paths_resolve_whole_file_and_nested_variables() -> None:
    """${self:a.b} reads any path of the file, itself resolved; a variable inside an
    address is resolved first; a variable that is the whole value keeps its type."""
    custom = (
        "custom:\n  prefix: ${self:service}-orders\n  levels:\n    dev: debug\n"
        "  level: ${self:custom.levels.${opt:stage, 'dev'}}\n  size: 5\n"
    )
    env = _env(
        "      TABLE: ${self:custom.prefix}-table\n"
        "      LEVEL: ${self:custom.level}\n"
        "      SIZE: ${self:custom.size}\n",
        custom,
    )
    assert env["TABLE"] == Val.of("shop-orders-table", 14)
    assert env["LEVEL"] == Val.of("debug", 15, conditional=True)
    assert env["SIZE"] == Val.of("5", 16)


def test_fallbacks_are_used_and_marked_conditional() -> None:
    """${opt:stage, 'dev'} is 'dev' unless --stage says otherwise: conditional; a self
    path that is missing takes its fallback; ${sls:stage} follows provider.stage."""
    env = _env(
        "      STAGE: ${opt:stage, 'dev'}\n"
        "      COUNT: ${opt:count, 3}\n"
        "      MODE: ${self:custom.mode, 'safe'}\n"
        "      SLS: ${sls:stage}\n",
        "  stage: prod\n",
    )
    assert env["STAGE"] == Val.of("dev", 9, conditional=True)
    assert env["COUNT"] == Val.of("3", 10, conditional=True)
    assert env["MODE"] == Val.of("safe", 11)
    assert env["SLS"] == Val.of("prod", 12, conditional=True)


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("${env:API_TOKEN}", "environment variable"),
        ("${env:API_TOKEN, 'fallback'}", "environment variable"),
        ("${ssm:/shop/token}", "SSM parameter"),
        ("${file(./config.yml):token}", "file read at deploy time"),
        ("${cf:other-stack.Output}", "another stack's output"),
        ("${s3:bucket/key}", "S3 object"),
        ("${self:custom.missing}", "not in the file"),
        ("${opt:token}", "CLI option --token"),
        ("prefix-${env:X}-suffix", "environment variable"),
    ],
)
def test_deploy_time_sources_are_unresolved(expression: str, why: str) -> None:
    """Values known only at deploy time are never guessed: unresolved, naming the
    expression as written (an ${env:} fallback too: the variable may be set)."""
    value = _env(f"      V: {expression}\n")["V"]
    assert value.known == ()
    assert value.unresolved[0].expression == expression
    assert why in value.unresolved[0].reason


def test_cloudformation_substitutions_are_left_for_cloudformation() -> None:
    """${AWS::Region} and ${Bucket} are Fn::Sub's, not Serverless variables; ${aws:region}
    becomes CloudFormation's ${AWS::Region}."""
    env = _env("      A: arn:aws:s3:::${Bucket}/${AWS::Region}\n      B: ${aws:region}\n")
    assert env["A"].known == ("arn:aws:s3:::${Bucket}/${AWS::Region}",)
    assert env["B"].known == ("${AWS::Region}",)


def test_self_reference_cycles_end_unresolved() -> None:
    """A path that refers to itself is unresolved, not an endless loop."""
    env = _env(
        "      LOOP: ${self:custom.a}\n", "custom:\n  a: ${self:custom.b}\n  b: ${self:custom.a}\n"
    )
    assert env["LOOP"].known == ()
    assert isinstance(env["LOOP"].unresolved[0], Unresolved)


def test_function_environment_merges_over_the_provider_s() -> None:
    """Provider and function environments merge key by key, the function's key winning,
    each value at the line it is written on."""
    text = (
        f"{HEAD}  environment:\n    SHARED: all\n    LEVEL: info\n"
        "functions:\n  fn:\n    handler: a.h\n    environment:\n      LEVEL: debug\n"
    )
    app = read_text("serverless.yml", text)
    assert isinstance(app, App)
    assert app.functions[0].environment == (
        EnvVar("SHARED", Val.of("all", 5)),
        EnvVar("LEVEL", Val.of("debug", 11)),
    )


def test_files_built_to_blow_up_end_unresolved() -> None:
    """Strings doubled through ${self:} stop at 1 MiB, lists doubled at 200,000 values:
    the value is unresolved, the file is still read."""
    doubled = "custom:\n  s0: x\n  l0: [x]\n" + "".join(
        f"  s{i}: ${{self:custom.s{i - 1}}}${{self:custom.s{i - 1}}}\n"
        f"  l{i}: ['${{self:custom.l{i - 1}}}', '${{self:custom.l{i - 1}}}']\n"
        for i in range(1, 60)
    )
    env = _env("      S: ${self:custom.s59}\n      L: ${self:custom.l59}\n", doubled)
    assert "past 1 MiB" in env["S"].unresolved[0].reason
    assert "past 200,000 values" in env["L"].unresolved[0].reason
