"""Terraform's JSON syntax (``*.tf.json``, ``*.tfvars.json``): read into the same module
as native files, with its own rules (labels as nested keys, arrays of blocks, ``"//"``
comments, templates in arguments, plain values in defaults and tfvars), and a bad file
is a note, never an exception."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import donjon.scan.iac.terraform as terraform_package
from donjon.scan.iac.interface import Loaded
from donjon.scan.iac.model import App, Function
from donjon.scan.iac.terraform import TerraformFormat
from donjon.scan.iac.terraform.json_syntax import (
    MAX_DEPTH,
    MAX_UNPARSED,
    NESTED_BLOCKS,
    parse_json_file,
)
from donjon.scan.project import discover

ROLE = "arn:aws:iam::123456789012:role/x"


def _write(tmp_path: Path, files: dict[str, Any]) -> None:
    for name, content in files.items():
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        (tmp_path / name).write_text(text)


def _loaded(tmp_path: Path, files: dict[str, Any]) -> Loaded:
    _write(tmp_path, files)
    return TerraformFormat().load(discover(tmp_path))


def _app(tmp_path: Path, files: dict[str, Any]) -> App:
    loaded = _loaded(tmp_path, files)
    assert loaded.notes == ()
    return loaded.apps[0]


def _fn(app: App) -> Function:
    (fn,) = app.functions
    return fn


def _lambda(**arguments: Any) -> dict[str, Any]:
    body = {"handler": "app.handler", "role": ROLE, "runtime": "python3.12"} | arguments
    return {"resource": {"aws_lambda_function": {"api": body}}}


def test_json_module_resolves_as_native(tmp_path: Path) -> None:
    """Templates are expressions (references, locals, functions); a nested block is a
    block; a variable's default comes from the .tf file of the same module; a key inside
    an argument's object keeps its own line."""
    module = _lambda(
        function_name="${local.prefix}-api",
        runtime="${var.runtime}",
        environment={"variables": {"STAGE": '${upper("prod")}'}},
        tracing_config=[{"mode": "Active"}],
    )
    module["locals"] = {"prefix": "svc"}
    fn = _fn(
        _app(
            tmp_path,
            {"main.tf.json": module, "vars.tf": 'variable "runtime" { default = "python3.9" }\n'},
        )
    )
    assert fn.name.one == "svc-api"
    assert fn.runtime.one == "python3.9"
    written = (tmp_path / "main.tf.json").read_text().splitlines()
    stage = next(n for n, text in enumerate(written, start=1) if '"STAGE"' in text)
    assert [(e.name, e.value.one, e.value.line) for e in fn.environment] == [
        ("STAGE", "PROD", stage)
    ]
    assert fn.tracing.one == "Active"
    assert fn.where.path == "main.tf.json"


def test_interpolation_only_keeps_the_value(tmp_path: Path) -> None:
    """``"${x}"`` is x itself, as in a .tf file: an object variable stays an object (the
    function's environment), a policy document stays a document (its statements)."""
    module = _lambda(
        function_name="api",
        role="${aws_iam_role.r.arn}",
        environment={"variables": "${var.env}"},
    )
    module["resource"]["aws_iam_role"] = {"r": {"name": "r", "assume_role_policy": "{}"}}
    module["resource"]["aws_iam_role_policy"] = {
        "p": {"role": "${aws_iam_role.r.id}", "policy": "${data.aws_iam_policy_document.d.json}"}
    }
    module["data"] = {
        "aws_iam_policy_document": {"d": {"statement": {"actions": ["*"], "resources": ["*"]}}}
    }
    module["variable"] = {"env": {"default": {"STAGE": "prod"}}}
    fn = _fn(_app(tmp_path, {"main.tf.json": module}))
    written = (tmp_path / "main.tf.json").read_text().splitlines()
    line = next(n for n, text in enumerate(written, start=1) if '"statement"' in text)
    assert fn.role.one == "aws_iam_role.r.arn"
    assert [(e.name, e.value.one) for e in fn.environment] == [("STAGE", "prod")]
    (policy,) = fn.policies
    (statement,) = policy.statements
    assert (statement.actions, statement.path, statement.line) == (("*",), "main.tf.json", line)


