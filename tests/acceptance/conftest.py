"""Fixtures of the real-process tests (see tests/acceptance/procs.py)."""

from tests.acceptance.procs import proc_db, processes  # noqa: F401
