"""Watching the audit log while it is written: detectors, findings, alerts and webhooks."""
