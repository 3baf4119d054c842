"""What the queue's SQL writes and reads of a row, beside the statements (sql.py): text
the database takes, and column values read back as a row."""

from __future__ import annotations

from typing import Any

__all__ = ["RowValues", "db_text"]


def db_text(value: str) -> str:
    """`value` as text the database takes: a lone surrogate (a function's error message
    may hold one) is kept as its escape, or the outcome could not be recorded and the
    invocation would run again once its lease expired."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


class RowValues:
    """A dict of column values read as a row (for `_row` of what was just inserted)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(
            {
                "request_id": None,
                "result": None,
                "result_key": None,
                "event_key": None,
                "kek_id": None,
                "admitted": None,
                "error_type": None,
                "error": None,
            },
            **values,
        )
