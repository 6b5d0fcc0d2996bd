"""A report's rows read as columns, and shared through Redis for as long as they are current.

One statement reads a report's rows from its aggregate partition and sends
them as one row of columns (``string_agg`` of the numbers, dates and flags,
``array_agg`` of the text), with ``as_of`` from the same snapshot: the
database does not build one wire row per report row and Python does not
build one object per cell (see ``crmtasks.reports.rows``).

The result is the same for every caller until the next run of
``analytics.precompute_aggregates`` publishes a new ``as_of``, so it is
cached in Redis under a key naming the database, the published ``as_of``
(the refresh generation) and a hash of the statement with its parameters:
every host shares it, a new run makes new keys (old ones expire after
``CACHE_TTL_S``), and a key can never name rows of another generation. A
cached read is one tiny PostgreSQL query (which generation is published?)
and one Redis GET. Redis down or slow is a miss, never an error: the
statement answers.
"""

from __future__ import annotations

import hashlib
import json
import logging

import redis
from psycopg2 import sql

from crmtasks.redis_client import get_redis, key
from crmtasks.settings import get_settings

logger = logging.getLogger(__name__)

# A generation lives until the next run (every 10 minutes by default); an hour bounds what stale keys hold.
CACHE_TTL_S = 3600

_AS_OF_US = sql.SQL("SELECT (extract(epoch FROM as_of) * 1000000)::bigint FROM report_aggregate_state")
_GENERATION = sql.SQL("SELECT ({}), current_database()").format(_AS_OF_US)


def columnar_statement(inner: sql.Composable, names: tuple[str, ...], kinds: tuple[str, ...]) -> sql.Composed:
    """One row: as_of (epoch µs), database, row count, then one aggregate per column of ``inner``'s rows.

    ``inner`` is the report's ordered SELECT (from one partition, in key
    order). Aggregating over an ordered subquery keeps that order: a
    subquery with ORDER BY is neither flattened nor aggregated in parallel,
    and every aggregate of the outer query reads the same rows in one pass,
    so the columns stay aligned.
    """
    aggregates = []
    for name, kind in zip(names, kinds):
        column = sql.Identifier("r", name)
        if kind == "text":
            aggregates.append(sql.SQL("array_agg({})").format(column))
        else:
            aggregates.append(sql.SQL("string_agg(coalesce({}::text, ''), ',')").format(column))
    return sql.SQL("SELECT ({generation}), current_database(), count(*), {aggregates} FROM ({inner}) r").format(
        generation=_AS_OF_US,
        aggregates=sql.SQL(", ").join(aggregates), inner=inner)


def statement_hash(cur, statement: sql.Composable, params: dict) -> str:
    """A short stable name for one statement with its parameters (the cache key's last part)."""
    return hashlib.blake2b(cur.mogrify(statement, params), digest_size=12).hexdigest()


def generation(cur) -> tuple[int | None, str]:
    """(published as_of in epoch µs or None when never computed, database name): one round trip."""
    cur.execute(_GENERATION)
    return cur.fetchone()


def cache_key(database: str, as_of_us: int, name: str, digest: str, kind: str = "columns") -> str:
    """``<prefix>:report:<database>:<as_of µs>:<report>:<statement hash>:<kind>``."""
    return key(get_settings(), "report", database, str(as_of_us), name, digest, kind)


def cached(cache: str) -> bytes | None:
    """The bytes under ``cache``, or None (absent, or Redis unreachable: a miss, logged)."""
    try:
        return get_redis().get(cache)
    except redis.RedisError as error:
        logger.warning("report cache unreachable, reading PostgreSQL instead: %s", error)
        return None


def store(cache: str, data: bytes) -> None:
    """Keep ``data`` under ``cache`` for ``CACHE_TTL_S``; a Redis error only costs the next reader a miss."""
    try:
        get_redis().set(cache, data, ex=CACHE_TTL_S)
    except redis.RedisError as error:
        logger.warning("report cache unreachable, not stored: %s", error)


def encode(count: int, columns: list) -> bytes:
    """The cached form of one read: JSON of the row count and the columns as the statement sent them."""
    return json.dumps([count, columns], separators=(",", ":")).encode()


def decode(data: bytes) -> tuple[int, list]:
    count, columns = json.loads(data)
    return count, columns
