# ruff: noqa

"""Framework signing keys written in the code: sessions and tokens anyone can forge."""
from flask import Flask

SECRET_KEY = "dev"  # expect: DJ-SEC-006@high

app = Flask(__name__)
app.secret_key = "k9Jx2mQ8vLp4Rz7WbN3c"  # expect: DJ-SEC-006@high
app.config["JWT_SECRET_KEY"] = "super-secret"  # expect: DJ-SEC-006@high
app.config.from_mapping(SECRET_KEY="development key")  # expect: DJ-SEC-006@high


class Config:
    SECRET_KEY = "Zq81x-prod"  # expect: DJ-SEC-006@high
