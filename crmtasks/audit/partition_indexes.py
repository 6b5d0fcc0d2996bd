"""Building an index added to audit_log on the partitions that existed before it, without blocking writers.

PostgreSQL cannot build an index CONCURRENTLY on a partitioned table. So a
migration creates it ``ON ONLY audit_log`` (instant, invalid, touching no
partition) and this step, run by the daily maintenance, finishes the job
for each partition that lacks it: ``CREATE INDEX CONCURRENTLY`` on the
partition, then ``ALTER INDEX ... ATTACH PARTITION``. Once every partition
has its child, PostgreSQL marks the parent index valid by itself. Partitions
created or restored later get the index when they are attached.

Idempotent and safe to kill -9: a build cut short leaves an invalid,
unattached index, which the next run drops (CONCURRENTLY) and builds again.
"""

from __future__ import annotations

import logging

from psycopg2 import sql

from crmtasks.pg import load_sql

log = logging.getLogger(__name__)


def index_partitions(conn) -> int:
    """Build and attach every missing partition child of audit_log's unfinished indexes; return how many.

    Parameters:
      conn: A psycopg2 connection in autocommit mode (CONCURRENTLY refuses a transaction block).
    """
    with conn.cursor() as cur:
        cur.execute(load_sql("crmtasks.audit", "partition_index_gaps"))
        gaps = cur.fetchall()
    for parent_index, partition, method_and_key, child_name in gaps:
        with conn.cursor() as cur:
            if not _usable_leftover(conn, child_name):
                # method_and_key is PostgreSQL's own rendering of the parent index (pg_get_indexdef), not input.
                cur.execute(sql.SQL("CREATE INDEX CONCURRENTLY {} ON {} USING {}").format(
                    sql.Identifier(child_name), sql.Identifier(partition), sql.SQL(method_and_key)))
            cur.execute(sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(
                sql.Identifier(parent_index), sql.Identifier(child_name)))
        log.info("audit_log: index %s built on %s and attached to %s", child_name, partition, parent_index)
    return len(gaps)


def _usable_leftover(conn, name: str) -> bool:
    """True when a valid index of that name exists (built, killed before the attach); drop an invalid one."""
    with conn.cursor() as cur:
        cur.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                    (sql.Identifier(name).as_string(conn),))
        found = cur.fetchone()
        if found is None:
            return False
        if found[0]:
            return True
        cur.execute(sql.SQL("DROP INDEX CONCURRENTLY {}").format(sql.Identifier(name)))
        return False
