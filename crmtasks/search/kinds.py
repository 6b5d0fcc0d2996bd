"""Facet and range kinds: how a field's values become bucket keys, are checked, and become SQL.

Every facet has a *bucket key*: a cheap per-row SQL expression that PostgreSQL
groups by (``r.status``, ``r.owner_id``, a close-date quarter as ``20243``, an
amount band number). Keys travel as text (facet tables store them as text);
each facet kind turns an API value into a key (``check``), a key back into an
API value (``decode``) and a set of keys into a row condition (``condition``)
that an index can use (a quarter becomes a close_date range, not a computed
expression). NULL is a bucket of its own: records with no value. A range
kind checks the bounds of a ``{"gte": ..., "lt": ...}`` filter.

All SQL is composed from ``psycopg2.sql`` objects; values become ``Literal``.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import decimal
import re
from collections.abc import Sequence
from typing import Any

from psycopg2 import sql

from crmtasks.user_text import WHOLE_NUMBER, check_text

# Alias of the entity's own table in every query built from this registry.
ROW_ALIAS = "r"
_BIGINT = 2**63
MAX_TEXT_VALUE_LENGTH = 200
# Digits as typed (crmtasks.user_text): Decimal() also takes "１２" and "٥", which no one means as an amount.
_DECIMAL_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
# Decimal places a range bound on an amount may have: far more than any currency, far less than
# PostgreSQL's numeric limit (16,383), so a bound like 1e-20000 is refused here, not by the server.
MAX_AMOUNT_DECIMALS = 30


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _either(conditions: list[sql.Composable]) -> sql.Composable:
    if len(conditions) == 1:
        return conditions[0]
    return sql.SQL("({})").format(sql.SQL(" OR ").join(conditions))


def column_in(column: sql.Composable, keys: Sequence[Any], *, null_included: bool, cast: str) -> sql.Composable:
    """``column`` equal to one of ``keys`` (or NULL when ``null_included``); '=' for one key, ANY otherwise."""
    conditions = []
    if len(keys) == 1:
        conditions.append(sql.SQL("{} = {}").format(column, sql.Literal(keys[0])))
    elif keys:
        conditions.append(sql.SQL("{} = ANY({}::{})").format(column, sql.Literal(list(keys)), sql.SQL(cast)))
    if null_included:
        conditions.append(sql.SQL("{} IS NULL").format(column))
    return _either(conditions)


class FacetKind(abc.ABC):
    """How one kind of facet field is keyed, checked and filtered. Subclasses fill the four abstract methods."""

    #: Words for error messages: what an API value of this facet looks like.
    expected = "a value"

    @abc.abstractmethod
    def key_sql(self) -> sql.Composable:
        """The per-row bucket key expression (cheap: it is evaluated for every row counted)."""

    @abc.abstractmethod
    def check(self, value: Any) -> str:
        """The stored key (text) of a non-null API value; ValueError naming the expected type otherwise."""

    @abc.abstractmethod
    def decode(self, key: str) -> Any:
        """The API value of a non-null stored key."""

    def parse(self, text: str) -> Any:
        """The API value written as ``text`` on the command line; ValueError when it cannot be one."""
        return text

    @abc.abstractmethod
    def condition(self, keys: Sequence[str], null_included: bool) -> sql.Composable:
        """Rows whose bucket is one of ``keys`` (non-null stored keys) or NULL when ``null_included``."""


@dataclasses.dataclass(frozen=True)
class TextColumn(FacetKind):
    """A text column counted value by value (status, industry, ...).

    Parameters:
      column(str): Column name.
      alias(str): Table alias holding the column (``r``, or a joined table's alias).
    """

    column: str
    alias: str = ROW_ALIAS
    expected = "text (str)"

    def _column(self) -> sql.Composable:
        return sql.Identifier(self.alias, self.column)

    def key_sql(self) -> sql.Composable:
        return self._column()

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected {self.expected}, got {_type_name(value)}")
        if len(value) > MAX_TEXT_VALUE_LENGTH:
            raise ValueError(f"a value is {len(value)} characters long; at most {MAX_TEXT_VALUE_LENGTH}")
        return check_text(value)

    def decode(self, key: str) -> str:
        return key

    def condition(self, keys: Sequence[str], null_included: bool) -> sql.Composable:
        return column_in(self._column(), keys, null_included=null_included, cast="text[]")


@dataclasses.dataclass(frozen=True)
class UserColumn(FacetKind):
    """A users.id foreign key (the owner): values are user ids (int).

    Parameters:
      column(str): Column name (``owner_id``).
    """

    column: str
    alias: str = ROW_ALIAS
    expected = "a user id (int)"

    def _column(self) -> sql.Composable:
        return sql.Identifier(self.alias, self.column)

    def key_sql(self) -> sql.Composable:
        return self._column()

    def check(self, value: Any) -> str:
        if not _is_int(value):
            raise ValueError(f"expected {self.expected}, got {_type_name(value)}")
        if not -_BIGINT <= value < _BIGINT:
            raise ValueError(f"user id {value} is out of range")
        return str(value)

    def decode(self, key: str) -> int:
        return int(key)

    def parse(self, text: str) -> int:
        if not WHOLE_NUMBER.fullmatch(text.strip()):
            raise ValueError(f"expected {self.expected}, got {text[:80]!r}")
        return int(text)

    def condition(self, keys: Sequence[str], null_included: bool) -> sql.Composable:
        return column_in(self._column(), [int(key) for key in keys], null_included=null_included, cast="bigint[]")


_QUARTER_PATTERN = re.compile(r"([0-9]{4})-Q([1-4])")


@dataclasses.dataclass(frozen=True)
class QuarterOfDate(FacetKind):
    """The calendar quarter of a date column, as ``'2024-Q3'``.

    The key is ``year * 10 + quarter`` (an int: cheaper to group by than a
    formatted string, and independent of the server's DateStyle). A filter on
    a quarter becomes a date range, which the column's index serves.

    Parameters:
      column(str): A ``date`` column (``close_date``).
    """

    column: str
    alias: str = ROW_ALIAS
    expected = "a quarter written YYYY-Qn, e.g. '2024-Q3'"

    def _column(self) -> sql.Composable:
        return sql.Identifier(self.alias, self.column)

    def key_sql(self) -> sql.Composable:
        # The explicit ::timestamp keeps date_part off the timestamptz overload, whose result depends on TimeZone.
        return sql.SQL("(date_part('year', {c}::timestamp) * 10 + date_part('quarter', {c}::timestamp))::int").format(
            c=self._column())

    def check(self, value: Any) -> str:
        match = _QUARTER_PATTERN.fullmatch(value) if isinstance(value, str) else None
        if not match:
            raise ValueError(f"expected {self.expected}, got {_type_name(value)}")
        year, quarter = int(match.group(1)), int(match.group(2))
        if year < 1:
            raise ValueError(f"year {year} is out of range")
        return str(year * 10 + quarter)

    def decode(self, key: str) -> str:
        number = int(key)
        return f"{number // 10:04d}-Q{number % 10}"

    @staticmethod
    def quarter_range(key: str) -> tuple[datetime.date, datetime.date | str]:
        """First day of the quarter and first day of the next one.

        After 9999-Q4 the next day is past Python's dates (but not
        PostgreSQL's): it is given as the ISO text ``'10000-01-01'``.
        """
        number = int(key)
        year, quarter = divmod(number, 10)
        start = datetime.date(year, 3 * quarter - 2, 1)
        if quarter < 4:
            return start, datetime.date(year, 3 * quarter + 1, 1)
        return start, datetime.date(year + 1, 1, 1) if year < datetime.MAXYEAR else f"{year + 1}-01-01"

    def condition(self, keys: Sequence[str], null_included: bool) -> sql.Composable:
        column = self._column()
        conditions = []
        for key in keys:
            start, end = self.quarter_range(key)
            conditions.append(sql.SQL("({c} >= {start} AND {c} < {end}::date)").format(
                c=column, start=sql.Literal(start), end=sql.Literal(str(end))))
        if null_included:
            conditions.append(sql.SQL("{} IS NULL").format(column))
        return _either(conditions)


@dataclasses.dataclass(frozen=True)
class AmountBand(FacetKind):
    """A numeric column counted in bands (``'10k-50k'``).

    The key is the band number from ``width_bucket`` (0 below the first bound).
    A filter on a band becomes an amount range.

    Parameters:
      column(str): A numeric column (``amount``).
      bounds(tuple): Ascending lower bounds of bands 1..n, in currency units.
      labels(tuple): One label per band, ``len(bounds) + 1`` of them.
    """

    column: str
    bounds: tuple[int, ...]
    labels: tuple[str, ...]
    alias: str = ROW_ALIAS

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.bounds) + 1 or list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("AmountBand needs ascending distinct bounds and one more label than bounds")

    @property
    def expected(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(repr(label) for label in self.labels)

    def _column(self) -> sql.Composable:
        return sql.Identifier(self.alias, self.column)

    def key_sql(self) -> sql.Composable:
        return sql.SQL("width_bucket({}, {}::numeric[])").format(self._column(), sql.Literal(list(self.bounds)))

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.labels:
            raise ValueError(f"expected {self.expected}, got {_type_name(value)}")
        return str(self.labels.index(value))

    def decode(self, key: str) -> str:
        return self.labels[int(key)]

    def condition(self, keys: Sequence[str], null_included: bool) -> sql.Composable:
        column = self._column()
        conditions = []
        for key in keys:
            band = int(key)
            parts = []
            if band > 0:
                parts.append(sql.SQL("{} >= {}").format(column, sql.Literal(self.bounds[band - 1])))
            if band < len(self.bounds):
                parts.append(sql.SQL("{} < {}").format(column, sql.Literal(self.bounds[band])))
            if not parts:  # one band only: any non-null amount
                parts.append(sql.SQL("{} IS NOT NULL").format(column))
            conditions.append(sql.SQL("({})").format(sql.SQL(" AND ").join(parts)))
        if null_included:
            conditions.append(sql.SQL("{} IS NULL").format(column))
        return _either(conditions)


class RangeKind(abc.ABC):
    """A column that may be filtered by range (``{"gte": ..., "lt": ...}``)."""

    expected = "a value"

    @abc.abstractmethod
    def check(self, value: Any) -> Any:
        """The Python value to compare with; ValueError naming the expected type otherwise."""


class Timestamp(RangeKind):
    """timestamptz: an aware datetime, a date (midnight UTC), or the same as an ISO 8601 string.

    The checked value is the same instant in UTC: PostgreSQL refuses UTC
    offsets beyond ±15:59 that Python allows (``+20:00``), and an offset
    that Python accepts names an instant all the same.
    """

    expected = "a datetime with a time zone, a date, or an ISO 8601 string such as '2024-05-01' or '2024-05-01T12:00:00+00:00'"

    def check(self, value: Any) -> datetime.datetime:
        typed = value
        if isinstance(value, str):
            value = _parse_iso(value, self.expected)
        if isinstance(value, datetime.datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"datetime {value.isoformat()} has no time zone; give one (e.g. +00:00)")
            try:
                return value.astimezone(datetime.timezone.utc)
            except OverflowError:
                raise ValueError(f"{_type_name(typed)} is out of range: in UTC it falls outside years 1-9999") from None
        if isinstance(value, datetime.date):
            return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.timezone.utc)
        raise ValueError(f"expected {self.expected}, got {_type_name(value)}")


class Date(RangeKind):
    """date: a date or an ISO ``YYYY-MM-DD`` string."""

    expected = "a date or an ISO string 'YYYY-MM-DD'"

    def check(self, value: Any) -> datetime.date:
        if isinstance(value, str):
            try:
                value = datetime.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"expected {self.expected}, got {_type_name(value)}") from None
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            return value
        raise ValueError(f"expected {self.expected}, got {_type_name(value)}")


class Amount(RangeKind):
    """numeric: an int, a Decimal, a finite float, or a numeric string."""

    expected = "a number (int, Decimal, float or numeric string)"
    _LIMIT = decimal.Decimal(10) ** 15

    def check(self, value: Any) -> decimal.Decimal:
        if isinstance(value, bool) or (isinstance(value, str) and not _DECIMAL_NUMBER.fullmatch(value.strip())):
            raise ValueError(f"expected {self.expected}, got {_type_name(value)}")
        try:
            if isinstance(value, (int, decimal.Decimal)):
                number = decimal.Decimal(value)
            elif isinstance(value, float):
                number = decimal.Decimal(repr(value))
            elif isinstance(value, str):
                number = decimal.Decimal(value.strip())
            else:
                raise ValueError
        except (ValueError, decimal.InvalidOperation):
            raise ValueError(f"expected {self.expected}, got {_type_name(value)}") from None
        if not number.is_finite() or abs(number) >= self._LIMIT:
            raise ValueError(f"amount {str(value)[:80]!r} is not a finite number below {self._LIMIT:,}")
        if number.is_zero():
            return decimal.Decimal(0)  # 0E-999999999 is zero all the same
        _, digits, exponent = number.as_tuple()
        trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        if -(exponent + trailing_zeros) > MAX_AMOUNT_DECIMALS:
            raise ValueError(f"amount {str(value)[:80]!r} has more than {MAX_AMOUNT_DECIMALS} decimal places")
        return number


def _parse_iso(text: str, expected: str):
    try:
        if len(text) == 10:
            return datetime.date.fromisoformat(text)
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected {expected}, got {_type_name(text)}") from None
