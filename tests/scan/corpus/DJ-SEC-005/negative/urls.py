# ruff: noqa

"""URLs without credentials, or with the password injected at run time."""
DATABASE_URL = "postgresql://app@db.internal:5432/app"
TEMPLATE = "postgresql://app:${DB_PASSWORD}@db.internal:5432/app"
HOMEPAGE = "https://donjon.invalid/docs"
DSN = "host=db.internal dbname=app user=app password=${DB_PASSWORD}"
ODBC = "Server=db;Database=app;Trusted_Connection=yes;"


def connect(psycopg2, context):
    return psycopg2.connect(f"host=db dbname=app password={context.secrets['db']}")
