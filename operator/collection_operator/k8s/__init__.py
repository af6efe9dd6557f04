"""Kubernetes-side helpers: conditions, the status writer, Events, reading Secrets."""
