"""A report's rows read as columns, and kept in PostgreSQL for as long as they are current.

One statement reads a report's rows from its aggregate partition and sends
them as one row of columns (``string_agg`` of the numbers, dates and flags,
``array_agg`` of the text), with ``as_of`` from the same snapshot: the
database does not build one wire row per report row and Python does not
build one object per cell (see ``crmtasks.reports.rows``).

The result is the same for every caller until the next run of
``analytics.precompute_aggregates`` publishes a new ``as_of`` (the refresh
generation), so it is kept in ``report_payloads`` (migration 0014) under a
hash of the statement with its parameters, stamped with that generation;
the CLI's csv and json bytes are kept the same way. A call then costs one
round trip: which generation is published, joined to the payload of that
generation if one was kept. A payload of another generation is never
served; the job deletes them once its run has published. Every host shares them
(they live in the database), and storing one is a single INSERT, atomic.

Payloads are stored only on connections in autocommit mode (the pooled
ones, the CLI's): a caller's own transaction is never written to, and a
server that refuses the write (a read-only standby) only costs the next
caller a miss.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging

import psycopg2
from psycopg2 import sql

from crmtasks.pg.prepared import PreparedStatement

logger = logging.getLogger(__name__)

# The whole database work of a call whose payload was kept: as plain as it can be, and prepared once per
# connection (no parse, no plan on the next calls).
_LOOKUP = PreparedStatement("crmtasks_report_payload", ("text", "text"), lambda params: sql.SQL("""
    SELECT s.as_of,
           (SELECT p.data FROM report_payloads p WHERE p.digest = {} AND p.kind = {} AND p.as_of = s.as_of)
    FROM report_aggregate_state s
""").format(*params))
_STORE = """
    INSERT INTO report_payloads AS stored (digest, kind, as_of, data, source)
    VALUES (%(digest)s, %(kind)s, %(as_of)s, %(data)s, %(source)s)
    ON CONFLICT (digest, kind) DO UPDATE SET as_of = excluded.as_of, data = excluded.data, source = excluded.source
    WHERE stored.as_of < excluded.as_of
"""
_FORGET_OLDER = "DELETE FROM report_payloads WHERE as_of < %s"
# Only the row columns: the csv and json bytes hold as_of in their text.
_CARRY_FORWARD = """
    UPDATE report_payloads SET as_of = %(as_of)s
    WHERE as_of = %(previous)s AND kind = 'columns' AND source = ANY (%(sources)s)
"""


def columnar_statement(inner: sql.Composable, names: tuple[str, ...], kinds: tuple[str, ...]) -> sql.Composed:
    """One row: as_of, row count, then one aggregate per column of ``inner``'s rows.

    ``inner`` is the report's ordered SELECT (from one partition, in report
    order). Aggregating over an ordered subquery keeps that order: a
    subquery with ORDER BY is neither flattened nor aggregated in parallel,
    and every aggregate of the outer query reads the same rows in one pass,
    so the columns stay aligned (the property tests compare every report,
    row for row and in order, with live SQL).
    """
    aggregates = []
    for name, kind in zip(names, kinds):
        column = sql.Identifier("r", name)
        if kind == "text":
            aggregates.append(sql.SQL("array_agg({})").format(column))
        elif kind == "date":  # ISO whatever the session's DateStyle
            aggregates.append(sql.SQL("string_agg(coalesce(to_char({}, 'YYYY-MM-DD'), ''), ',')").format(column))
        else:
            aggregates.append(sql.SQL("string_agg(coalesce({}::text, ''), ',')").format(column))
    return sql.SQL("SELECT (SELECT as_of FROM report_aggregate_state), count(*), {aggregates} "
                   "FROM ({inner}) r").format(aggregates=sql.SQL(", ").join(aggregates), inner=inner)


def statement_digest(cur, statement: sql.Composable, params: dict) -> str:
    """A short stable name for one statement with its parameters (the payload's key)."""
    return hashlib.blake2b(cur.mogrify(statement, params), digest_size=16).hexdigest()


def lookup(cur, digest: str, kind: str) -> tuple[datetime.datetime | None, bytes | None]:
    """(published as_of, None if never computed; the payload kept for it, or None): one round trip."""
    psycopg2.extensions.register_type(psycopg2.extensions.BYTES, cur)  # the text as sent: no decoding
    _LOOKUP.execute(cur, (digest, kind))
    found = cur.fetchone()
    psycopg2.extensions.register_type(psycopg2.extensions.UNICODE, cur)
    return (None, None) if found is None else found


def store(conn, digest: str, kind: str, as_of: datetime.datetime, data: bytes, source: str | None = None) -> None:
    """Keep ``data`` for generation ``as_of`` (never over a newer one); only in autocommit, never raises.

    ``source``: the change log that feeds the report's aggregates (``deals``, ``leads``, ``accounts``), so that
    a run which folds none of its changes carries the payload to its generation (``carry_forward``).
    """
    if not conn.autocommit:
        return
    try:
        with conn.cursor() as cur:
            cur.execute(_STORE, {"digest": digest, "kind": kind, "as_of": as_of, "data": data.decode(),
                                 "source": source})
    except psycopg2.Error as error:
        logger.warning("report payload not kept (the next call reads the aggregates again): %s",
                       str(error).strip().splitlines()[0])


def carry_forward(conn, previous, as_of, sources: list[str]) -> int:
    """Move the row-column payloads of generation ``previous`` whose source is in ``sources`` (ones the run that
    published ``as_of`` did not fold: their rows are the same) to generation ``as_of``; how many. Run after the
    publish and before ``forget_older``: a reader that stored one for ``as_of`` meanwhile is left alone."""
    if previous is None or not sources:
        return 0
    with conn.cursor() as cur:
        cur.execute(_CARRY_FORWARD, {"previous": previous, "as_of": as_of, "sources": list(sources)})
        return cur.rowcount


def forget_older(conn, as_of) -> int:
    """Delete the payloads of generations before ``as_of`` (a datetime); how many. Run after a publish."""
    with conn.cursor() as cur:
        cur.execute(_FORGET_OLDER, (as_of,))
        return cur.rowcount


def encode(count: int, columns: list) -> bytes:
    """The kept form of one read: JSON of the row count and the columns as the statement sent them."""
    return json.dumps([count, columns], separators=(",", ":")).encode()


def decode(data: bytes) -> tuple[int, list]:
    count, columns = json.loads(data)
    return count, columns
