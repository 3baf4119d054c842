"""Errors meet HTTP in one table: statuses by error type, problem documents by the gateway."""

from __future__ import annotations

import json

import pytest

import donjon.gateway.app  # noqa: F401 - imports every subsystem whose errors reach the edge
from donjon.errors import Error
from donjon.gateway.function_errors import error_fields
from donjon.gateway.problems import problem, problem_from_error, status_for, title_for
from donjon.lifecycle import DeployBusy, FunctionNotFound
from donjon.manifest import ManifestError
from donjon.sandbox import FunctionFailed, FunctionTimeout, SandboxError
from donjon.store import StoreConflict, StoreError


def _subclasses(cls: type[Error]) -> set[type[Error]]:
    out = set(cls.__subclasses__())
    for sub in list(out):
        out |= _subclasses(sub)
    return out


def test_no_error_type_carries_an_http_status() -> None:
    """The root error and every subsystem's errors say what went wrong, not a status."""
    assert not hasattr(Error("x"), "status")
    carrying = [c.__qualname__ for c in _subclasses(Error) if "status" in vars(c)]
    assert carrying == []


def test_statuses_come_from_the_table_by_nearest_type() -> None:
    """Listed types answer their status; an unlisted subclass answers its base's."""

    class LateTimeout(FunctionTimeout):
        pass

    assert status_for(ManifestError("m")) == 422
    assert status_for(FunctionNotFound("f")) == 404
    assert status_for(DeployBusy("busy", retry_after_s=2)) == 503
    assert status_for(LateTimeout("t")) == 504
    assert status_for(SandboxError("s")) == 500
    assert status_for(StoreConflict("race")) == 409


def test_a_store_that_cannot_be_opened_is_a_500_that_names_nothing() -> None:
    """Not a 409, and its message (which names the database's path) stays in the log."""
    error = StoreError("cannot open database 'sqlite:////var/lib/secret/donjon.db'")
    response = problem_from_error(error, request_id="abc")
    body = json.loads(bytes(response.body))
    assert response.status_code == 500 and body["status"] == 500
    assert "/var/lib" not in body["detail"] and "sqlite" not in body["detail"]
    assert body["request_id"] == "abc"


def test_titles_are_the_status_phrases_of_rfc_9110() -> None:
    """about:blank problems are titled with the status's phrase (RFC 9457, 4.2.1)."""
    assert title_for(404) == "Not Found"
    assert title_for(413) == "Content Too Large"
    assert title_for(422) == "Unprocessable Content"
    assert title_for(504) == "Gateway Timeout"
    response = problem_from_error(FunctionTimeout("ran past 2s"), request_id="r1")
    body = json.loads(bytes(response.body))
    assert body["title"] == "Gateway Timeout" and body["detail"] == "ran past 2s"


def test_every_problem_carries_a_request_id_and_401s_a_challenge() -> None:
    """A problem made without a request id gets one; a 401 names the Bearer scheme."""
    response = problem(401, "no")
    body = json.loads(bytes(response.body))
    assert len(body["request_id"]) == 20 and response.headers["x-request-id"] == body["request_id"]
    assert response.headers["www-authenticate"] == 'Bearer realm="donjon"'
    assert "www-authenticate" not in problem(403, "no").headers


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("[Errno 2] No such file: '/fn/data/x.csv'", "[Errno 2] No such file: 'x.csv'"),
        ("bad /usr/lib/python3.11/json/decoder.py", "bad decoder.py"),
        (
            "fetch https://api.example.com/v1/items failed",
            "fetch https://api.example.com/v1/items failed",
        ),
        ("1/2 done", "1/2 done"),
    ],
)
def test_error_messages_lose_their_paths(message: str, shown: str) -> None:
    """errorMessage keeps a file's name, never its path; URLs and fractions stay."""
    error = FunctionFailed(message)
    error.error_type = "OSError"
    assert error_fields(error) == {"errorType": "OSError", "errorMessage": shown}


def test_limits_that_cannot_be_checked_are_a_503_with_retry_after() -> None:
    """The shared limits store is down: 503 with its reason and Retry-After (fail closed)."""
    from donjon.ratelimit import LimiterUnavailable
    from donjon.ratelimit.failover import LimitsDown

    assert status_for(LimiterUnavailable("down")) == 503
    response = problem_from_error(LimitsDown("Redis at redis://h:6379/0 is unavailable"))
    body = json.loads(bytes(response.body))
    assert response.status_code == 503 and "is unavailable" in body["detail"]
    assert int(response.headers["retry-after"]) >= 1
