"""The Terraform resolver: variables, tfvars, locals, references, functions, lines, and
what it leaves unresolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.scan.iac.model import App, Function, Unresolved
from donjon.scan.iac.terraform import TerraformFormat
from donjon.scan.iac.terraform.module import Module
from donjon.scan.iac.terraform.syntax import parse_file
from donjon.scan.project import discover


def _app(tmp_path: Path, files: dict[str, str]) -> App:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    loaded = TerraformFormat().load(discover(tmp_path))
    assert loaded.notes == ()
    (app,) = loaded.apps
    return app


def _fn(app: App) -> Function:
    (fn,) = app.functions
    return fn


LAMBDA = """
resource "aws_lambda_function" "api" {
  function_name = local.name
  runtime       = var.runtime
  handler       = "app.handler"
  role          = "arn:aws:iam::123456789012:role/x"
}
"""


def test_variable_default_and_local_interpolation(tmp_path: Path) -> None:
    """var.x takes its default; a local interpolating it is resolved; lines are the
    attributes' own."""
    fn = _fn(
        _app(
            tmp_path,
            {
                "main.tf": LAMBDA,
                "vars.tf": 'variable "runtime" {\n  default = "python3.8"\n}\n'
                'locals {\n  name = "svc-${var.runtime}"\n}\n',
            },
        )
    )
    assert fn.runtime.one == "python3.8"
    assert fn.runtime.line == 4
    assert fn.name.one == "svc-python3.8"
    assert fn.where.resource == "aws_lambda_function.api"
    assert fn.where.path == "main.tf"
    assert fn.where.line == 2


def test_terraform_tfvars_overrides_default(tmp_path: Path) -> None:
    """terraform.tfvars wins over the default (Terraform always loads it)."""
    fn = _fn(
        _app(
            tmp_path,
            {
                "main.tf": LAMBDA + 'variable "runtime" { default = "python3.12" }\n'
                'locals { name = "n" }\n',
                "terraform.tfvars": 'runtime = "nodejs12.x"\n',
            },
        )
    )
    assert fn.runtime.one == "nodejs12.x"


def test_other_tfvars_files_are_alternatives(tmp_path: Path) -> None:
    """Two -var-file candidates setting different values make a conditional value."""
    fn = _fn(
        _app(
            tmp_path,
            {
                "main.tf": LAMBDA + 'variable "runtime" {}\nlocals { name = "n" }\n',
                "dev.tfvars": 'runtime = "python3.6"\n',
                "prod.tfvars": 'runtime = "python3.12"\n',
            },
        )
    )
    assert set(fn.runtime.known) == {"python3.6", "python3.12"}
    assert fn.runtime.conditional


def test_string_of_one_interpolation_is_its_value(tmp_path: Path) -> None:
    """``"${x}"`` is x itself (HCL's rule, Terraform 0.11's style): a map variable in
    quotes is the function's environment, and one of two tfvars values stays a choice."""
    main = LAMBDA.replace('  handler       = "app.handler"\n', "").replace(
        "runtime       = var.runtime", 'runtime = "${var.runtime}"\n  handler = "${var.h}"'
    )
    main = main.replace("}\n", '  environment {\n    variables = "${var.env}"\n  }\n}\n', 1)
    fn = _fn(
        _app(
            tmp_path,
            {
                "main.tf": main + 'variable "runtime" {}\nlocals { name = "n" }\n'
                'variable "h" { default = "app.handler" }\n'
                'variable "env" { default = { STAGE = "prod" } }\n',
                "dev.tfvars": 'runtime = "python3.6"\n',
                "prod.tfvars": 'runtime = "python3.12"\n',
            },
        )
    )
    assert [(e.name, e.value.one) for e in fn.environment] == [("STAGE", "prod")]
    assert set(fn.runtime.known) == {"python3.6", "python3.12"}
    assert fn.handler.one == "app.handler"


def test_variable_without_default_is_unresolved(tmp_path: Path) -> None:
    """A variable nobody sets is unresolved, named as written, never a guess."""
    fn = _fn(_app(tmp_path, {"main.tf": LAMBDA + 'variable "runtime" {}\nlocals { name = "n" }\n'}))
    assert fn.runtime.known == ()
    assert fn.runtime.unresolved[0].expression == "var.runtime"


