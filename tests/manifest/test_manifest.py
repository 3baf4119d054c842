"""donjon.yaml validation: every problem named by field path, unknown fields refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.manifest import Isolation, ManifestError, load_manifest, parse_manifest

FULL = """
name: resize
handler: main.handler
memory_mb: 128
timeout_s: 10
isolation: warm
permissions:
  secrets: [stripe-key]
  egress: ["api.stripe.com:443"]
  invoke: [thumbnail]
triggers:
  - http: {path: /resize, methods: [POST], auth: key}
  - schedule: "*/5 * * * *"
limits: {rate: "100/minute", concurrency: 8}
input_schema: {type: object, required: [url]}
"""


def test_the_design_example_is_valid() -> None:
    """The manifest example of DESIGN.md parses with every field."""
    m = parse_manifest(FULL)
    assert m.name == "resize"
    assert m.isolation is Isolation.WARM
    assert m.permissions.egress == ("api.stripe.com:443",)
    assert m.http_triggers[0].path == "/resize"
    assert m.limits.parsed_rate is not None and m.limits.parsed_rate.count == 100
    assert (m.module, m.function) == ("main", "handler")


def test_defaults_deny_everything() -> None:
    """With nothing granted, a function has no secrets, egress, invokes or triggers."""
    m = parse_manifest("name: a\nhandler: m.h\n")
    assert m.permissions.secrets == () and m.permissions.egress == ()
    assert m.permissions.invoke == () and m.triggers == ()
    assert m.isolation is Isolation.INVOCATION


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("name: a\nhandler: m.h\nbogus: 1\n", "bogus"),
        ("name: A_b\nhandler: m.h\n", "name"),
        ("name: a\nhandler: nodot\n", "handler"),
        ("name: a\nhandler: m.h\nmemory_mb: 1\n", "memory_mb"),
        ("name: a\nhandler: m.h\ntimeout_s: 0\n", "timeout_s"),
        ("name: a\nhandler: m.h\nisolation: shared\n", "isolation"),
        ("name: a\nhandler: m.h\npermissions: {egress: ['*:443']}\n", "permissions.egress"),
        ("name: a\nhandler: m.h\npermissions: {network: true}\n", "permissions.network"),
        ("name: a\nhandler: m.h\ntriggers: [{http: {path: x}}]\n", "triggers[0].http.path"),
        (
            "name: a\nhandler: m.h\ntriggers: [{http: {path: /x, auth: none}}]\n",
            "triggers[0].http.auth",
        ),
        ("name: a\nhandler: m.h\ntriggers: [{schedule: 'every day'}]\n", "triggers[0].schedule"),
        ("name: a\nhandler: m.h\ntriggers: [{schedule: '0 0 30 2 *'}]\n", "triggers[0].schedule"),
        ("name: a\nhandler: m.h\ntriggers: [{queue: q}]\n", "triggers[0]"),
        ("name: a\nhandler: m.h\nlimits: {rate: lots}\n", "limits.rate"),
        ("name: a\nhandler: m.h\nlimits: {concurrency: 0}\n", "limits.concurrency"),
        ("name: a\nhandler: m.h\nlimits: {queued: 0}\n", "limits.queued"),
        ("name: a\nhandler: m.h\nlimits: {queued: 1000001}\n", "limits.queued"),
        ("name: a\nhandler: m.h\nlimits: {queued: true}\n", "limits.queued"),
        ("name: a\nhandler: m.h\nlimits: {queued: 1.5}\n", "limits.queued"),
        ("name: a\nhandler: m.h\ninput_schema: {type: 12}\n", "input_schema"),
        # A final newline is not matched by a pattern's `$` (re.match took it).
        ('name: a\nhandler: m.h\ntriggers: [{http: {path: "/x\\n"}}]\n', "triggers[0].http.path"),
        ('name: a\nhandler: "m.h\\n"\n', "handler"),
        ('name: a\nhandler: m.h\nlimits: {rate: "100/minute\\n"}\n', "limits.rate"),
        ('name: a\nhandler: m.h\nlimits: {body: "1MiB\\n"}\n', "limits.body"),
    ],
)
def test_each_problem_is_named_by_its_field_path(text: str, path: str) -> None:
    """A bad field is reported with its path."""
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    assert any(p.startswith(f"{path}:") for p in info.value.problems), info.value.problems


def test_all_problems_are_reported_at_once() -> None:
    """Several bad fields give several problems, not just the first."""
    with pytest.raises(ManifestError) as info:
        parse_manifest("name: Bad\nhandler: x\nmemory_mb: 1\nextra: 2\n")
    assert len(info.value.problems) == 4


@pytest.mark.parametrize("text", ["", "[1, 2]", "name: [unclosed", "just a string"])
def test_non_mapping_or_broken_yaml_is_refused(text: str) -> None:
    """YAML that is not a mapping is a clear error."""
    with pytest.raises(ManifestError):
        parse_manifest(text)


def test_duplicate_routes_are_refused() -> None:
    """Two triggers on the same method and path are an error."""
    with pytest.raises(ManifestError):
        parse_manifest("name: a\nhandler: m.h\ntriggers: [{http: {path: /x}}, {http: {path: /x}}]")


def test_handler_module_must_exist(tmp_path: Path) -> None:
    """A manifest naming a module the bundle lacks is refused."""
    (tmp_path / "donjon.yaml").write_text("name: a\nhandler: missing.handler\n")
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path)


def test_missing_manifest_is_clear(tmp_path: Path) -> None:
    """A directory without donjon.yaml is not a bundle."""
    with pytest.raises(ManifestError, match=r"no donjon\.yaml"):
        load_manifest(tmp_path)


def test_event_format_and_log_level_are_optional_and_checked() -> None:
    """event_format is apigw-v1 or apigw-v2 per http trigger; log_level is Lambda's (any case)."""
    base = "name: f\nhandler: main.handler\n"
    plain = parse_manifest(base + "triggers:\n  - http: {path: /a}\n")
    assert plain.http_triggers[0].event_format is None
    assert plain.log_level is None
    m = parse_manifest(
        base + "log_level: warn\ntriggers:\n  - http: {path: /a, event_format: apigw-v2}\n"
    )
    assert m.http_triggers[0].event_format == "apigw-v2"
    assert m.log_level == "WARN"
    with pytest.raises(ManifestError) as e:
        parse_manifest(
            base + "log_level: loud\ntriggers:\n  - http: {path: /a, event_format: v3}\n"
        )
    assert any("event_format" in p for p in e.value.problems)
    assert any("log_level" in p for p in e.value.problems)


def test_queued_defaults_to_ten_thousand_and_takes_a_bound() -> None:
    """`limits.queued` is 10,000 when unset and the number given otherwise."""
    assert parse_manifest("name: a\nhandler: m.h\n").limits.queued == 10_000
    assert parse_manifest("name: a\nhandler: m.h\nlimits: {queued: 3}\n").limits.queued == 3
