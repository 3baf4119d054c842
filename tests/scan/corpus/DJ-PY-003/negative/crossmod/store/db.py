# ruff: noqa

"""Runs the SQL it is given, with parameters bound by the driver."""
import sqlite3


def run_sql(sql, params=()):
    cur = sqlite3.connect("app.db").cursor()
    cur.execute(sql, params)
    return cur.fetchall()
