"""A request/response cycle already answered, for requests the gateway answers itself
(an early shed: connections.py `_shed_early`), so that uvicorn's body callbacks drop
the body that follows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

if TYPE_CHECKING:  # uvicorn's private types module: not imported to run
    from uvicorn._types import HTTPScope

__all__ = ["finished_cycle"]


def finished_cycle(
    transport: asyncio.Transport,
    flow: FlowControl,
    logger: logging.Logger,
    access_logger: logging.Logger,
    on_response: Callable[[], None],
) -> RequestResponseCycle:
    """A cycle already answered: only read (`response_complete`) and its event set, by
    uvicorn and the gateway, never written to again. Its scope holds none of a request's
    fields (credentials among them): nothing reads a finished cycle's scope, and the
    connection that keeps it may live long."""
    scope = cast("HTTPScope", {"type": "http", "method": "POST", "headers": []})
    cycle = RequestResponseCycle(
        scope=scope,
        transport=transport,
        flow=flow,
        logger=logger,
        access_logger=access_logger,
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=on_response,
    )
    cycle.response_complete = True
    return cycle
