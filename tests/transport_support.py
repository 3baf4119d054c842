"""A stand-in for a connection's transport, for tests that drive uvicorn's cycles or a
protocol without a socket: it keeps what is written and when reading paused."""

from __future__ import annotations

from typing import Any


class KeptTransport:
    """What is written, kept; whether closed; each pause (False) and resume (True) of
    reading, in order."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading: list[bool] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading.append(False)

    def resume_reading(self) -> None:
        self.reading.append(True)

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8443)}.get(name)
