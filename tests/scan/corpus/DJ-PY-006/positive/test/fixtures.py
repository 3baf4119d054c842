# ruff: noqa

import pytest
import requests


@pytest.fixture
def session():
    s = requests.Session()
    s.verify = False  # expect: DJ-PY-006@low
    return s
