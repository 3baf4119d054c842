# ruff: noqa

"""A test signs with a literal key: reported, below the gate."""
import jwt


def round_trip():
    token = jwt.encode({"sub": "u1"}, "test-key", algorithm="HS256")  # expect: DJ-SEC-006@low
    assert jwt.decode(token, "test-key", algorithms=["HS256"])["sub"] == "u1"  # expect: DJ-SEC-006@low
