"""The public ``faceted_search``: a search on a pooled connection waits for its turn among a few at once.

A search is mostly Python holding the GIL around one round trip; a web
server's 40 threads searching at once take the GIL (and 40 turns at the pool)
from each other and search no faster than a few. So a search that would
borrow a pooled connection first takes one of the process's search places
(``CRMTASKS_SEARCHES_AT_ONCE``, 2 per CPU core by default; crmtasks.pg.admission):
the callers beyond wait in line off the GIL, first come first served, at most
``CRMTASKS_DB_POOL_TIMEOUT_S`` (then PoolExhausted). A search given
``connection=``, or made by a thread with a connection of its own open (its
transaction), runs at once: it holds a connection already, and waiting for a
place while holding it could starve the searches holding the places.
"""

from __future__ import annotations

import functools

from crmtasks.pg import db
from crmtasks.search import query


@functools.wraps(query.faceted_search)
def faceted_search(*args, **kwargs) -> query.SearchResult:
    if kwargs.get("connection") is None:
        pool = db.pool_to_lend()
        admission = pool.search_admission if pool is not None else None
        if admission is not None:
            with admission:
                return query.faceted_search(*args, **kwargs)
    return query.faceted_search(*args, **kwargs)
