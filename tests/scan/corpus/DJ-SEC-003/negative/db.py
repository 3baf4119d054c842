# ruff: noqa

"""Passwords read at run time, empty, or hashed."""
import os


def connect(connect_db, context):
    password = os.environ["DB_PASSWORD"]
    empty_password = ""
    secret = context.secrets["db-password"]
    return connect_db(user="app", password=password or secret or empty_password)


SECRET = "secret"
PASSWORD_FIELD = "password"
