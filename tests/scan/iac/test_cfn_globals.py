"""SAM Globals merged into resources as SAM merges them."""

from __future__ import annotations

from donjon.scan.iac.cfn.sam_globals import merge_globals


def test_maps_merge_with_the_resource_winning_and_lists_join() -> None:
    """Maps merge key by key (recursively, the resource's keys win); lists join, the
    global entries first; a scalar of the resource replaces the global one."""
    globals_ = {
        "Function": {
            "Runtime": "python3.12",
            "Layers": ["g1"],
            "Environment": {"Variables": {"A": "global", "B": "global"}},
        }
    }
    merged = merge_globals(
        "AWS::Serverless::Function",
        {"Runtime": "python3.9", "Layers": ["l1"], "Environment": {"Variables": {"A": "own"}}},
        globals_,
    )
    assert merged == {
        "Runtime": "python3.9",
        "Layers": ["g1", "l1"],
        "Environment": {"Variables": {"A": "own", "B": "global"}},
    }


def test_intrinsics_and_type_mismatches_are_the_resource_s_alone() -> None:
    """An intrinsic on either side is not merged into; a value of another type wins."""
    globals_ = {
        "Function": {
            "Environment": {"Variables": {"A": "1"}},
            "Layers": {"Ref": "Shared"},
            "Tags": {"team": "x"},
        }
    }
    merged = merge_globals(
        "AWS::Serverless::Function",
        {"Environment": {"Fn::If": ["C", {"Variables": {}}, {"Variables": {}}]}, "Layers": ["l"]},
        globals_,
    )
    assert merged == {
        "Environment": {"Fn::If": ["C", {"Variables": {}}, {"Variables": {}}]},
        "Layers": ["l"],
        "Tags": {"team": "x"},
    }


def test_only_the_matching_section_applies() -> None:
    """Globals.Api reaches APIs only; plain CloudFormation types get nothing."""
    globals_ = {"Api": {"TracingEnabled": True}, "Function": {"Timeout": 3}}
    assert merge_globals("AWS::Serverless::Api", {}, globals_) == {"TracingEnabled": True}
    assert merge_globals("AWS::Lambda::Function", {}, globals_) == {}
    assert merge_globals("AWS::Serverless::Function", {}, "nonsense") == {}
