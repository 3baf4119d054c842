# ruff: noqa

"""Exception details returned to the caller."""
import json
import traceback

from fastapi import FastAPI, HTTPException
from flask import Flask, jsonify

app = Flask(__name__)
api = FastAPI()


def handler(event, context):
    try:
        return {"statusCode": 200, "body": process(event)}
    except Exception as exc:
        return {"statusCode": 500, "body": json.dumps({"error": str(exc)})}  # expect: DJ-PY-010@high


def process(event):
    return event["body"]


def lambda_handler(event, context):
    try:
        return process(event)
    except:
        return {"statusCode": 500, "body": traceback.format_exc()}  # expect: DJ-PY-010@high


@app.route("/orders", methods=["POST"])
def create_order():
    try:
        return jsonify(save())
    except Exception as e:
        return jsonify(error=repr(e)), 500  # expect: DJ-PY-010@high


@api.get("/items/{item_id}")
def read_item(item_id: int):
    try:
        return load(item_id)
    except KeyError as e:
        raise HTTPException(status_code=404, detail=str(e))  # expect: DJ-PY-010@low


def _error_body(error):
    return {"statusCode": 500, "body": f"failed: {error}"}


def upload(event, context):
    try:
        return process(event)
    except OSError as err:
        return _error_body(err)  # expect: DJ-PY-010@high


def raw_object(event, context):
    try:
        return process(event)
    except RuntimeError as e:
        return {"statusCode": 500, "error": e}  # expect: DJ-PY-010@high
