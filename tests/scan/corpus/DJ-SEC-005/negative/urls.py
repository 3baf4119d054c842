# ruff: noqa

"""URLs without credentials, or with the password injected at run time."""
DATABASE_URL = "postgresql://app@db.internal:5432/app"
TEMPLATE = "postgresql://app:${DB_PASSWORD}@db.internal:5432/app"
HOMEPAGE = "https://donjon.invalid/docs"
