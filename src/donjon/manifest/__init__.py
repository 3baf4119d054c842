"""The function manifest (donjon.yaml): model, loading, validation."""

from __future__ import annotations

from donjon.manifest.loader import load_manifest, parse_manifest, parse_stored_manifest
from donjon.manifest.model import (
    FunctionName,
    HttpTrigger,
    Isolation,
    Limits,
    Manifest,
    ManifestError,
    Permissions,
    Rate,
    ScheduleTrigger,
)
from donjon.manifest.policies import PolicyMode, RuntimePolicies

__all__ = [
    "FunctionName",
    "HttpTrigger",
    "Isolation",
    "Limits",
    "Manifest",
    "ManifestError",
    "Permissions",
    "PolicyMode",
    "Rate",
    "RuntimePolicies",
    "ScheduleTrigger",
    "load_manifest",
    "parse_manifest",
    "parse_stored_manifest",
]
