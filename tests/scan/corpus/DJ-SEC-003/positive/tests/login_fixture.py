# ruff: noqa

"""A test's made-up password: still reported, but below the gate."""
PASSWORD = "Tr0ub4dor&3-horse"  # expect: DJ-SEC-003@low


def login_twice(client):
    assert client.login(user="app", password="s3cr3t-Pa55word")  # expect: DJ-SEC-003@low
