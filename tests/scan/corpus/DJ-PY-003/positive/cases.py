# ruff: noqa

"""SQL injection: statements built from event data."""
import sqlite3

import pandas as pd
from sqlalchemy import text


def handler(event, context):
    conn = sqlite3.connect("app.db")
    cur = conn.cursor()
    user = event["user"]
    cur.execute("SELECT * FROM users WHERE name = '" + user + "'")  # expect: DJ-PY-003@high
    cur.execute("SELECT * FROM users WHERE id = %s" % event["id"])  # expect: DJ-PY-003@high
    query = "DELETE FROM sessions WHERE token = '{}'".format(event["token"])
    cur.execute(query)  # expect: DJ-PY-003@high
    cur.executemany(f"INSERT INTO log VALUES ('{user}', ?)", [(1,)])  # expect: DJ-PY-003@high
    frame = pd.read_sql(f"SELECT * FROM orders WHERE customer = '{user}'", conn)  # expect: DJ-PY-003@high
    stmt = text("SELECT * FROM t WHERE c = '%s'" % user)  # expect: DJ-PY-003@high
    return {"rows": len(frame), "stmt": str(stmt)}


def report(conn, table):
    return conn.execute("SELECT count(*) FROM " + table)  # expect: DJ-PY-003@low
