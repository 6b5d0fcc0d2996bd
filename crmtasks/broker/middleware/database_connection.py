"""Give each message a database connection, and take it back after.

Connections come from a per-process pool bound after fork (``db.bind``), so
none crosses a fork; after the message, whatever happened, an open
transaction is rolled back and the connection returns to the pool, so none
leaks across the worker's threads. A job whose connection cannot be had
(PostgreSQL down, the pool exhausted) does not run without one: its message
is deferred (crmtasks.broker.middleware.fail_closed).
"""

from __future__ import annotations

import dramatiq

from crmtasks.broker.middleware.fail_closed import defer
from crmtasks.broker.options import JOB_NAME_OPTION, job_options
from crmtasks.pg import db
from crmtasks.settings import Settings


class DatabaseConnection(dramatiq.Middleware):
    """Parameters:
      settings(Settings): Where the database is.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def before_process_message(self, broker, message):
        try:
            db.bind(self.settings).connect(reuse_if_open=True)
        except Exception as error:
            options = job_options(broker, message)
            if options is None:
                raise  # not a job: Dramatiq logs it, and the actor runs as it would without us
            defer(broker, message, job=options[JOB_NAME_OPTION], what="getting a database connection", error=error)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        db.release_connection()

    def after_skip_message(self, broker, message):
        db.release_connection()
