"""bench/iac_compare_map.toml, the table of Checkov checks and cfn-lint rules that stand for
Donjon's IaC rules in the comparison (bench/iac_compare.py): it must name real rules."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from donjon.scan import RULES

MAP = Path(__file__).resolve().parents[2] / "bench" / "iac_compare_map.toml"
_IDS = {"checkov": re.compile(r"CKV2?_[A-Z]+_\d+"), "cfn-lint": re.compile(r"[EWI]\d{4}")}


def _table() -> dict[str, dict[str, Any]]:
    return tomllib.loads(MAP.read_text(encoding="utf-8"))


def test_mapping_names_only_iac_rules_that_exist() -> None:
    """Every check maps to a non-empty list of existing DJ-IAC rule ids."""
    table = _table()
    for tool, pattern in _IDS.items():
        assert table[tool], tool
        for check, rules in table[tool].items():
            assert pattern.fullmatch(check), f"{tool}: {check} is not a {tool} id"
            assert isinstance(rules, list), check
            assert rules, check
            for rule in rules:
                assert rule in RULES, f"{tool} {check}: {rule} is not a Donjon rule"
                assert rule.startswith("DJ-IAC-"), f"{check}: {rule} is not an IaC rule"


def test_rules_without_checkov_equivalent_are_not_mapped_from_checkov() -> None:
    """The rules listed as having no Checkov check exist and no Checkov check maps to them."""
    table = _table()
    unmatched = table["no-checkov-equivalent"]
    mapped = {r for rules in table["checkov"].values() for r in rules}
    assert unmatched
    for rule, reason in unmatched.items():
        assert rule in RULES, rule
        assert isinstance(reason, str), rule
        assert reason, rule
        assert rule not in mapped, f"{rule} is listed as unmatched but a Checkov check maps to it"
