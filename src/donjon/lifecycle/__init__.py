"""A function's lifecycle: deploy, replace, retire and remove its versions.

`Deployments` is the one service that changes what a node serves (store rows,
bundle store, registry, sandbox pool, audit records); the gateway's handlers,
the scheduler, and later the triggers, the console and other nodes call it.
It imports nothing of HTTP::

    deployments = Deployments(functions, bundles, registry, audit, scan_policy)
    deployments.start(pool, scanner)
    done = await deployments.deploy(archive, principal, request_id)
    await deployments.remove("resize", principal, request_id)
"""

from __future__ import annotations

from donjon.lifecycle.deploy_queue import DeployBusy, DeployQueue
from donjon.lifecycle.deployments import Deployment, Deployments
from donjon.lifecycle.errors import (
    DeployBlocked,
    DeployForbidden,
    FunctionNotFound,
    InvokeGrantForbidden,
    LifecycleError,
    SecretGrantForbidden,
    SkipScanRefused,
)
from donjon.lifecycle.gate import BundleScanner
from donjon.lifecycle.registry import (
    Deployed,
    FunctionRegistry,
    SkippedRecord,
    instance_config,
    load_registry,
    make_deployed,
    manifest_json,
    stored_manifest,
)

__all__ = [
    "BundleScanner",
    "DeployBlocked",
    "DeployBusy",
    "DeployForbidden",
    "DeployQueue",
    "Deployed",
    "Deployment",
    "Deployments",
    "FunctionNotFound",
    "FunctionRegistry",
    "InvokeGrantForbidden",
    "LifecycleError",
    "SecretGrantForbidden",
    "SkipScanRefused",
    "SkippedRecord",
    "instance_config",
    "load_registry",
    "make_deployed",
    "manifest_json",
    "stored_manifest",
]
