"""Serverless Framework service files (``serverless.yml``) read into the IaC model.

`variables` resolves ``${self:}``/``${opt:}``/``${env:}``... variables, `document`
decodes the file and resolves its CloudFormation parts, `iam`, `events` and
`functions` build the functions, `loader` holds the `ServerlessFormat`.
"""

from __future__ import annotations

from donjon.scan.iac.serverless.loader import ServerlessFormat, read_text

__all__ = ["ServerlessFormat", "read_text"]
