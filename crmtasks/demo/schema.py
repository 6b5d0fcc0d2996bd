"""Foreign keys and plain indexes of the CRM tables, dropped for the demo data load and rebuilt after it.

Why: building an index once is far cheaper than updating it per inserted
row, and validating a foreign key with one join is far cheaper than a
trigger per row. Everything happens inside the demo data transaction, so no
other session ever sees the tables without them, and a failure or a kill -9
brings them back with the rollback. Definitions come from the catalog
(``pg_get_constraintdef``, ``pg_get_indexdef``), so whatever the migrations
created is restored exactly, names included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from psycopg2 import sql
from psycopg2.extensions import cursor as PgCursor

from crmtasks.pg import load_sql


@dataclasses.dataclass(frozen=True)
class DeferredSchema:
    """The foreign keys and plain (non-unique) indexes of some tables, as catalog DDL.

    Primary keys and unique constraints stay: ids are inserted in order, so
    their upkeep is cheap, and they guard the load.

    Parameters:
      foreign_keys(tuple): (schema, table, constraint name, definition) per foreign key.
      indexes(tuple): (schema, index name, CREATE INDEX statement) per index.
    """

    foreign_keys: tuple[tuple[str, str, str, str], ...]
    indexes: tuple[tuple[str, str, str], ...]

    @classmethod
    def capture(cls, cur: PgCursor, tables: tuple[str, ...]) -> DeferredSchema:
        """Read the definitions from the catalog (call after locking the tables).

        Parameters:
          cur(cursor): A cursor inside the demo data transaction.
          tables(tuple): Names of the tables whose foreign keys and indexes to defer.
        """
        parameters = {"tables": list(tables)}
        cur.execute(load_sql("crmtasks.demo", "deferred_foreign_keys"), parameters)
        foreign_keys = tuple(cur.fetchall())
        cur.execute(load_sql("crmtasks.demo", "deferred_indexes"), parameters)
        return cls(foreign_keys=foreign_keys, indexes=tuple(cur.fetchall()))

    def drop(self, cur: PgCursor) -> None:
        """Drop the foreign keys, then the indexes, in the caller's transaction.

        Parameters:
          cur(cursor): A cursor inside the demo data transaction.
        """
        for schema, table, name, _ in self.foreign_keys:
            cur.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(schema, table), sql.Identifier(name)
                )
            )
        for schema, name, _ in self.indexes:
            cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))

    def restore(self, cur: PgCursor, definition: Callable[[str], str] = str) -> None:
        """Recreate the indexes, then the foreign keys (each validated by one join).

        Parameters:
          cur(cursor): A cursor inside the same transaction as :meth:`drop`.
          definition(callable): Rewrites each CREATE INDEX statement first (default: as captured).
        """
        for _, _, statement in self.indexes:
            cur.execute(sql.SQL(definition(statement)))
        for schema, table, name, constraint in self.foreign_keys:
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.Identifier(schema, table), sql.Identifier(name), sql.SQL(constraint)
                )
            )
