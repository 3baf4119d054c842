# ruff: noqa

"""Credentials the names say are credentials: annotated, as tokens, as defaults."""
import os


class Settings:
    db_password: str = "k9Jx2mQ8vLp4Rz7WbN3c"  # expect: DJ-SEC-003@medium
    admin_password: str = "hunter2"  # expect: DJ-SEC-003@low


GITHUB_TOKEN = "q8Lk2Zx9Wm4Rt7Yp3Nc6"  # expect: DJ-SEC-003@medium
API_TOKEN = os.getenv("API_TOKEN", "Vb7Qw2Zr9Xk4Lm8Tp3Hs")  # expect: DJ-SEC-003@medium
os.environ.setdefault("DB_PASSWORD", "Hs3Tp8Lm4Xk9Zr2Qw7Vb")  # expect: DJ-SEC-003@medium
