"""The SQL functions every demo INSERT derives its values from: pure functions of (seed, salt, row number).

Why functions in ``pg_temp``: each INSERT ... SELECT over generate_series
calls them per row, so no value travels from Python. They are private to
the session and dropped before the transaction commits, so nothing of them
outlives the load.

Why not ``random()``: its sequence depends on the plan and on parallel
workers. ``hashint8extended`` gives the same number for the same (seed,
salt, row) in any plan and in any PostgreSQL version (hash partitioning
depends on it staying stable).

All are LANGUAGE sql IMMUTABLE one-expression functions, which PostgreSQL
inlines into the calling statement: they cost no function call per row.
``salt`` keeps the numbers of different columns independent; functions that
need several numbers use salt, salt + 1, ... The seed, the anchor and the
name lists are built into the bodies as literals (composed with
``psycopg2.sql``), which is what makes the functions IMMUTABLE.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from psycopg2 import sql
from psycopg2.extensions import cursor as PgCursor

from crmtasks.demo.size import HISTORY_DAYS
from crmtasks.demo.vocabulary import (
    COMPANY_PREFIXES,
    COMPANY_STEMS,
    COMPANY_SUFFIXES,
    COMPANY_TRADES,
    FIRST_NAMES,
    LAST_NAMES,
    slug,
    weighted_bag,
)

# (signature, body template): ``{name}`` in a body is one of the literals of _body_literals().
_FUNCTIONS = (
    # A uniform double in [0, 1): the top 53 bits of a seeded 64-bit hash of n.
    (
        "crmtasks_demo_rand(salt int, n bigint) RETURNS double precision",
        (
            "SELECT ((hashint8extended(n, {seed}::bigint * 1024 + salt) >> 11) & 9007199254740991)::double precision"
            " / 9007199254740992.0"
        ),
    ),
    # A uniform pick from bag (weights are given by repeating entries).
    (
        "crmtasks_demo_pick(bag anyarray, salt int, n bigint) RETURNS anyelement",
        "SELECT bag[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * cardinality(bag))::int]",
    ),
    # A pick favouring the head of bag: index = floor(r² · length), so the
    # first of k entries gets 1/sqrt(k) of the picks (Zipf-like).
    (
        "crmtasks_demo_pick_skewed(bag anyarray, salt int, n bigint) RETURNS anyelement",
        (
            "SELECT bag[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * pg_temp.crmtasks_demo_rand(salt, n)"
            " * cardinality(bag))::int]"
        ),
    ),
    # Seconds before the anchor at which row n of total was created: rows
    # spread over the history with linearly growing volume, and increasing n
    # means increasing time (ids behave like a serial column's).
    (
        "crmtasks_demo_age(salt int, n bigint, total bigint) RETURNS bigint",
        (
            "SELECT floor({history_seconds} * (1 - sqrt((n - 1 + pg_temp.crmtasks_demo_rand(salt, n))"
            " / total::double precision)))::bigint"
        ),
    ),
    # Seconds before the anchor of the last update of a row created age
    # seconds before it: 20% never updated, the rest uniformly since creation.
    (
        "crmtasks_demo_last_touch(salt int, n bigint, age bigint) RETURNS bigint",
        (
            "SELECT CASE WHEN pg_temp.crmtasks_demo_rand(salt, n) < 0.2 THEN age"
            " ELSE floor(age * pg_temp.crmtasks_demo_rand(salt + 1, n))::bigint END"
        ),
    ),
    (
        "crmtasks_demo_at(seconds_before_anchor bigint) RETURNS timestamptz",
        "SELECT to_timestamp({anchor_epoch} - seconds_before_anchor)",
    ),
    # A parent for row n of total, among the first rows of a table of
    # other_total that existed when row n was created (both tables' ids grow
    # with time the same way). 30% go to key accounts (every 50th id, 2% of
    # them), so a few parents collect many children; older parents collect
    # more too, having been around longer.
    (
        "crmtasks_demo_earlier_id(salt int, n bigint, total bigint, other_total bigint) RETURNS bigint",
        (
            "SELECT CASE WHEN pg_temp.crmtasks_demo_rand(salt, n) < 0.3 AND other_total * (n - 1) / total >= 50"
            " THEN 50 * (1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * (other_total * (n - 1) / total / 50)))"
            " ELSE 1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * greatest(1, other_total * (n - 1) / total))"
            " END::bigint"
        ),
    ),
    (
        "crmtasks_demo_person(salt int, n bigint) RETURNS text",
        (
            "SELECT {first_names}[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * {first_count})::int]"
            " || ' ' || {last_names}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * {last_count})::int]"
        ),
    ),
    # "first.last" of crmtasks_demo_person with the same salt.
    (
        "crmtasks_demo_handle(salt int, n bigint) RETURNS text",
        (
            "SELECT {first_slugs}[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * {first_count})::int]"
            " || '.' || {last_slugs}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * {last_count})::int]"
        ),
    ),
    (
        "crmtasks_demo_company(salt int, n bigint) RETURNS text",
        (
            "SELECT {prefixes}[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * {prefix_count})::int]"
            " || {stems}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * {stem_count})::int]"
            " || ' ' || {trades}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 2, n) * {trade_count})::int]"
            " || pg_temp.crmtasks_demo_pick({suffixes}, salt + 3, n)"
        ),
    ),
    # The web domain of crmtasks_demo_company with the same salt.
    (
        "crmtasks_demo_domain(salt int, n bigint) RETURNS text",
        (
            "SELECT {prefix_slugs}[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * {prefix_count})::int]"
            " || {stems}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * {stem_count})::int]"
            " || '-' || {trade_slugs}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 2, n) * {trade_count})::int]"
            " || '.example'"
        ),
    ),
)


def create_value_functions(cur: PgCursor, seed: int, anchor: datetime.datetime) -> None:
    """Create the value functions in ``pg_temp`` for one seed and anchor (in the caller's transaction).

    Parameters:
      cur(cursor): A cursor inside the demo data transaction.
      seed(int): The random seed number, 0 .. 2**31-1.
      anchor(datetime): The moment generated times count back from (UTC midnight).
    """
    literals = _body_literals(seed, anchor)
    for signature, body in _FUNCTIONS:
        cur.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION pg_temp.{signature} LANGUAGE sql IMMUTABLE PARALLEL SAFE AS {body}"
            ).format(
                signature=sql.SQL(signature),
                body=sql.Literal(sql.SQL(body).format(**literals).as_string(cur)),
            )
        )


def drop_value_functions(cur: PgCursor) -> None:
    """Drop what :func:`create_value_functions` created, so the session's ``pg_temp`` is left as it was.

    Parameters:
      cur(cursor): A cursor inside the same transaction as the creation.
    """
    for signature, _ in _FUNCTIONS:
        name_and_arguments = signature.split(" RETURNS ")[0]
        cur.execute(sql.SQL("DROP FUNCTION pg_temp.{}").format(sql.SQL(name_and_arguments)))


def _body_literals(seed: int, anchor: datetime.datetime) -> dict[str, sql.Composable]:
    def array(values: Iterable[str]) -> sql.Composable:
        return sql.SQL("({}::text[])").format(sql.Literal(list(values)))

    return {
        "seed": sql.Literal(seed),
        "anchor_epoch": sql.Literal(int(anchor.timestamp())),
        "history_seconds": sql.Literal(HISTORY_DAYS * 86400),
        "first_names": array(FIRST_NAMES), "first_slugs": array(map(slug, FIRST_NAMES)),
        "first_count": sql.Literal(len(FIRST_NAMES)),
        "last_names": array(LAST_NAMES), "last_slugs": array(map(slug, LAST_NAMES)),
        "last_count": sql.Literal(len(LAST_NAMES)),
        "prefixes": array(COMPANY_PREFIXES), "prefix_slugs": array(map(slug, COMPANY_PREFIXES)),
        "prefix_count": sql.Literal(len(COMPANY_PREFIXES)),
        "stems": array(COMPANY_STEMS), "stem_count": sql.Literal(len(COMPANY_STEMS)),
        "trades": array(COMPANY_TRADES), "trade_slugs": array(map(slug, COMPANY_TRADES)),
        "trade_count": sql.Literal(len(COMPANY_TRADES)),
        "suffixes": array(weighted_bag(COMPANY_SUFFIXES)),
    }
