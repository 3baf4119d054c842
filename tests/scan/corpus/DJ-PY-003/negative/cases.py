# ruff: noqa

"""Not SQL injection: placeholders, constants, sanitized values."""
import sqlite3

QUERY = "SELECT * FROM users WHERE name = ?"


def handler(event, context):
    conn = sqlite3.connect("app.db")
    conn.execute(QUERY, (event["user"],))
    conn.execute("SELECT * FROM users WHERE id = ?", (event["id"],))
    conn.execute("SELECT * FROM t WHERE c = %d" % int(event["n"]))
    columns = ", ".join(["id", "name"])
    conn.execute(f"SELECT {columns} FROM users")
    conn.executescript("CREATE TABLE IF NOT EXISTS t (c TEXT)")
    return {}


def count(conn, name):
    return conn.execute("SELECT count(*) FROM t WHERE name = ?", (name,))


def orders(conn, select, table, other):
    query = select(table).join(other, (table.c.id == other.c.id) & (table.c.ok == 1))
    return conn.execute(query.order_by(table.c.id))
