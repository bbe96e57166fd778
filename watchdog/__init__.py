"""Keeps a public Cloud Run service public.

The package is layered: value types (`model`), pure decisions (`policy`, `audit`,
`triggers`, `incidents`, and `alerts`, which renders each alert), one gateway per
outside system (`run_api`, `audit_log`, `state_store`, `health`, `alert_delivery`,
and `deployment_api` for the doctor), and `reconcile`, which ties them together.
Only gateways import client libraries.
"""
