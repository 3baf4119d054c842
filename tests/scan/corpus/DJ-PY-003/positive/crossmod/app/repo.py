# ruff: noqa

"""The user repository: builds its SQL by formatting."""
from .db import connect


def find_user(name):
    cur = connect().cursor()
    cur.execute("SELECT * FROM users WHERE name = '%s'" % name)  # expect: DJ-PY-003@high
    return cur.fetchone()


class UserRepo:
    @staticmethod
    def rename(user_id, name):
        sql = f"UPDATE users SET name = '{name}' WHERE id = {user_id}"
        connect().execute(sql)  # expect: DJ-PY-003@high

    def touch(self, user_id):
        connect().execute("UPDATE users SET seen = 1 WHERE id = " + user_id)  # expect: DJ-PY-003@high

    def purge(self, before):
        connect().execute(f"DELETE FROM users WHERE seen < '{before}'")  # expect: DJ-PY-003@high
