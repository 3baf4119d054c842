# ruff: noqa

"""Table names from a settings module of the bundle are constants there too."""
import sqlite3

from settings import tables
from settings.tables import USERS


def handler(event, context):
    conn = sqlite3.connect("app.db")
    conn.execute(f"SELECT * FROM {USERS} WHERE id = ?", (event["id"],))
    conn.execute("SELECT count(*) FROM " + tables.AUDIT)
    return {}
