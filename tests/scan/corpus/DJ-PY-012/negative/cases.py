# ruff: noqa

"""Not path traversal: names reduced to one component, contained paths, allowlists."""
import io
import json
import zipfile
import os
from pathlib import Path

import boto3
from fastapi import FastAPI
from fastapi.responses import FileResponse
from flask import Flask, abort, request, send_file, send_from_directory
from werkzeug.utils import secure_filename

BASE = "/srv/files"
REPORTS = ("daily.csv", "weekly.csv")
app = Flask(__name__)
api = FastAPI()
s3 = boto3.client("s3")


def handler(event, context):
    name = os.path.basename(event["pathParameters"]["name"])
    with open(os.path.join(BASE, name)) as f:
        body = f.read()
    Path(BASE, secure_filename(event["file"])).read_text()
    report = event["report"]
    if report not in REPORTS:
        return {"statusCode": 404}
    with open(f"{BASE}/{report}") as f:
        data = f.read()
    with open(os.path.join(BASE, "index.json")) as f:
        index = json.load(f)
    resolved = os.path.realpath(os.path.join(BASE, event["path"]))
    if not resolved.startswith(BASE + os.sep):
        return {"statusCode": 403}
    with open(resolved) as f:
        chosen = f.read()
    requested = event["other"]
    if not (Path(BASE) / requested).resolve().is_relative_to(BASE):
        raise PermissionError(requested)
    (Path(BASE) / requested).read_bytes()
    return {"body": body + data + chosen, "n": len(index), "name": event["name"].replace("-", "_")}


def on_upload(event, context):
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = record["s3"]["object"]["key"]
        local = os.path.join("/tmp", os.path.basename(key))
        s3.download_file(bucket, key, local)
        s3.download_file(bucket, key, f"/tmp/{os.path.basename(key)}")
        (Path("/tmp") / os.path.basename(key)).write_bytes(b"")
        s3.download_file(bucket, key, "/tmp/" + Path(key).name)
        s3.upload_file("/var/task/template.txt", bucket, key)


@app.route("/download")
def download():
    return send_from_directory(BASE, request.args["file"])


@app.route("/report")
def report():
    path = os.path.abspath(os.path.join(BASE, request.args["name"]))
    if os.path.commonpath([BASE, path]) != BASE:
        abort(404)
    return send_file(path)


@app.route("/upload", methods=["POST"])
def upload():
    upload = request.files["file"]
    upload.save(os.path.join(BASE, secure_filename(upload.filename)))
    return "ok"


@app.route("/export")
def export():
    rows = lookup(request.args["table"])
    buffer = io.BytesIO(render_csv(rows, request.args["sep"]))
    archive = zipfile.ZipFile(io.BytesIO(request.get_data()))
    document = store.get(request.args["id"])
    if request.args.get("zip"):
        return send_file(document, download_name="doc.pdf")
    return send_file(buffer, mimetype="text/csv", download_name=archive.namelist()[0])


@api.get("/files/{name}")
def read_file(name: str):
    return FileResponse(os.path.join(BASE, os.path.basename(name)))


def load(path):
    with open(path) as f:
        return f.read()
