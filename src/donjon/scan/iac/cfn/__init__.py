"""SAM and CloudFormation templates (YAML and JSON) read into the IaC model.

`template` recognises and decodes a template (cfn-lint's decoder), `resolver`
resolves its intrinsic functions, `sam_globals` merges SAM ``Globals``; `functions`,
`policies`, `events`, `apis` and `resources` build the model; `loader` holds the
`CfnFormat` the IaC scanner runs.
"""

from __future__ import annotations

from donjon.scan.iac.cfn.loader import CfnFormat, load_text

__all__ = ["CfnFormat", "load_text"]
