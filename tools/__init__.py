"""Operator and CI helpers: packaging, the deploy guard, offline Terraform checks."""
