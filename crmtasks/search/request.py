"""Checking a search's input before any SQL is built: the one gate against bad input.

``build_request`` turns the caller's arguments into a ``SearchRequest`` whose
every name comes from the facet registry and every value has the type its
column needs, or raises ``ValueError`` with a message a user can act on. Names
(entity, fields, sort column) are only ever looked up in the registry, never
put into SQL as given, which is what makes an injection attempt a plain
``ValueError`` ("unknown field ..."). Values are carried to SQL as literals.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from crmtasks.search.facets import Entity, Facet, get_entity
from crmtasks.search.kinds import RangeKind
from crmtasks.user_text import check_text

MAX_LIST_VALUES = 100       # values in one IN filter
MAX_PER_PAGE = 100          # records in one page
MAX_RESULT_WINDOW = 10_000  # page * per_page: deeper pages need a narrower search (OFFSET cost grows linearly)
MIN_QUERY_LENGTH = 3        # shorter text cannot use the trigram index
MAX_QUERY_LENGTH = 200
RANGE_OPERATORS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}


@dataclasses.dataclass(frozen=True)
class FacetFilter:
    """Records whose ``facet`` bucket is one of ``keys`` (stored keys) or NULL when ``null_included``."""

    facet: Facet
    keys: tuple[str, ...]
    null_included: bool


@dataclasses.dataclass(frozen=True)
class RangeFilter:
    """Records whose ``column`` satisfies every ``(operator, value)`` bound (operator in RANGE_OPERATORS)."""

    column: str
    kind: RangeKind
    bounds: tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class SearchRequest:
    """A checked search.

    Parameters:
      entity(Entity): What is searched.
      facet_filters(tuple): FacetFilter per filtered facet field.
      range_filters(tuple): RangeFilter per range-filtered column.
      q(str|None): Text to find (case-insensitive substring of the entity's text columns).
      page(int): 1-based page number.
      per_page(int): Records per page.
      order(tuple): ``(column, descending)``; the id breaks ties in the same direction.
    """

    entity: Entity
    facet_filters: tuple[FacetFilter, ...]
    range_filters: tuple[RangeFilter, ...]
    q: str | None
    page: int
    per_page: int
    order: tuple[str, bool]

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def build_request(entity: Any, filters: Mapping[str, Any] | None = None, q: Any = None, page: Any = 1,
                  per_page: Any = 25, order_by: Any = None) -> SearchRequest:
    """Check every argument of ``faceted_search``; ValueError with a clear message on the first bad one."""
    checked_entity = get_entity(entity)
    facet_filters, range_filters = _check_filters(checked_entity, filters)
    page = _check_int("page", page, least=1)
    per_page = _check_int("per_page", per_page, least=1, most=MAX_PER_PAGE)
    if page * per_page > MAX_RESULT_WINDOW:
        raise ValueError(f"page {page} of {per_page} reaches past record {MAX_RESULT_WINDOW:,}; "
                         "narrow the search with filters or q instead of paging that deep")
    return SearchRequest(
        entity=checked_entity,
        facet_filters=facet_filters,
        range_filters=range_filters,
        q=_check_query(q),
        page=page,
        per_page=per_page,
        order=_check_order(checked_entity, order_by),
    )


def _check_int(name: str, value: Any, *, least: int, most: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number (int), got {type(value).__name__} {value!r:.40}")
    if value < least or (most is not None and value > most):
        bound = f"between {least} and {most}" if most is not None else f"at least {least}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _unknown_field(entity: Entity, field: Any) -> ValueError:
    return ValueError(
        f"{entity.name} has no filter field {str(field)[:80]!r}; facet fields: {', '.join(entity.facet_names)}; "
        f"range fields: {', '.join(entity.ranges)}")


def _check_filters(entity: Entity, filters: Any) -> tuple[tuple[FacetFilter, ...], tuple[RangeFilter, ...]]:
    if filters is None:
        return (), ()
    if not isinstance(filters, Mapping):
        raise ValueError(f"filters must be a dict of field -> value, got {type(filters).__name__}")
    facet_filters, range_filters = [], []
    for field, value in filters.items():
        if not isinstance(field, str):
            raise _unknown_field(entity, field)
        if field in entity.facet_names:
            facet_filters.append(_check_facet_filter(entity.facet(field), value))
        elif field in entity.ranges:
            range_filters.append(_check_range_filter(field, entity.ranges[field], value))
        else:
            raise _unknown_field(entity, field)
    return tuple(facet_filters), tuple(range_filters)


def _check_facet_filter(facet: Facet, value: Any) -> FacetFilter:
    values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    if isinstance(value, (set, frozenset)):
        values.sort(key=repr)  # a stable order for the SQL text
    if not values:
        raise ValueError(f"filter {facet.name}: the list is empty, so it would match nothing; leave the filter out")
    if len(values) > MAX_LIST_VALUES:
        raise ValueError(f"filter {facet.name}: at most {MAX_LIST_VALUES} values, got {len(values)}")
    keys: list[str] = []
    null_included = False
    for item in values:
        if item is None:
            null_included = True
            continue
        try:
            key = facet.kind.check(item)
        except ValueError as error:
            raise ValueError(f"filter {facet.name}: {error}") from None
        if key not in keys:  # a repeated value must not be counted twice
            keys.append(key)
    return FacetFilter(facet, tuple(keys), null_included)


def _check_range_filter(column: str, kind: RangeKind, value: Any) -> RangeFilter:
    operators = ", ".join(RANGE_OPERATORS)
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"filter {column}: expected a range, a dict with any of {operators} "
                         f"(e.g. {{'gte': ..., 'lt': ...}}), got {type(value).__name__} {value!r:.60}")
    bounds = []
    for operator, bound in value.items():
        if operator not in RANGE_OPERATORS:
            raise ValueError(f"filter {column}: unknown range operator {str(operator)[:20]!r}; expected {operators}")
        try:
            bounds.append((operator, kind.check(bound)))
        except ValueError as error:
            raise ValueError(f"filter {column} {operator}: {error}") from None
    return RangeFilter(column, kind, tuple(bounds))


def _check_query(q: Any) -> str | None:
    if q is None:
        return None
    if not isinstance(q, str):
        raise ValueError(f"q must be text (str), got {type(q).__name__}")
    text = q.strip()
    if not text:
        return None
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError("q contains control characters")
    check_text(text, "q")
    if len(text) < MIN_QUERY_LENGTH:
        raise ValueError(f"q must be at least {MIN_QUERY_LENGTH} characters (shorter text cannot use the text index)")
    if len(text) > MAX_QUERY_LENGTH:
        raise ValueError(f"q must be at most {MAX_QUERY_LENGTH} characters, got {len(text)}")
    return text


def _check_order(entity: Entity, order_by: Any) -> tuple[str, bool]:
    if order_by is None:
        return ("id", True)  # newest first: ids grow with creation, and the primary key serves the order
    if not isinstance(order_by, str):
        raise ValueError(f"order_by must be text such as 'name' or '-created_at', got {type(order_by).__name__}")
    descending = order_by.startswith("-")
    column = order_by[1:] if descending else order_by
    if column not in entity.sortable:
        raise ValueError(f"{entity.name} cannot be ordered by {order_by[:80]!r}; "
                         f"expected one of {', '.join(entity.sortable)} (prefix '-' for descending)")
    return (column, descending)


_FILTER_TEXT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<|=)(.*)$", re.DOTALL)
_TEXT_OPERATORS = {">=": "gte", ">": "gt", "<=": "lte", "<": "lt"}


def filters_from_text(entity: Any, texts: list[str]) -> dict[str, Any]:
    """``filters`` for ``faceted_search`` from command-line texts; ValueError on a malformed one.

    ``field=value`` (repeat a field for a list; ``field=`` means "no value"), and for range fields
    ``field>=value``, ``field>value``, ``field<=value``, ``field<value``.
    """
    checked_entity = get_entity(entity)
    filters: dict[str, Any] = {}
    for text in texts:
        match = _FILTER_TEXT.match(text)
        if not match:
            raise ValueError(f"filter {text[:80]!r} is not field=value (or field>=value, field<value, ... for ranges)")
        field, operator, raw = match.group(1), match.group(2), match.group(3).strip()
        if field in checked_entity.facet_names:
            if operator != "=":
                raise ValueError(f"filter {field}: a facet field takes field=value, not {operator}")
            try:
                value = None if raw == "" else checked_entity.facet(field).kind.parse(raw)
            except ValueError as error:
                raise ValueError(f"filter {field}: {error}") from None
            previous = filters.get(field, [])
            filters[field] = previous + [value]
        elif field in checked_entity.ranges:
            if operator == "=":
                raise ValueError(f"filter {field}: a range field takes >=, >, <= or < (e.g. {field}>=2024-01-01)")
            filters.setdefault(field, {})[_TEXT_OPERATORS[operator]] = raw
        else:
            raise _unknown_field(checked_entity, field)
    return {field: (value[0] if isinstance(value, list) and len(value) == 1 else value)
            for field, value in filters.items()}
