"""Give each message a database connection, and take it back after.

Connections come from a per-process pool bound after fork (``db.bind``), so
none crosses a fork; after the message, whatever happened, an open
transaction is rolled back and the connection returns to the pool, so none
leaks across the worker's threads.
"""

from __future__ import annotations

import dramatiq

from crmtasks.pg import db
from crmtasks.settings import Settings


class DatabaseConnection(dramatiq.Middleware):
    """Parameters:
      settings(Settings): Where the database is.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def before_process_message(self, broker, message):
        db.bind(self.settings).connect(reuse_if_open=True)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        db.release_connection()

    def after_skip_message(self, broker, message):
        db.release_connection()
