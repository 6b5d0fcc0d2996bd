"""Fixtures shared by several integration test modules."""

import psycopg2
import pytest

from tests.integration.audit_support import audit_conn  # noqa: F401 - a fixture, found by name
from tests.integration.s3_support import moto_server, s3_archive  # noqa: F401 - fixtures, found by name


@pytest.fixture()
def crm_conn(crm_db, migrated_database_url):
    """A connection to this run's database (every CRM table empty), in autocommit: no transaction left open
    to block a next example's TRUNCATE."""
    connection = psycopg2.connect(migrated_database_url)
    connection.autocommit = True
    yield connection
    connection.close()
