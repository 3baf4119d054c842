# ruff: noqa

"""Passwords inside URLs."""
DATABASE_URL = "postgresql://app:Xk29vLq7Rt@db.internal:5432/app"  # expect: DJ-SEC-005@high
BROKER = "amqp://worker:Pq8zWm3Kd1@mq.internal:5672/"  # expect: DJ-SEC-005@high


def connect(psycopg2):
    return psycopg2.connect("postgresql://u:p4ss@db.internal/app")  # expect: DJ-SEC-005@high


def connect_dsn(psycopg2, pyodbc):
    psycopg2.connect("host=db.internal dbname=app user=app password=Xk29vLq7Rt")  # expect: DJ-SEC-005@high
    return pyodbc.connect("Server=db;Database=app;Uid=app;Pwd=Pq8zWm3Kd1;")  # expect: DJ-SEC-005@high