def test_defaults_and_tfvars_are_plain_values(tmp_path: Path) -> None:
    """A default and a .tfvars.json value are JSON values (``${`` is text there);
    terraform.tfvars.json overrides the default, another .tfvars.json is an alternative."""
    module = _lambda(function_name="${var.name}", handler="${var.handler}", runtime="${var.rt}")
    module["variable"] = {
        "name": {"default": "${not.a.reference}"},
        "handler": {"default": "a.handler"},
        "rt": {"default": "python3.9", "type": "string"},
    }
    fn = _fn(
        _app(
            tmp_path,
            {
                "main.tf.json": module,
                "terraform.tfvars.json": {"//": "a comment", "handler": "b.handler"},
                "prod.tfvars.json": {"rt": "python3.13"},
            },
        )
    )
    assert fn.name.one == "${not.a.reference}"
    assert fn.handler.one == "b.handler"
    assert sorted(v for v in fn.runtime.known) == ["python3.13", "python3.9"]


def test_labels_arrays_and_comments(tmp_path: Path) -> None:
    """Labels are nested keys, an array of objects is repeated blocks at any level, and
    ``"//"`` properties are comments; blocks and arguments keep their JSON key's line."""
    text = """{
  "//": "generated",
  "data": {"aws_iam_policy_document": {"d": {
    "//": "two statements",
    "statement": [
      {"actions": ["s3:GetObject"], "resources": ["*"]},
      {"actions": ["s3:PutObject"], "resources": ["*"],
       "principals": {"type": "AWS", "identifiers": ["*"]}}
    ]
  }}},
  "resource": [
    {"aws_s3_bucket": {"a": {"bucket": "a"}}},
    {"aws_s3_bucket": {"b": [{"bucket": "b"}]}}
  ]
}
"""
    blocks, notes = parse_json_file("main.tf.json", text)
    assert notes == ()
    assert [(b.type, b.labels, b.line) for b in blocks] == [
        ("data", ("aws_iam_policy_document", "d"), 3),
        ("resource", ("aws_s3_bucket", "a"), 12),
        ("resource", ("aws_s3_bucket", "b"), 13),
    ]
    document = blocks[0]
    assert "//" not in document.attributes
    first, second = document.nested("statement")
    assert (first.line, second.line) == (6, 7)
    assert second.first("principals") is not None
    assert second.attributes["resources"].line == 7
    assert blocks[2].attributes["bucket"].line == 13


def test_repeated_block_type_keys_are_all_read() -> None:
    """A block type written twice at the root (valid in Terraform's JSON syntax, where
    json.loads would keep only the last) gives the blocks of both."""
    text = '{"resource": {"aws_s3_bucket": {"a": {}}},\n "resource": {"aws_s3_bucket": {"b": {}}}}'
    blocks, _ = parse_json_file("main.tf.json", text)
    assert [(b.labels, b.line) for b in blocks] == [
        (("aws_s3_bucket", "a"), 1),
        (("aws_s3_bucket", "b"), 2),
    ]


def test_template_text_round_trips(tmp_path: Path) -> None:
    """Quotes, backslashes, newlines and ``$${`` in a template are text; a ``}`` in a
    string inside an interpolation (even in an interpolation of that string) does not end
    it; line breaks around an interpolation's expression are nothing."""
    module = _lambda(
        function_name='a "b" \\ c\nd $${e} %%{f} $$${g}',
        handler='${jsonencode({x = "}"})}',
        runtime='${join("", ["${"}"}", "x"])}-${\n  "python3.12"\n}',
    )
    fn = _fn(_app(tmp_path, {"main.tf.json": module}))
    assert fn.name.one == 'a "b" \\ c\nd ${e} %{f} $${g}'
    assert json.loads(str(fn.handler.one)) == {"x": "}"}
    assert fn.runtime.one == "}x-python3.12"


def test_unclosed_interpolation_leaves_its_neighbours_alone() -> None:
    """A ``${`` never closed makes its own argument unknown, and only it: written as is,
    its HCL would run on into the next argument's and take that one down with it."""
    text = json.dumps({"locals": {"x": '${ {"k" = ', "y": "safe"}})
    (block,), notes = parse_json_file("main.tf.json", text)
    assert notes == ("main.tf.json:1: x does not parse (${ not closed); value unknown",)
    assert block.attributes["y"].expr.written() == '"safe"'
    assert block.attributes["x"].expr.tree.data == "unparsed_template"


