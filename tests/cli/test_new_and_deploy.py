"""`donjon new`, `donjon describe`, and `donjon deploy` of one, several or a stack of functions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import LiveNode, donjon_env, run_cli


def _function(where: Path, name: str, reply: str = "1") -> Path:
    where.mkdir(parents=True)
    (where / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
    )
    (where / "main.py").write_text(f"def handler(event, context):\n    return {reply}\n")
    return where


@pytest.mark.parametrize("template", ["http", "event", "lambda"])
def test_new_makes_a_function_whose_test_passes_and_that_deploys(
    node: LiveNode, tmp_path: Path, template: str
) -> None:
    """Each template's own test passes as generated; it deploys through the gate and answers."""
    env = node.env()
    name = f"new-{template}"
    made = json.loads(
        run_cli(
            env, "new", name, "--template", template, "--dir", str(tmp_path), "--output", "json"
        ).stdout
    )
    fn = tmp_path / name
    assert made["directory"] == str(fn)
    assert (fn / "donjon.yaml").is_file()
    assert any(Path(f).name.startswith("test_") for f in made["files"])
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=fn,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout
    run_cli(env, "deploy", str(fn))
    if template == "http":
        with node.client() as c:
            r = c.get(f"/fn/{name}", params={"name": "ada"})
        assert r.status_code == 200, r.text
        assert r.json()["message"] == "hello, ada"
    else:
        out = json.loads(run_cli(env, "invoke", name, "--data", '{"name": "ada"}').stdout)
        body = json.loads(out["body"]) if template == "lambda" else out
        assert body["message"] == "hello, ada"


def test_new_refuses_a_bad_name_or_an_existing_directory(tmp_path: Path) -> None:
    """A name that is not a function name, or a directory already there, writes nothing."""
    env = donjon_env(tmp_path / "data")
    bad = run_cli(env, "new", "Bad_Name", "--dir", str(tmp_path), check=False)
    assert bad.returncode == 2 and "function name" in bad.stderr
    assert not (tmp_path / "Bad_Name").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    taken = run_cli(env, "new", "taken", "--dir", str(tmp_path), check=False)
    assert taken.returncode == 2 and "already exists" in taken.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


def test_new_refuses_a_name_with_a_trailing_newline(tmp_path: Path) -> None:
    """`name\n` is no function name (a regex's `$` matches before a final newline): refused,
    no directory made whose name holds a control character and that no deploy takes."""
    env = donjon_env(tmp_path / "data")
    (tmp_path / "work").mkdir()
    done = run_cli(env, "new", "fn\n", "--dir", str(tmp_path / "work"), check=False)
    assert done.returncode == 2 and "function name" in done.stderr, done.stdout
    assert list((tmp_path / "work").iterdir()) == []


def test_describe_shows_the_deployed_version_and_its_settings(
    node: LiveNode, tmp_path: Path
) -> None:
    """describe prints version, digest, handler, limits and triggers; --output json the view."""
    env = node.env()
    fn = tmp_path / "described"
    run_cli(env, "new", "described", "--dir", str(tmp_path))
    deployed = json.loads(run_cli(env, "deploy", str(fn), "--output", "json").stdout)
    text = run_cli(env, "describe", "described").stdout
    assert f"sha256:{deployed['digest']}" in text
    assert "main.handler" in text and "128 MB" in text
    assert "http GET,POST /fn/described (auth: key)" in text
    view = json.loads(run_cli(env, "describe", "described", "--output", "json").stdout)
    assert view["version"] == deployed["version"] and view["manifest"]["memory_mb"] == 128
    missing = run_cli(env, "describe", "no-such-fn", check=False)
    assert missing.returncode == 1 and "404" in missing.stderr


