"""donjon/lazy_exports.py: a package's names imported from their modules on first use."""

from __future__ import annotations

import json.decoder
import subprocess
import sys
from typing import Any

import pytest

from donjon.lazy_exports import lazy_exports


def test_a_name_loads_from_its_module_once_and_stays() -> None:
    """The name is its module's attribute, kept in the package's namespace: the next use
    finds it there and never calls the package's `__getattr__` again."""
    namespace: dict[str, Any] = {"__name__": "json"}
    getattr_ = lazy_exports(namespace, {"decoder": ("JSONDecodeError", "scanstring")})
    assert getattr_("JSONDecodeError") is json.decoder.JSONDecodeError
    assert namespace["JSONDecodeError"] is json.decoder.JSONDecodeError
    assert "scanstring" not in namespace  # not asked for yet


def test_a_name_not_listed_is_an_attribute_error() -> None:
    """As for any module: `hasattr` and `from package import name` rely on it."""
    getattr_ = lazy_exports({"__name__": "json"}, {"decoder": ("JSONDecodeError",)})
    with pytest.raises(AttributeError, match="module 'json' has no attribute 'JSONDecoder'"):
        getattr_("JSONDecoder")  # json.decoder has it; the package does not list it


@pytest.mark.slow  # a fresh interpreter that imports the scanners
def test_each_name_of_donjons_lazy_packages_loads() -> None:
    """Every name the lazily exporting packages list in __all__ is there when asked
    (`import *` asks for each), and a name none of them has is an AttributeError."""
    probe = (
        "import donjon.egress, donjon.identity, donjon.scan, donjon.scan.deps\n"
        "from donjon.egress import *\n"
        "from donjon.identity import *\n"
        "from donjon.scan import *\n"
        "from donjon.scan.deps import *\n"
        "for p in (donjon.egress, donjon.identity, donjon.scan, donjon.scan.deps):\n"
        "    assert all(n in vars(p) for n in p.__all__), p\n"
        "    try:\n"
        "        p.no_such_name\n"
        "    except AttributeError as e:\n"
        "        print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.splitlines() == [
        f"module {p!r} has no attribute 'no_such_name'"
        for p in ("donjon.egress", "donjon.identity", "donjon.scan", "donjon.scan.deps")
    ]