def test_unknown_condition_gives_both_branches(tmp_path: Path) -> None:
    """`cond ? a : b` with an unknown condition may be either branch."""
    text = LAMBDA.replace("var.runtime", 'var.legacy ? "python2.7" : "python3.12"')
    fn = _fn(_app(tmp_path, {"main.tf": text + 'variable "legacy" {}\nlocals { name = "n" }\n'}))
    assert set(fn.runtime.known) == {"python2.7", "python3.12"}
    assert fn.runtime.conditional


def test_module_outputs_data_sources_and_functions_stay_unresolved(tmp_path: Path) -> None:
    """Module outputs, other data sources and functions not evaluated are unresolved
    with the expression as written."""
    text = """
resource "aws_lambda_function" "api" {
  function_name = module.names.api
  runtime       = data.aws_ssm_parameter.rt.value
  handler       = file("handler.txt")
  role          = "r"
}
data "aws_ssm_parameter" "rt" { name = "rt" }
"""
    fn = _fn(_app(tmp_path, {"main.tf": text}))
    assert fn.name.unresolved[0].expression == "module.names.api"
    assert fn.runtime.unresolved[0].expression == "data.aws_ssm_parameter.rt.value"
    assert fn.handler.unresolved[0].expression == 'file("handler.txt")'
    assert "not evaluated" in fn.handler.unresolved[0].reason


def test_functions_evaluated_when_arguments_known() -> None:
    """join, format, lower, merge and jsondecode give values from known arguments."""
    text = """
locals {
  a = join("-", ["x", "y"])
  b = format("%s:%s", "p", 1)
  c = lower("ABC")
  d = merge({ k = 1 }, { l = 2 })
  e = jsondecode("{\\"z\\": [1]}").z[0]
  f = 1 + 2 * 3
  g = !false && "a" == "a"
}
"""
    module = Module("", list(parse_file("main.tf", text)), [])
    values = {k: module.value(a.expr) for k, a in module.locals.items()}
    assert values == {
        "a": "x-y",
        "b": "p:1",
        "c": "abc",
        "d": {"k": 1, "l": 2},
        "e": 1,
        "f": 7,
        "g": True,
    }


def test_malformed_hcl_is_a_note_not_an_exception(tmp_path: Path) -> None:
    """A file that does not parse is a note naming it; its directory's other files are read."""
    (tmp_path / "bad.tf").write_text('resource "aws_s3_bucket" "b" {\n  bucket = \n')
    (tmp_path / "good.tf").write_text(
        LAMBDA.replace("local.name", '"n"').replace("var.runtime", '"python3.12"')
    )
    loaded = TerraformFormat().load(discover(tmp_path))
    assert len(loaded.notes) == 1
    assert loaded.notes[0].startswith("bad.tf: not valid HCL")
    assert _fn(loaded.apps[0]).runtime.one == "python3.12"


def test_terraform_working_directory_is_not_read(tmp_path: Path) -> None:
    """Modules downloaded under .terraform/ are third-party code, not apps of the project."""
    downloaded = tmp_path / ".terraform" / "modules" / "lambda"
    downloaded.mkdir(parents=True)
    (downloaded / "main.tf").write_text(LAMBDA)
    (tmp_path / "main.tf").write_text('resource "aws_s3_bucket" "b" {}\n')
    loaded = TerraformFormat().load(discover(tmp_path))
    assert [a.path for a in loaded.apps] == ["."]
    assert loaded.apps[0].functions == ()


