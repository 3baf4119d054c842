"""The s3 trigger's manifest checks: what each source needs is refused clearly when missing."""

from __future__ import annotations

import pytest

from donjon.manifest import ManifestError, parse_manifest

_HEAD = "name: f\nhandler: main.handler\ntriggers:\n  - s3:\n"


def _manifest(*lines: str) -> str:
    return _HEAD + "".join(f"      {line}\n" for line in lines)


def test_an_sqs_trigger_without_its_secret_is_refused() -> None:
    """source: sqs needs the secret holding the queue's settings: refused, saying so."""
    with pytest.raises(ManifestError) as caught:
        parse_manifest(_manifest("source: sqs"))
    assert "needs a secret" in " ".join(caught.value.problems)


def test_an_sqs_trigger_with_its_secret_and_filters_loads() -> None:
    """A full sqs trigger loads with its filters, and its events default to created+removed."""
    m = parse_manifest(_manifest("source: sqs", "secret: q", "prefix: in/", "suffix: .jpg"))
    (spec,) = m.storage_events
    assert (spec.secret, spec.prefix, spec.suffix) == ("q", "in/", ".jpg")
    assert spec.events == ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        (("source: push", "secret: t"), "needs a path"),
        (("source: sqs", "secret: q", "path: /x"), "takes no path"),
        (("source: sqs", "secret: q", "events: ['s3:ObjectRestore:*']"), "events must be"),
        (("source: sqs", "secret: Bad Name"), "secret"),
    ],
)
def test_bad_s3_triggers_are_refused(lines: tuple[str, ...], said: str) -> None:
    """Each wrong s3 trigger is refused with a problem naming what is wrong."""
    with pytest.raises(ManifestError) as caught:
        parse_manifest(_manifest(*lines))
    assert said in " ".join(caught.value.problems)
