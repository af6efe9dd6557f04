"""Thin kopf registrations, one module per kind; the error policy lives in one place."""