def test_redeploy_of_the_same_bundle_is_a_no_op_that_says_so(
    node: LiveNode, tmp_path: Path
) -> None:
    """Same digest: 200, no new version, "unchanged" in the reply; a change makes a version."""
    env = node.env()
    fn = _function(tmp_path / "same", "same-bundle", "{'v': 1}")
    first = json.loads(run_cli(env, "deploy", str(fn), "--output", "json").stdout)
    again = run_cli(env, "deploy", str(fn)).stdout
    assert again.startswith("unchanged: ") and "nothing deployed" in again
    from donjon.bundle import build_bundle

    _, archive = build_bundle(fn)
    with node.client() as c:
        r = c.post("/v1/functions", content=archive)
        assert r.status_code == 200, r.text
        assert r.json()["unchanged"] is True and r.json()["version"] == first["version"]
        assert c.get("/v1/functions/same-bundle").json()["version"] == first["version"]
        audit = c.get("/v1/audit", params={"n": 50}).json()
    assert any(a["action"] == "function.deploy" and a["outcome"] == "unchanged" for a in audit), (
        audit
    )
    (fn / "main.py").write_text("def handler(event, context):\n    return {'v': 2}\n")
    changed = json.loads(run_cli(env, "deploy", str(fn), "--output", "json").stdout)
    assert changed["version"] == first["version"] + 1 and changed["unchanged"] is False
    assert node.invoke("same-bundle", {}).json() == {"v": 2}


def test_deploy_of_several_directories_prints_one_summary(node: LiveNode, tmp_path: Path) -> None:
    """`deploy A B C` deploys each and ends with one summary line counting the outcomes."""
    env = node.env()
    a = _function(tmp_path / "a", "many-a")
    b = _function(tmp_path / "b", "many-b")
    run_cli(env, "deploy", str(a))
    out = run_cli(env, "deploy", str(a), str(b)).stdout
    assert out.rstrip().splitlines()[-1] == "2 functions: 1 deployed, 1 unchanged, 0 refused"
    listed = json.loads(run_cli(env, "deploy", str(a), str(b), "--output", "json").stdout)
    assert [(r["name"], r["unchanged"]) for r in listed] == [("many-a", True), ("many-b", True)]


def test_deploy_of_a_stack_file_deploys_the_directories_it_lists(
    node: LiveNode, tmp_path: Path
) -> None:
    """`deploy -f stack.yaml` reads `functions: [dir, ...]` relative to the file."""
    env = node.env()
    _function(tmp_path / "fns" / "one", "stack-one", "1")
    _function(tmp_path / "fns" / "two", "stack-two", "2")
    stack = tmp_path / "stack.yaml"
    stack.write_text("functions:\n  - fns/one\n  - fns/two\n")
    out = run_cli(env, "deploy", "-f", str(stack)).stdout
    assert "2 functions: 2 deployed, 0 unchanged, 0 refused" in out
    assert node.invoke("stack-one", {}).json() == 1
    assert node.invoke("stack-two", {}).json() == 2


def test_a_stack_with_one_broken_bundle_deploys_nothing(node: LiveNode, tmp_path: Path) -> None:
    """A bundle that does not build stops the whole deploy before anything is sent."""
    env = node.env()
    _function(tmp_path / "ok", "stack-fine")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "donjon.yaml").write_text("name: stack-broken\nhandler: main.handler\nbogus: 1\n")
    (broken / "main.py").write_text("def handler(e, c):\n    return 1\n")
    stack = tmp_path / "stack.yaml"
    stack.write_text("functions: [ok, broken]\n")
    done = run_cli(env, "deploy", "-f", str(stack), check=False)
    assert done.returncode == 1 and "bogus" in done.stderr and "nothing was deployed" in done.stderr
    names = [f["name"] for f in json.loads(run_cli(env, "ls", "--output", "json").stdout)]
    assert "stack-fine" not in names and "stack-broken" not in names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- fns/one\n", "functions"),
        ("functions: [a]\nextra: 1\n", "extra"),
        ("functions: not-a-list\n", "functions"),
        ("functions: [\n", "not YAML"),
    ],
)
def test_a_malformed_stack_file_is_refused_clearly(
    tmp_path: Path, text: str, expected: str
) -> None:
    """A stack file that is not `functions: [dir, ...]` gets a clear error, nothing sent."""
    stack = tmp_path / "stack.yaml"
    stack.write_text(text)
    env = donjon_env(tmp_path / "data", "https://127.0.0.1:1", "dj_unused")
    done = run_cli(env, "deploy", "-f", str(stack), check=False)
    assert done.returncode == 1, done.stderr
    assert expected in done.stderr and "cannot reach" not in done.stderr
