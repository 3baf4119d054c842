# ruff: noqa

"""Passwords written in code."""
DB_PASSWORD = "Tr0ub4dor&3-horse"  # expect: DJ-SEC-003@medium


def connect(connect_db):
    return connect_db(user="app", password="s3cr3t-Pa55word")  # expect: DJ-SEC-003@medium
