# ruff: noqa

"""A repository that binds parameters or converts them first."""
from .db import run_sql


def by_name(name):
    return run_sql("SELECT * FROM users WHERE name = ?", (name,))


def by_id(raw):
    return run_sql("SELECT * FROM users WHERE id = %d" % int(raw))
