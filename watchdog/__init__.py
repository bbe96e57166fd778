"""Keeps a public Cloud Run service public.

The package is layered: value types (`model`), pure decisions (`policy`, `audit`,
`triggers`), one gateway per Google API (`run_api`, `audit_log`, `health`, `alerts`),
and `reconcile`, which ties them together. Only gateways import client libraries.
"""
