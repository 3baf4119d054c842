"""Finding SAM and CloudFormation templates in a project by content, and reporting the
ones that do not read as notes, never as exceptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.scan.iac.catalog import formats
from donjon.scan.iac.cfn import CfnFormat, load_text
from donjon.scan.iac.model import App, TemplateKind
from donjon.scan.model import Finding
from donjon.scan.project import discover
from donjon.scan.scanners.iac import IacScanner

SAM = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: {Runtime: python3.12, Handler: a.h}
"""
CFN_JSON = """{
  "Resources": {
    "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Runtime": "python3.12"}}
  }
}
"""


def test_templates_are_recognised_by_content_in_yaml_and_json(tmp_path: Path) -> None:
    """A SAM transform, a bare Resources of AWS types (JSON) and a format version each
    make a template; a serverless.yml, a manifest and package.json do not."""
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "sam.yml").write_text(SAM)
    (tmp_path / "infra" / "stack.json").write_text(CFN_JSON)
    (tmp_path / "empty.yaml").write_text("AWSTemplateFormatVersion: '2010-09-09'\n")
    (tmp_path / "serverless.yml").write_text(
        "service: s\nprovider: {name: aws}\nresources:\n  Resources:\n"
        "    Q: {Type: 'AWS::SQS::Queue'}\n"
    )
    (tmp_path / "package.json").write_text('{"name": "x", "Type": "AWS::nothing"}\n')
    (tmp_path / "donjon.yaml").write_text("name: f\nhandler: a.h\n")
    loaded = CfnFormat().load(discover(tmp_path))
    assert loaded.notes == ()
    assert [(a.path, a.kind, len(a.functions)) for a in loaded.apps] == [
        ("empty.yaml", TemplateKind.CLOUDFORMATION, 0),
        ("infra/sam.yml", TemplateKind.SAM, 1),
        ("infra/stack.json", TemplateKind.CLOUDFORMATION, 1),
    ]


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("bad.yaml", "AWSTemplateFormatVersion: '2010-09-09'\nResources: [\n", "cfn-lint"),
        ("dup.yaml", "AWSTemplateFormatVersion: x\nResources: {}\nResources: {}\n", "cfn-lint"),
        ("bad.json", '{"AWSTemplateFormatVersion": "2010-09-09", "Resources": {', "cfn-lint"),
        ("tag.yaml", "AWSTemplateFormatVersion: x\nResources: !Bogus [a\n", "cfn-lint"),
    ],
)
def test_a_template_that_does_not_decode_is_a_note(
    tmp_path: Path, name: str, text: str, why: str
) -> None:
    """Broken YAML or JSON, duplicate keys: a note naming the file, no app, no exception."""
    (tmp_path / name).write_text(text)
    loaded = CfnFormat().load(discover(tmp_path))
    assert loaded.apps == ()
    assert len(loaded.notes) == 1
    assert loaded.notes[0].startswith(f"{name}: not a template {why} can read")


ODD_SHAPES = [
    "Resources: [a, b]\nAWSTemplateFormatVersion: x\n",
    "AWSTemplateFormatVersion: x\nResources: {Fn: {Type: AWS::Lambda::Function, Properties: s}}\n",
    "Transform: AWS::Serverless-2016-10-31\nGlobals: 5\nResources:\n"
    "  Fn: {Type: AWS::Serverless::Function, Properties: {Policies: 5, Events: x, Role: [1]}}\n",
    "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n"
    "    Type: AWS::Serverless::Function\n"
    "    Properties:\n      Events: {A: {Type: Api, Properties: [1]}, B: 7}\n"
    "      Environment: {Variables: [1, 2]}\n"
    "      Policies: [{S3CrudPolicy: 5}, [x], {Statement: 3}]\n",
    "AWSTemplateFormatVersion: x\nResources:\n  B: {Type: AWS::S3::Bucket, Properties: "
    "{BucketEncryption: {ServerSideEncryptionConfiguration: 5},"
    " PublicAccessBlockConfiguration: x}}\n"
    "  P: {Type: AWS::S3::BucketPolicy, Properties: {Bucket: !Ref B, PolicyDocument: 3}}\n"
    "  Fn: {Type: AWS::Lambda::Function,"
    " Properties: {Role: !GetAtt [R], Runtime: !Sub [1, 2, 3]}}\n"
    "  U: {Type: AWS::Cognito::UserPool, Properties: {Policies: {PasswordPolicy: [1]}}}\n",
    "AWSTemplateFormatVersion: x\nResources:\n  Fn: {Type: AWS::Lambda::Function, Properties: "
    "{Environment: {Variables: {A: !If [x], B: !Select [x, y], C: !FindInMap [M], D: !Join x}}}}\n",
]


@pytest.mark.parametrize("text", ODD_SHAPES)
def test_odd_shapes_never_raise(text: str) -> None:
    """Templates with properties of the wrong shape still give a model (what cannot be
    read is absent or unresolved), never an exception."""
    app = load_text("odd.yaml", text)
    assert isinstance(app, App)


def test_bad_intrinsics_are_unresolved_not_dropped() -> None:
    """An Fn::If without three arguments and a Select with a bad index are unresolved."""
    app = load_text("odd.yaml", ODD_SHAPES[-1])
    assert isinstance(app, App)
    env = {e.name: e.value for e in app.functions[0].environment}
    assert env["A"].unresolved[0].reason == "not a valid intrinsic function"
    assert env["B"].unresolved[0].expression == '!Select ["x", "y"]'
    assert all(not v.known and v.unresolved for v in env.values())


def test_the_iac_scanner_runs_the_cfn_format(tmp_path: Path) -> None:
    """The catalog's formats include CloudFormation, so `donjon scan` reads templates;
    a broken one is a note of the scan."""
    assert any(isinstance(f, CfnFormat) for f in formats())
    (tmp_path / "template.yaml").write_text(SAM)
    (tmp_path / "broken.yaml").write_text("AWSTemplateFormatVersion: x\nResources: [\n")
    seen: list[App] = []

    def record(app: App) -> list[Finding]:
        seen.append(app)
        return []

    output = IacScanner(checks=[record]).scan(discover(tmp_path))
    assert [a.path for a in seen] == ["template.yaml"]
    assert len(output.notes) == 1
    assert output.notes[0].startswith("broken.yaml: ")


def test_macros_and_nested_stacks_are_named_in_notes(tmp_path: Path) -> None:
    """A transform other than SAM's and a nested stack are read around, and said so."""
    (tmp_path / "template.yaml").write_text(
        "Transform: [AWS::Serverless-2016-10-31, MyMacro]\nResources:\n"
        "  Child: {Type: AWS::CloudFormation::Stack, Properties: {TemplateURL: x}}\n"
        "  App: {Type: AWS::Serverless::Application, Properties: {Location: y}}\n"
    )
    loaded = CfnFormat().load(discover(tmp_path))
    assert len(loaded.apps) == 1
    assert loaded.notes == (
        "template.yaml: transform MyMacro is not applied; the template is read as written",
        "template.yaml: Child is a nested stack (AWS::CloudFormation::Stack); "
        "its template is not read",
        "template.yaml: App is a nested stack (AWS::Serverless::Application); "
        "its template is not read",
    )
