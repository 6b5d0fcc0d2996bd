"""crmtasks bound, for one test, to a pool of its own settings: the tests of the pool, combining and admission."""

from __future__ import annotations

import contextlib
import dataclasses

from crmtasks.pg import db
from crmtasks.settings import get_settings


@contextlib.contextmanager
def bound_pool(size: int, *, timeout_s: float = 30.0, **settings_overrides):
    """crmtasks bound to a pool of ``size`` connections and a ``timeout_s`` wait (plus any other settings given),
    this thread holding none; the default pool again after."""
    db.release_connection()  # a fixture may have left this thread one
    settings = dataclasses.replace(get_settings(), db_pool_size=size, db_pool_timeout_s=timeout_s,
                                   **settings_overrides)
    pool = db.bind(settings)
    try:
        yield pool
    finally:
        db.release_connection()
        pool.close_all()
        db.bind(get_settings())
