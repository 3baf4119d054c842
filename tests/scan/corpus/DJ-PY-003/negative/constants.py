# ruff: noqa

"""SQL built only from constants: constant f-strings, joins of constants, a module
constant table name, a class constant, a table picked from a constant table. The
values go in as parameters; nothing here is reported."""
import sqlite3

TABLE = "orders"
COLUMNS = ("id", "customer", "total")
SELECT_ALL = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"
TABLES = {"orders": "orders", "refunds": "refunds_v2"}


class Orders:
    TABLE = "orders_archive"

    def __init__(self, conn):
        self.conn = conn

    def count(self):
        return self.conn.execute(f"SELECT count(*) FROM {self.TABLE}").fetchone()


def handler(event, context):
    conn = sqlite3.connect("app.db")
    conn.execute(SELECT_ALL)
    conn.execute(f"SELECT * FROM {TABLE} WHERE id = ?", (event["id"],))
    conn.execute("SELECT " + ", ".join(COLUMNS) + " FROM " + TABLE)
    conn.execute("SELECT * FROM %s WHERE customer = ?" % TABLE, (event["customer"],))
    conn.execute("DELETE FROM {} WHERE id = ?".format(TABLE), (event["id"],))
    ids = event["ids"]
    marks = ", ".join("?" for _ in ids)
    conn.execute(f"SELECT * FROM {TABLE} WHERE id IN ({marks})", ids)
    conn.execute(f"SELECT * FROM {TABLES[event['kind']]} WHERE id = ?", (event["id"],))
    query = f"SELECT * FROM {TABLE}"
    if event.get("newest"):
        query += " ORDER BY id DESC"
    conn.execute(query)
    return {"archived": Orders(conn).count()}
