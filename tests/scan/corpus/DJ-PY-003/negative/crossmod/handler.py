# ruff: noqa

"""Cross-module: a database helper given only constants, placeholders or checked values."""
from store import db, repo


def handler(event, context):
    total = db.run_sql("SELECT count(*) FROM users")
    rows = db.run_sql("SELECT * FROM users WHERE id = ?", (event["id"],))
    return {"total": total, "rows": rows, "user": repo.by_name(event["name"]), "n": repo.by_id(event["n"])}
