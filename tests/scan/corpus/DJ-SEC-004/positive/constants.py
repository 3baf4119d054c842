# ruff: noqa

"""A random-looking value that may be a credential."""
SIGNING_VALUE = "C3J2XD9GLml6EONZg8tjfIcMzSkaHedbTKhRWyo7xs4q"  # expect: DJ-SEC-004@low
