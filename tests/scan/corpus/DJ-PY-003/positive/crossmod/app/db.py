# ruff: noqa

"""The database helper: runs whatever SQL it is given."""
import sqlite3


def connect():
    return sqlite3.connect("app.db")


def run_sql(sql, params=()):
    cur = connect().cursor()
    cur.execute(sql, params)  # expect: DJ-PY-003@high
    return cur.fetchall()
