"""OpenTofu's files (``*.tofu``, ``*.tofu.json``) read as OpenTofu reads them: part of
their directory's module, a ``.tofu`` file in place of the ``.tf`` file of its name; and
a module written for both tools judged as each would apply it."""

from __future__ import annotations

from pathlib import Path

from donjon.scan.iac.interface import Loaded
from donjon.scan.iac.terraform import TerraformFormat
from donjon.scan.project import discover


def _url(auth: str, name: str = "api") -> str:
    return f"""resource "aws_lambda_function" "{name}" {{
  function_name = "{name}"
  role          = "arn:aws:iam::123456789012:role/x"
  runtime       = "python3.12"
  handler       = "app.handler"
}}

resource "aws_lambda_function_url" "{name}" {{
  function_name      = aws_lambda_function.{name}.function_name
  authorization_type = "{auth}"
}}
"""


def _loaded(tmp_path: Path, files: dict[str, str]) -> Loaded:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return TerraformFormat().load(discover(tmp_path))


def _auths(loaded: Loaded) -> list[tuple[str | None, str | None, str]]:
    """(function, authorization, file of the URL) of every function URL of every app."""
    return [
        (fn.name.one, trigger.auth.one, trigger.where.path)
        for app in loaded.apps
        for fn in app.functions
        for trigger in fn.triggers
    ]


def test_tofu_files_are_read_by_a_scan_of_the_directory(tmp_path: Path) -> None:
    """`donjon scan` (not the gate's whole tree) reads .tofu files as it reads .tf files."""
    (tmp_path / "main.tofu").write_text(_url("NONE"))
    assert [f.rel for f in discover(tmp_path).files] == ["main.tofu"]


def test_tofu_files_are_part_of_their_module(tmp_path: Path) -> None:
    """main.tf and extra.tofu (no .tf of its name) are one module, as OpenTofu reads it;
    no second reading when no .tofu file stands in for a .tf one."""
    loaded = _loaded(tmp_path, {"main.tf": _url("AWS_IAM"), "extra.tofu": _url("NONE", "b")})
    assert sorted(_auths(loaded)) == [
        ("api", "aws_iam", "main.tf"),
        ("b", "none", "extra.tofu"),
    ]
    assert len(loaded.apps) == 1
    assert loaded.notes == ()


def test_tofu_file_stands_in_for_the_tf_file_of_its_name(tmp_path: Path) -> None:
    """main.tofu and main.tf: OpenTofu's reading has main.tofu's URL alone, Terraform's
    main.tf's alone, and a note says both are judged."""
    files = {"infra/main.tf": _url("AWS_IAM"), "infra/main.tofu": _url("NONE")}
    loaded = _loaded(tmp_path, files)
    assert _auths(loaded) == [
        ("api", "none", "infra/main.tofu"),
        ("api", "aws_iam", "infra/main.tf"),
    ]
    assert loaded.notes == (
        "infra: OpenTofu reads a .tofu file in place of infra/main.tf; the module is judged"
        " as OpenTofu reads it and as Terraform reads it (without the .tofu files)",
    )


def test_json_forms_stand_in_by_name_too(tmp_path: Path) -> None:
    """main.tofu.json stands in for main.tf.json, not for main.tf."""
    url = (
        '{"resource": {"aws_lambda_function_url": {"api": {"function_name": "api",'
        ' "authorization_type": "%s"}}}}'
    )
    files = {"main.tf.json": url % "AWS_IAM", "main.tofu.json": url % "NONE"}
    loaded = _loaded(tmp_path, files)
    assert "in place of main.tf.json;" in loaded.notes[0]
    files = {"main.tf": _url("AWS_IAM"), "main.tofu.json": url.replace('"api"', '"b"') % "NONE"}
    assert _loaded(tmp_path / "other", files).notes == ()


def test_tofu_override_files_merge_as_override_tf_files_do(tmp_path: Path) -> None:
    """override.tofu and main_override.tofu.json are override files: their values win."""
    override = '{"resource": {"aws_lambda_function_url": {"api": {"authorization_type": "NONE"}}}}'
    loaded = _loaded(tmp_path, {"main.tofu": _url("AWS_IAM"), "main_override.tofu.json": override})
    assert _auths(loaded) == [("api", "none", "main.tofu")]
    native = 'resource "aws_lambda_function_url" "api" {\n  authorization_type = "NONE"\n}\n'
    other = _loaded(tmp_path / "b", {"main.tf": _url("AWS_IAM"), "override.tofu": native})
    assert _auths(other) == [("api", "none", "main.tf")]


def test_tofu_files_under_the_working_directory_are_not_read(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path, {".terraform/modules/x/main.tofu": _url("NONE")})
    assert loaded.apps == ()
