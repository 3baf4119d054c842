# ruff: noqa

"""Not SQL injection: parameterised statements of the AWS data APIs and other drivers,
and methods called query/run that are not SQL."""
import asyncio

import boto3
import pandas as pd
from sqlalchemy import create_engine, text

rds = boto3.client("rds-data")
athena = boto3.client("athena")
dynamodb = boto3.client("dynamodb")
redshift = boto3.client("redshift-data")
engine = create_engine("postgresql://localhost/app")
TABLE = "Orders"


def handler(event, context):
    name = event["queryStringParameters"]["name"]
    rds.execute_statement(
        resourceArn="arn", secretArn="arn", database="app",
        sql="SELECT * FROM users WHERE name = :name",
        parameters=[{"name": "name", "value": {"stringValue": name}}],
    )
    athena.start_query_execution(
        QueryString="SELECT * FROM logs WHERE day = ?",
        ExecutionParameters=[event["day"]],
    )
    dynamodb.execute_statement(Statement="SELECT * FROM Orders WHERE id = ?", Parameters=[{"S": name}])
    dynamodb.batch_execute_statement(
        Statements=[{"Statement": f"DELETE FROM {TABLE} WHERE id = ?", "Parameters": [{"S": name}]}]
    )
    dynamodb.execute_transaction(
        TransactStatements=[{"Statement": "UPDATE Orders SET s = ? WHERE id = ?", "Parameters": [{"S": "x"}, {"S": name}]}]
    )
    redshift.execute_statement(
        ClusterIdentifier="c", Database="d",
        Sql="SELECT * FROM sales WHERE region = :region",
        Parameters=[{"name": "region", "value": name}],
    )
    with engine.connect() as conn:
        conn.execute(text("SELECT * FROM users WHERE name = :name"), {"name": name})
        conn.exec_driver_sql("SELECT * FROM users WHERE name = %s", (name,))
    frame = pd.read_sql("SELECT * FROM orders WHERE customer = %(c)s", engine, params={"c": name})
    frame.query("total > 10")
    asyncio.run(notify(event))
    return {"n": len(frame)}


async def notify(event):
    return event


def pipeline(event, context):
    runner = Runner()
    runner.run(event["steps"])
    return runner.query(event["filter"])
