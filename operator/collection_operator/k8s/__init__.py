"""Kubernetes-side helpers: the status writer and reading Secrets (kopf does the watching and Events)."""