def test_too_many_templates_that_do_not_parse_are_a_note(tmp_path: Path) -> None:
    """Past MAX_UNPARSED arguments that do not parse (each costing a parse of what is
    around it), the file is a note as a whole."""
    broken = {f"a{i}": "${x +}" for i in range(MAX_UNPARSED + 1)}
    loaded = _loaded(tmp_path, {"main.tf.json": {"locals": broken}, "fn.tf.json": _lambda()})
    assert loaded.notes == (
        f"main.tf.json: more than {MAX_UNPARSED} templates do not parse;"
        " the rest of its module is read without it",
    )


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ('{"resource": }', "main.tf.json:1: not valid JSON (Expecting value)"),
        ('{"resource": {}} {}', "main.tf.json:1: not valid JSON (Extra data)"),
        ("[1, 2]", "main.tf.json: not a Terraform JSON file (its root is not an object)"),
        ('{"resource": "x"}', "main.tf.json:1: a resource block must be a JSON object"),
        ('{"resource": {"a": {"b": {"c": NaN}}}}', "main.tf.json: not valid JSON (NaN is not"),
        ('{"resource": {"a": {"b": {"c": 1e999}}}}', "main.tf.json: not valid JSON (the number"),
        ("[" * 100_000, f"main.tf.json: not read, JSON nested deeper than {MAX_DEPTH} levels"),
        ('{"a": ' * 100_000, f"main.tf.json: not read, JSON nested deeper than {MAX_DEPTH}"),
    ],
)
def test_bad_json_is_a_note(tmp_path: Path, text: str, note: str) -> None:
    """Malformed or too deep JSON, a block that is not an object and a template that does
    not parse are a note naming the file (and line); the rest of the module is read."""
    loaded = _loaded(tmp_path, {"main.tf.json": text, "fn.tf.json": _lambda(function_name="api")})
    (got,) = loaded.notes
    assert got.startswith(note), got
    assert got.endswith("; the rest of its module is read without it")
    assert _fn(loaded.apps[0]).name.one == "api"


def test_template_that_does_not_parse_is_unknown(tmp_path: Path) -> None:
    """An argument whose template does not parse is a note and an unknown value (never
    taken as safe); its resource and the file's other arguments are read."""
    module = _lambda(function_name="api")
    module["resource"]["aws_lambda_function_url"] = {
        "api": {
            "function_name": "${aws_lambda_function.api.function_name}",
            "authorization_type": "${var.auth +}",
            "cors": {"allow_origins": ["${aws_iam_role.r.arn"]},
        }
    }
    loaded = _loaded(tmp_path, {"main.tf.json": module})
    written = (tmp_path / "main.tf.json").read_text().splitlines()
    auth, origins = (
        next(n for n, text in enumerate(written, start=1) if f'"{key}"' in text)
        for key in ("authorization_type", "allow_origins")
    )
    first, second = loaded.notes
    assert first.startswith(f"main.tf.json:{auth}: authorization_type does not parse (")
    assert second.startswith(f"main.tf.json:{origins}: allow_origins does not parse (")
    assert all(n.endswith("); value unknown") and "line 1" not in n for n in loaded.notes)
    (trigger,) = _fn(loaded.apps[0]).triggers
    (unknown,) = trigger.auth.unresolved
    assert unknown.expression == '"${var.auth +}"'
    assert unknown.reason == "unparsed template not evaluated"


def test_nested_block_names_cover_every_block_the_rules_read() -> None:
    """Each block name the Terraform loaders ask for (`first`, `nested`) is read as a
    block from JSON too: a rule added for a new block cannot miss it in .tf.json."""
    asked: set[str] = set()
    for source in Path(terraform_package.__file__).parent.glob("*.py"):
        asked.update(re.findall(r"\.(?:first|nested)\(\"(\w+)\"\)", source.read_text()))
    assert asked
    assert asked <= NESTED_BLOCKS, asked - NESTED_BLOCKS
