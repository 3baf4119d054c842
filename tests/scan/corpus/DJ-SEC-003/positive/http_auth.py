# ruff: noqa

"""Credentials handed to HTTP and mail clients: headers, auth pairs, logins."""
import smtplib

import requests
from requests.auth import HTTPBasicAuth


def call(url):
    requests.get(url, headers={"Authorization": "Bearer Zr9Xk4Lm8Tp3HsVb7Qw2"}, timeout=5)  # expect: DJ-SEC-003@medium
    requests.get(url, auth=("admin", "Tp3HsVb7Qw2Zr9Xk4Lm8"), timeout=5)  # expect: DJ-SEC-003@medium
    return HTTPBasicAuth("admin", "Lm8Tp3Hs4Vb7Qw2Zr9Xk")  # expect: DJ-SEC-003@medium


def mail():
    smtp = smtplib.SMTP_SSL("smtp.example.com")
    smtp.login("bot@example.com", "Qw2Zr9Xk4Lm8Tp3HsVb7")  # expect: DJ-SEC-003@medium
