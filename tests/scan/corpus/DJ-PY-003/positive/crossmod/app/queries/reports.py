# ruff: noqa

"""Reports: a relative import two levels up."""
from ..db import connect


def monthly(month):
    sql = "SELECT * FROM sales WHERE month = '" + month + "'"
    return connect().execute(sql).fetchall()  # expect: DJ-PY-003@high
