"""The PostgreSQL toolkit every domain shares: transactions, named SQL files, advisory-lock keys, the pool's error."""

from crmtasks.pg.advisory_locks import AdvisoryLock
from crmtasks.pg.pool import PoolExhausted
from crmtasks.pg.sql_files import load_sql
from crmtasks.pg.transactions import quietly, transaction

__all__ = ["AdvisoryLock", "PoolExhausted", "load_sql", "quietly", "transaction"]
