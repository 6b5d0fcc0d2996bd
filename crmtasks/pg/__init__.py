"""The PostgreSQL toolkit every domain shares: transactions, named SQL files, advisory-lock keys."""

from crmtasks.pg.advisory_locks import AdvisoryLock
from crmtasks.pg.sql_files import load_sql
from crmtasks.pg.transactions import quietly, transaction

__all__ = ["AdvisoryLock", "load_sql", "quietly", "transaction"]
