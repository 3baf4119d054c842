# ruff: noqa

"""In test code, turning verification off is graded low (still reported)."""
import requests


def check_health_against_self_signed_dev_server():
    response = requests.get("https://dev.local:8443/health", verify=False, timeout=5)  # expect: DJ-PY-006@low
    assert response.ok