def test_each_directory_is_one_module(tmp_path: Path) -> None:
    """Two directories of .tf files are two apps; a local of one is not seen by the other."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "main.tf").write_text(
        LAMBDA + 'locals { name = "a" }\nvariable "runtime" { default = "x" }\n'
    )
    (tmp_path / "b" / "main.tf").write_text(LAMBDA + 'variable "runtime" { default = "x" }\n')
    loaded = TerraformFormat().load(discover(tmp_path))
    apps = {a.path: a for a in loaded.apps}
    assert set(apps) == {"a", "b"}
    assert _fn(apps["a"]).name.one == "a"
    assert _fn(apps["b"]).name.unresolved[0].expression == "local.name"


@pytest.mark.slow
def test_deep_nesting_is_unresolved_or_a_note(tmp_path: Path) -> None:
    """Expressions nested thousands deep are unresolved and blocks nested thousands deep
    are a note: never a RecursionError out of the scan."""
    deep = "(" * 3000 + '"x"' + ")" * 3000
    (tmp_path / "main.tf").write_text(LAMBDA + f"locals {{ name = {deep} }}\n")
    blocks = 'resource "a" "b" {\n' + "x {\n" * 3000 + "}\n" * 3001
    (tmp_path / "nest.tf").write_text(blocks)
    loaded = TerraformFormat().load(discover(tmp_path))
    assert loaded.notes == (
        "nest.tf: blocks nested too deeply to read; the rest of its module is read without it",
    )
    name = _fn(loaded.apps[0]).name
    assert name.known == ()
    assert name.unresolved[0].reason == "nested too deeply to evaluate"


def test_conditional_policy_and_dynamic_statements(tmp_path: Path) -> None:
    """A policy chosen by an unknown condition keeps the admin branch as conditional; an
    empty document grants nothing; a dynamic statement block is an unresolved statement."""
    text = """
resource "aws_lambda_function" "f" {
  role = aws_iam_role.r.arn
}
resource "aws_iam_role" "r" {}
variable "admin" {}
resource "aws_iam_role_policy" "choice" {
  role   = aws_iam_role.r.id
  policy = var.admin ? local.admin : "{}"
}
locals {
  admin = jsonencode({ Statement = [{ Effect = "Allow", Action = "*", Resource = "*" }] })
}
resource "aws_iam_role_policy" "dyn" {
  role   = aws_iam_role.r.id
  policy = data.aws_iam_policy_document.d.json
}
data "aws_iam_policy_document" "d" {
  dynamic "statement" {
    for_each = var.statements
    content {
      actions = statement.value
    }
  }
}
"""
    policies = {p.name: p for p in _fn(_app(tmp_path, {"main.tf": text})).policies}
    (admin,) = policies["aws_iam_role_policy.choice"].statements
    assert (admin.actions, admin.conditional) == (("*",), True)
    (dynamic,) = policies["aws_iam_role_policy.dyn"].statements
    assert dynamic.unresolved[0].reason == "dynamic statement blocks are not expanded"


def test_values_that_double_at_each_level_stay_unresolved(tmp_path: Path) -> None:
    """Locals that double a string, a list, a JSON document or a number at each of 80
    levels are unresolved past the size bounds, in well under the time they would take
    to build (a template is untrusted input)."""
    levels = 80
    lines = ['s0 = "xxxxxxxxxxxxxxxx"', 'l0 = ["x"]', 'o0 = { a = "x" }', "n0 = 3"]
    for i in range(1, levels + 1):
        lines += [
            f's{i} = "${{local.s{i - 1}}}${{local.s{i - 1}}}"',
            f"l{i} = concat(local.l{i - 1}, local.l{i - 1})",
            f"o{i} = {{ a = local.o{i - 1}, b = local.o{i - 1} }}",
            f"n{i} = local.n{i - 1} * local.n{i - 1}",
        ]
    lines += [
        f"j = jsonencode(local.o{levels})",
        'r = replace(local.s16, "x", local.s16)',
        "m = [1] * 3",
    ]
    text = "locals {\n" + "\n".join(lines) + "\n}\n"
    module = Module("", list(parse_file("main.tf", text)), [])
    values = {k: module.value(a.expr) for k, a in module.locals.items()}
    for name in (f"s{levels}", f"l{levels}", f"n{levels}", "j", "r", "m"):
        assert isinstance(values[name], Unresolved), name
    assert values["s3"] == "x" * 128
    assert values["n2"] == 81


def test_shared_structures_are_never_expanded(tmp_path: Path) -> None:
    """Objects, tuples and conditionals that share their parts 2^80 times, used as an
    environment, a role, a policy's actions and a runtime, are read or left unresolved
    without ever being expanded."""
    levels = 80
    lines = ['o0 = { a = "x" }', 't0 = ["x"]', 'c0 = "python3.12"']
    for i in range(1, levels + 1):
        lines += [
            f"o{i} = {{ a = local.o{i - 1}, b = local.o{i - 1} }}",
            f"t{i} = [local.t{i - 1}, local.t{i - 1}]",
            f'c{i} = var.flag ? local.c{i - 1} : "python{i}"',
        ]
    text = f"""
