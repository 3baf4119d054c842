"""Terraform (``.tf``) modules read into the IaC model: AWS Lambda, Azure Functions and
Google Cloud Functions with what surrounds them. See `format.TerraformFormat`."""

from donjon.scan.iac.terraform.format import TerraformFormat

__all__ = ["TerraformFormat"]
