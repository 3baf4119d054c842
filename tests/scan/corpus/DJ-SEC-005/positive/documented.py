# ruff: noqa

"""A URL's password in a docstring's example is graded low; in code it stays high."""


class Link:
    """
    link = Link("https://ann%40mail.test:two%20words@shop.test/cart")  # expect: DJ-SEC-005@low
    """


MIRROR = "https://ann:two%20words@mirror.test/pub"  # expect: DJ-SEC-005@high