variable "flag" {{}}
locals {{
{chr(10).join(lines)}
}}
resource "aws_lambda_function" "f" {{
  function_name = "f"
  runtime       = local.c{levels}
  role          = aws_iam_role.r.arn
  environment {{
    variables = local.o{levels}
  }}
}}
resource "aws_iam_role" "r" {{
  name                = "r"
  managed_policy_arns = local.t{levels}
}}
resource "aws_iam_role_policy" "p" {{
  role   = local.t{levels}
  policy = jsonencode({{ Statement = [{{ Effect = "Allow", Action = local.t{levels} }}] }})
}}
resource "aws_iam_role_policy" "q" {{
  role   = aws_iam_role.r.id
  policy = data.aws_iam_policy_document.d.json
}}
data "aws_iam_policy_document" "d" {{
  statement {{
    actions = local.t{levels}
  }}
}}
"""
    fn = _fn(_app(tmp_path, {"main.tf": text}))
    assert fn.runtime.unresolved[0].reason == "too many conditional values"
    assert [e.name for e in fn.environment] == ["a", "b"]
    assert len(fn.environment[0].value.unresolved[0].expression) < 200
    assert all(p.unresolved or p.statements for p in fn.policies)
    assert any(
        "too large" in u.reason for p in fn.policies for s in p.statements for u in s.unresolved
    )


def test_literals_for_the_secret_rule(tmp_path: Path) -> None:
    """Variable defaults, .tfvars values, locals and literal resource attributes (nested
    blocks and maps too) are the app's literals, with their lines; the function's own
    environment and interpolated strings are not."""
    main = """
variable "db_password" {
  default = "default-secret"
}
locals {
  api_key = "local-secret"
}
resource "aws_db_instance" "db" {
  password = "resource-secret"
  tags = {
    Token = "tag-secret"
  }
  connection {
    password = "nested-secret"
  }
  name = "db-${var.db_password}"
}
resource "aws_lambda_function" "f" {
  environment {
    variables = { TOKEN = "env-secret" }
  }
}
"""
    app = _app(tmp_path, {"main.tf": main, "terraform.tfvars": 'db_password = "tfvars-secret"\n'})
    found = {(w.path, w.line, w.resource, path, value) for w, path, value in app.literals}
    assert found == {
        ("main.tf", 3, "var.db_password", "default", "default-secret"),
        ("main.tf", 6, "local.api_key", "api_key", "local-secret"),
        ("main.tf", 9, "aws_db_instance.db", "password", "resource-secret"),
        ("main.tf", 11, "aws_db_instance.db", "tags.Token", "tag-secret"),
        ("main.tf", 14, "aws_db_instance.db", "connection.password", "nested-secret"),
        ("terraform.tfvars", 1, "var.db_password", "default", "tfvars-secret"),
    }


def test_comparisons_and_operators_follow_terraform() -> None:
    """Ordering converts numeric strings ("10" >= 9), + does not concatenate strings or
    lists, and a comparison of unknown values is unresolved."""
    text = """
locals {
  ge   = "10" >= 9
  lt   = 2 < 1.5
  cat  = "a" + "b"
  list = [1] + [2]
  eq   = var.x == "a"
}
variable "x" {}
"""
    module = Module("", list(parse_file("main.tf", text)), [])
    values = {k: module.value(a.expr) for k, a in module.locals.items()}
    assert values["ge"] is True
    assert values["lt"] is False
    for name in ("cat", "list", "eq"):
        assert isinstance(values[name], Unresolved), name
