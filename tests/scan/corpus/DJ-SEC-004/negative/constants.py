# ruff: noqa

"""Identifiers, sequences and UUIDs are not secrets."""
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
REQUEST_ID = "123e4567-e89b-12d3-a456-426614174000"
ZEROES = "0000000000000000"
ENDPOINT = "https://api.internal/v1/resize"
