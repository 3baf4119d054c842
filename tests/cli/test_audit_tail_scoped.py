"""`donjon audit tail` for a key that reads some functions' records only: it follows the
pages that ran out of reading (`x-donjon-next-before`) down to the start of the log."""

from __future__ import annotations

from typing import Any, cast

import httpx

from donjon.cli.audit_cmd import read_tail
from donjon.cli.client import ApiClient


class _ScopedLog:
    """Stands in for the API over a log of 12 records, of which seqs 2 and 10 are in
    scope, each page reading at most 4 records (the server's scan cap, made small)."""

    kept = (2, 10)
    scan = 4

    def __init__(self) -> None:
        self.asked: list[dict[str, int]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        params: dict[str, int] = kwargs["params"]
        self.asked.append(dict(params))
        before = params.get("before", 13)
        read = list(range(before - 1, max(0, before - 1 - self.scan), -1))
        kept = [s for s in read if s in self.kept][: params["n"]]
        records = [{"seq": s} for s in reversed(kept)]
        headers = {}
        if len(kept) < params["n"] and read and read[-1] > 1:
            headers["x-donjon-next-before"] = str(read[-1])
        return httpx.Response(200, json=records, headers=headers)


def test_tail_follows_scoped_pages_to_the_start_of_the_log() -> None:
    """Short pages that say where to go on are followed; the kept records come back in
    order and the walk ends at the first record."""
    log = _ScopedLog()
    records = read_tail(cast(ApiClient, log), 5)
    assert [r["seq"] for r in records] == [2, 10]
    assert [a.get("before") for a in log.asked] == [None, 9, 5]
