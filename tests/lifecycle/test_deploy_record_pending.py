"""A deploy that was made, and whose "ok" record waits in the audit outbox (the writer
could not append it: `RecordPending`), is not audited as rejected as well: the log
would then hold a rejection and, once the outbox drains, the deploy's success."""

from __future__ import annotations

import asyncio

import pytest

from donjon.audit.errors import RecordPending
from donjon.lifecycle.deployments import Deployments
from donjon.store import StoreError


class _Rejections:
    """What `Deployments._refusals_audited` asks of its deployments: `_rejected`."""

    def __init__(self) -> None:
        self.rejected: list[Exception] = []

    async def _rejected(self, principal: object, request_id: str, error: Exception) -> None:
        self.rejected.append(error)


def _deploy_ending_with(error: Exception, rejections: _Rejections) -> None:
    async def deploy() -> None:
        async with Deployments._refusals_audited(rejections, object(), "r1"):  # type: ignore[arg-type]  # the one method it uses
            raise error

    asyncio.run(deploy())


def test_a_deploy_made_whose_record_is_pending_is_not_audited_as_rejected() -> None:
    rejections = _Rejections()
    with pytest.raises(RecordPending):
        _deploy_ending_with(RecordPending("the change was made"), rejections)
    assert rejections.rejected == []
    refused = StoreError("the store refused it")
    with pytest.raises(StoreError):
        _deploy_ending_with(refused, rejections)
    assert rejections.rejected == [refused]
