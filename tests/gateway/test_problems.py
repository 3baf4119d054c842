"""Errors meet HTTP in one table: statuses by error type, problem documents by the gateway."""

from __future__ import annotations

import json

import donjon.gateway.app  # noqa: F401 - imports every subsystem whose errors reach the edge
from donjon.errors import Error
from donjon.gateway.problems import problem_from_error, status_for
from donjon.lifecycle import DeployBusy, FunctionNotFound
from donjon.manifest import ManifestError
from donjon.sandbox import FunctionTimeout, SandboxError
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
