# ruff: noqa

"""Path traversal: event data chooses which local file is read, written, deleted or sent."""
import io
import json
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
from fastapi import FastAPI
from fastapi.responses import FileResponse
from flask import Flask, request, send_file

BASE = "/srv/files"
app = Flask(__name__)
api = FastAPI()
s3 = boto3.client("s3")


def handler(event, context):
    name = event["pathParameters"]["name"]
    with open(os.path.join(BASE, name)) as f:  # expect: DJ-PY-012@high
        body = f.read()
    io.open("/srv/files/" + name, "rb")  # expect: DJ-PY-012@high
    Path(BASE, name).read_text()  # expect: DJ-PY-012@high
    (Path(BASE) / name).write_text(event["body"])  # expect: DJ-PY-012@high
    target = Path(BASE) / "uploads" / name
    target.unlink()  # expect: DJ-PY-012@high
    with target.open("wb") as out:  # expect: DJ-PY-012@high
        out.write(b"")
    os.remove(f"{BASE}/{name}")  # expect: DJ-PY-012@high
    os.rename(f"{BASE}/incoming", f"{BASE}/{name}")  # expect: DJ-PY-012@high
    os.makedirs(os.path.join(BASE, event["dir"]), exist_ok=True)  # expect: DJ-PY-012@high
    os.listdir(os.path.join(BASE, event["dir"]))  # expect: DJ-PY-012@high
    shutil.copy(f"{BASE}/template.txt", BASE + "/" + name)  # expect: DJ-PY-012@high
    shutil.rmtree(os.path.join(BASE, event["dir"]))  # expect: DJ-PY-012@high
    shutil.move(os.path.join(BASE, name), "/srv/archive")  # expect: DJ-PY-012@high
    return {"body": body}


def export(event, context):
    body = json.loads(event["body"])
    with open(body.get("file"), "rb") as f:  # expect: DJ-PY-012@high
        return f.read()


def on_upload(event, context):
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = record["s3"]["object"]["key"]
        local = "/tmp/" + key
        s3.download_file(bucket, key, local)  # expect: DJ-PY-012@high
        boto3.resource("s3").Bucket(bucket).download_file(key, "/tmp/" + key)  # expect: DJ-PY-012@high
        s3.upload_file(local, bucket, key + ".out")  # expect: DJ-PY-012@high
        urllib.request.urlretrieve("https://cdn.example.com/" + key, "/tmp/" + key)  # expect: DJ-PY-012@high


@app.route("/download")
def download():
    return send_file(os.path.join(BASE, request.args["file"]))  # expect: DJ-PY-012@high


@app.route("/upload", methods=["POST"])
def upload():
    upload = request.files["file"]
    upload.save(os.path.join(BASE, upload.filename))  # expect: DJ-PY-012@high
    with open(urllib.parse.unquote_plus(request.args["name"])) as f:  # expect: DJ-PY-012@high
        return f.read()


@api.get("/files/{name}")
def read_file(name: str):
    return FileResponse(f"{BASE}/{name}")  # expect: DJ-PY-012@high


@app.route("/check")
def check():
    path = os.path.join(BASE, request.args["file"])
    if not path.startswith(BASE):
        return "no", 403
    return send_file(path)  # expect: DJ-PY-012@high
