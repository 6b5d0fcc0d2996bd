"""Fixtures shared by several integration test modules."""

from tests.integration.audit_support import audit_conn  # noqa: F401 - a fixture, found by name
from tests.integration.s3_support import moto_server, s3_archive  # noqa: F401 - fixtures, found by name
