"""The facet registry: which record types can be searched, and what is counted for each.

Declared once and read by both the precompute job (``analytics.precompute_facets``:
what to count) and search (what may be filtered, how a value is checked, how a
filter becomes SQL). Adding a facet here is all it takes for the job to count it
and for search to filter on it. How each kind of field is keyed, checked and
filtered is in ``crmtasks.search.kinds``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from psycopg2 import sql

from crmtasks.search.kinds import (
    ROW_ALIAS,
    Amount,
    AmountBand,
    Date,
    FacetKind,
    QuarterOfDate,
    RangeKind,
    TextColumn,
    Timestamp,
    UserColumn,
)


@dataclasses.dataclass(frozen=True)
class Facet:
    """One counted field of an entity.

    Parameters:
      name(str): The field's name in filters and in ``facets`` (``owner``, ``close_quarter``).
      kind(FacetKind): How it is keyed, checked and filtered.
    """

    name: str
    kind: FacetKind


@dataclasses.dataclass(frozen=True)
class Entity:
    """A searchable record type.

    Parameters:
      name(str): Its name in the API (``leads``).
      table(str): Its table; aliased ``r`` in every query.
      facets(tuple): Counted fields, in display order.
      text_columns(tuple): Columns ``q`` searches (each has a pg_trgm GIN index).
      ranges(dict): Range-filterable column -> RangeKind.
      sortable(tuple): Columns ``order_by`` accepts.
      columns(tuple): Columns of ``r`` returned in each record.
      joins(tuple): ``(alias, table, column of r)`` LEFT JOINs on ``alias.id = r.column``,
        for facets counted from a related record (a contact's account industry).
      joined_columns(tuple): ``(alias, column, output name)`` extra record columns from joins.
    """

    name: str
    table: str
    facets: tuple[Facet, ...]
    text_columns: tuple[str, ...]
    ranges: dict[str, RangeKind]
    sortable: tuple[str, ...]
    columns: tuple[str, ...]
    joins: tuple[tuple[str, str, str], ...] = ()
    joined_columns: tuple[tuple[str, str, str], ...] = ()

    def facet(self, name: str) -> Facet:
        for facet in self.facets:
            if facet.name == name:
                return facet
        raise KeyError(name)

    @property
    def facet_names(self) -> tuple[str, ...]:
        return tuple(facet.name for facet in self.facets)

    def from_sql(self) -> sql.Composable:
        """``table AS r`` plus the entity's joins."""
        parts = [sql.SQL("{} AS {}").format(sql.Identifier(self.table), sql.Identifier(ROW_ALIAS))]
        for alias, table, column in self.joins:
            parts.append(sql.SQL("LEFT JOIN {table} AS {alias} ON {alias_id} = {row_column}").format(
                table=sql.Identifier(table), alias=sql.Identifier(alias),
                alias_id=sql.Identifier(alias, "id"), row_column=sql.Identifier(ROW_ALIAS, column)))
        return sql.SQL(" ").join(parts)

    def record_columns_sql(self) -> sql.Composable:
        columns = [sql.Identifier(ROW_ALIAS, column) for column in self.columns]
        columns += [sql.SQL("{} AS {}").format(sql.Identifier(alias, column), sql.Identifier(name))
                    for alias, column, name in self.joined_columns]
        return sql.SQL(", ").join(columns)


_TIMESTAMPS = {"created_at": Timestamp(), "updated_at": Timestamp()}
_SORTABLE = ("id", "name", "created_at", "updated_at")

AMOUNT_BANDS = AmountBand(
    "amount",
    bounds=(1_000, 10_000, 50_000, 100_000, 500_000),
    labels=("under 1k", "1k-10k", "10k-50k", "50k-100k", "100k-500k", "500k+"),
)

ENTITIES: dict[str, Entity] = {
    entity.name: entity
    for entity in (
        Entity(
            name="leads", table="leads",
            facets=(Facet("status", TextColumn("status")), Facet("industry", TextColumn("industry")),
                    Facet("source", TextColumn("source")), Facet("rating", TextColumn("rating")),
                    Facet("owner", UserColumn("owner_id"))),
            text_columns=("name", "company", "email"),
            ranges=dict(_TIMESTAMPS),
            sortable=_SORTABLE,
            columns=("id", "name", "company", "email", "status", "industry", "source", "rating", "owner_id",
                     "created_at", "updated_at"),
        ),
        Entity(
            name="deals", table="deals",
            facets=(Facet("stage", TextColumn("stage")), Facet("owner", UserColumn("owner_id")),
                    Facet("close_quarter", QuarterOfDate("close_date")), Facet("amount_band", AMOUNT_BANDS)),
            text_columns=("name",),
            ranges={**_TIMESTAMPS, "close_date": Date(), "amount": Amount()},
            sortable=_SORTABLE + ("amount", "close_date"),
            columns=("id", "name", "account_id", "owner_id", "stage", "amount", "probability", "close_date",
                     "created_at", "updated_at"),
        ),
        Entity(
            name="accounts", table="accounts",
            facets=(Facet("industry", TextColumn("industry")), Facet("region", TextColumn("region")),
                    Facet("owner", UserColumn("owner_id"))),
            text_columns=("name",),
            ranges=dict(_TIMESTAMPS),
            sortable=_SORTABLE,
            columns=("id", "name", "industry", "region", "owner_id", "created_at", "updated_at"),
        ),
        Entity(
            name="contacts", table="contacts",
            facets=(Facet("lead_source", TextColumn("lead_source")), Facet("owner", UserColumn("owner_id")),
                    Facet("account_industry", TextColumn("industry", alias="account"))),
            text_columns=("name", "email"),
            ranges=dict(_TIMESTAMPS),
            sortable=_SORTABLE,
            columns=("id", "name", "email", "account_id", "owner_id", "lead_source", "created_at", "updated_at"),
            joins=(("account", "accounts", "account_id"),),
            joined_columns=(("account", "industry", "account_industry"),),
        ),
    )
}


def get_entity(name: Any) -> Entity:
    """The entity called ``name``; ValueError listing the valid names otherwise."""
    if isinstance(name, str) and name in ENTITIES:
        return ENTITIES[name]
    raise ValueError(f"unknown entity {str(name)[:80]!r}; expected one of: {', '.join(sorted(ENTITIES))}")
