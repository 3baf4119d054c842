# ruff: noqa

"""Constant parts do not make event data safe: the event's value is still in the SQL."""
import sqlite3

TABLE = "orders"
COLUMNS = ("id", "customer", "total")


def handler(event, context):
    conn = sqlite3.connect("app.db")
    conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE customer = '{event['c']}'")  # expect: DJ-PY-003@high
    conn.execute(f"SELECT * FROM {TABLE} ORDER BY {event['sort']}")  # expect: DJ-PY-003@high
    table = TABLE + event.get("suffix", "")
    conn.execute("SELECT * FROM " + table)  # expect: DJ-PY-003@high
    return {}
