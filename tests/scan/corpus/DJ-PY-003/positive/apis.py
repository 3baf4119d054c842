# ruff: noqa

"""SQL injection through query methods other than DB-API's execute."""
import os

import boto3
import pg8000.native
from sqlalchemy import create_engine
from django.http import JsonResponse

from .models import Customer

rds = boto3.client("rds-data")
athena = boto3.client("athena")
dynamodb = boto3.client("dynamodb")
redshift = boto3.client("redshift-data")
timestream = boto3.client("timestream-query")
engine = create_engine("postgresql://localhost/app")


def handler(event, context):
    name = event["queryStringParameters"]["name"]
    rds.execute_statement(  # expect: DJ-PY-003@high
        resourceArn="arn", secretArn="arn", database="app",
        sql="SELECT * FROM users WHERE name = '" + name + "'",
    )
    rds.batch_execute_statement(resourceArn="arn", secretArn="arn", sql=f"DELETE FROM t WHERE k = '{name}'", parameterSets=[])  # expect: DJ-PY-003@high
    athena.start_query_execution(QueryString="SELECT * FROM logs WHERE day = '%s'" % event["day"])  # expect: DJ-PY-003@high
    dynamodb.execute_statement(Statement=f"SELECT * FROM Orders WHERE id = '{event['id']}'")  # expect: DJ-PY-003@high
    dynamodb.batch_execute_statement(Statements=[{"Statement": f"DELETE FROM Orders WHERE id = '{name}'"}])  # expect: DJ-PY-003@high
    dynamodb.execute_transaction(TransactStatements=[{"Statement": "UPDATE Orders SET s = 'x' WHERE id = '" + name + "'"}])  # expect: DJ-PY-003@high
    redshift.execute_statement(ClusterIdentifier="c", Database="d", Sql="SELECT * FROM sales WHERE region = '{}'".format(name))  # expect: DJ-PY-003@high
    redshift.batch_execute_statement(ClusterIdentifier="c", Database="d", Sqls=["DELETE FROM sales WHERE region = '" + name + "'"])  # expect: DJ-PY-003@high
    timestream.query(QueryString=f"SELECT * FROM db.metrics WHERE host = '{name}'")  # expect: DJ-PY-003@high
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT * FROM users WHERE name = '%s'" % name)  # expect: DJ-PY-003@high
    con = pg8000.native.Connection("app")
    con.run("SELECT * FROM users WHERE name = '" + name + "'")  # expect: DJ-PY-003@high
    # basename makes a safe file name, not safe SQL:
    con.run("INSERT INTO files VALUES ('%s')" % os.path.basename(event["key"]))  # expect: DJ-PY-003@high
    return {}


async def lookup(event, context):
    conn = await connect()
    sql = f"SELECT * FROM users WHERE email = '{event['email']}'"
    row = await conn.fetchrow(sql)  # expect: DJ-PY-003@high
    await conn.execute("UPDATE users SET seen = now() WHERE email = '" + event["email"] + "'")  # expect: DJ-PY-003@high
    return dict(row)


def customers(request):
    city = request.GET["city"]
    people = Customer.objects.raw("SELECT * FROM app_customer WHERE city = '%s'" % city)  # expect: DJ-PY-003@high
    return JsonResponse({"n": len(list(people))})


def statements(dynamodb, items):
    batch = [{"Statement": f"INSERT INTO T VALUE {{'k': '{k}'}}"} for k in items]
    return dynamodb.batch_execute_statement(Statements=batch)  # expect: DJ-PY-003@low


def search(db, table, word):
    return db.query("SELECT * FROM " + table + " WHERE w = ?", word)  # expect: DJ-PY-003@low
