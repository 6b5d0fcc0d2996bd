"""Fixtures shared by several integration test modules."""

from tests.integration.audit_support import audit_conn  # noqa: F401 - a fixture, found by name
