"""The compact columns a searching process holds give the answers of the raw ones, without services.

A base's text is dictionary-coded (split at the first ``@`` or space), its numbers narrowed and
its ids uint32, and stored so. Here random columns go through the coding and through the store
and back: every value comes back byte for byte, every range bound keeps the rows it kept, and the
trigram index over the coded parts finds exactly the rows a substring search of the raw rows finds
(the brute force below is what ILIKE does to text already lowered; tests/integration/
test_search_text_index.py compares with the server's ILIKE itself).
"""

from __future__ import annotations

import datetime

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from crmtasks.search.coded_text import AT, SPACE, CodedText, code_text, with_coded_texts
from crmtasks.search.index import EntityIndex, NumberColumn, compact_ids, range_mask
from crmtasks.search.index_read import text_data
from crmtasks.search.index_store import index_from_parts, index_parts
from crmtasks.search.kinds import Timestamp
from crmtasks.search.text_index import ColumnTrigrams, scanned_positions

ALPHABET = "ab c@é.-ß"
values = st.lists(st.text(alphabet=ALPHABET, max_size=10).map(lambda t: t.encode()), max_size=40)
needles = st.text(alphabet=ALPHABET, min_size=1, max_size=5).map(lambda t: t.encode())


def _found(rows: list[bytes], needle: bytes) -> list[int]:
    return [p for p, row in enumerate(rows) if needle in row]


@given(values, st.lists(needles, min_size=1, max_size=6))
@example([b"ab cd ef", b"x  y", b" lead", b"ab", b"b c"], [b"b c", b"d e", b" cd", b"x  ", b"  y", b" ", b"b "])
@example([b"ab@ba@zz", b"zb@@ab", b"@", b"a@", b"@b"], [b"b@ba", b"ba@z", b"a@zz", b"@@a", b"b@@", b"@", b"a@"])
@example([b"ab cd"] * 30 + [b"x y"] * 10, [b"b c", b"x y", b" ", b"ab cd", b"d"])  # few values: kept whole
def test_coded_column_gives_back_every_value_and_finds_what_a_substring_search_finds(rows, searched):
    coded = code_text(text_data(rows))
    assert isinstance(coded, CodedText) and len(coded) == len(rows)
    assert [coded.value_bytes(p) for p in range(len(rows))] == rows
    if any(b"@" in row for row in rows):
        assert coded.separator == AT and coded.after is not None
    elif any(b" " in row for row in rows):
        assert coded.separator == SPACE
    trigrams = ColumnTrigrams.build(coded)
    for needle in searched:
        assert sorted(trigrams.positions_holding(needle)) == _found(rows, needle), needle


def _in_order(first, parts) -> list:
    return list(dict.fromkeys([*first, *parts]))


@given(values, st.integers(1, 4))
@example([b"ab cd", b"x", b"", b"ab cd", b"e f"], 1)
@example([b"a@", b"b", b"@c", b"a@"], 1)
def test_the_coding_is_exactly_first_appearance_order_and_the_stated_split(rows, repeat):
    """The stored base is the same whatever builds it: parts in the order they first appear (the empty one
    first), codes their indexes, the separator and the split chosen by the rule of ``code_text``."""
    rows = rows * repeat
    coded = code_text(text_data(rows))
    whole = _in_order([b""], rows)
    if any(b"@" in row for row in rows):
        separator = AT
    elif not any(b" " in row for row in rows) or sum(len(v) + 1 for v in whole) <= len(rows):
        assert coded.after is None and coded.separator == SPACE
        assert [coded.before[i] for i in range(len(coded.before))] == whole
        assert coded.before_codes.tolist() == [whole.index(row) for row in rows]
        assert coded.before_codes.dtype == (np.uint8 if len(whole) <= 256 else np.uint16)
        return
    else:
        separator = SPACE
    assert coded.separator == separator and coded.after is not None
    cut = [row.partition(bytes((separator,))) for row in rows]
    heads = _in_order([b""], [head for head, _, _ in cut])
    tails = _in_order([None], [tail for _, _, tail in cut])  # rows without the separator code b"" too, then 0
    assert [coded.before[i] for i in range(len(coded.before))] == heads
    assert [coded.after[i] for i in range(len(coded.after))] == [b"", *tails[1:]]
    assert coded.before_codes.tolist() == [heads.index(head) for head, _, _ in cut]
    assert coded.after_codes.tolist() == [tails.index(tail) if found else 0 for _, found, tail in cut]


def test_coding_shrinks_repeated_parts():
    """Company-like values (many distinct, made of a few first words and rests) are split at the first space;
    name-like ones (few distinct) are kept whole. Either way far fewer bytes than the rows."""
    first = [b"unitedpath", b"apexwood", b"cedarfire", b"rivergrove", b"lakemark"] * 10
    first = [word + bytes([97 + i % 26, 97 + i // 26]) for i, word in enumerate(first)]  # 50 first words
    rest = [b"systems ltd", b"foods llc", b"motors corp.", b"labs inc."] * 10
    rest = [words + b" " + bytes([97 + i]) for i, words in enumerate(rest)]  # 40 rests
    companies = [first[i % 50] + b" " + rest[(i * 7) // 50 % 40] for i in range(6_000)]
    coded = code_text(text_data(companies))
    assert coded.after is not None and len(coded.before) == 51 and len(coded.after) == 41  # "", "no separator"
    assert coded.before_codes.dtype == np.uint8 and coded.nbytes() < len(b"".join(companies)) // 4
    names = [a + b" " + b for a in (b"karen", b"james", b"omar", b"mary") for b in (b"rossi", b"fischer")] * 500
    coded = code_text(text_data(names))
    assert coded.after is None and len(coded.before) == 9 and coded.before_codes.dtype == np.uint8
    assert sorted(ColumnTrigrams.build(coded).positions_holding(b"n f")) == _found(names, b"n f")


@given(st.lists(st.one_of(st.none(), st.integers(-2**62, 2**62)), max_size=30), st.integers(1, 10**6),
       st.sampled_from(["gte", "gt", "lte", "lt"]), st.integers(-2**63, 2**63 - 1))
@example([10**15, 10**15 + 2 * 10**6, None], 10**6, "gte", 10**15 + 1)
def test_a_compact_number_column_keeps_the_values_and_the_rows_of_a_bound(raw, divisor, operator, bound):
    scaled = [None if v is None else v // divisor * divisor for v in raw]  # common divisors get used
    values = np.array([v or 0 for v in scaled], dtype=np.int64)
    present = np.array([v is not None for v in scaled], dtype=bool)
    plain, compact = NumberColumn(values, present), NumberColumn.compact(values, present)
    assert [int(v) for v, p in zip(compact.values, present) if p] == [v for v in scaled if v is not None]
    assert compact.stored.nbytes <= values.nbytes
    compare = {"gte": int.__ge__, "gt": int.__gt__, "lte": int.__le__, "lt": int.__lt__}[operator]
    expected = [v is not None and compare(v, bound) for v in scaled]
    limit = (operator, _moment(bound))
    if limit[1] is not None:
        assert range_mask(compact, Timestamp(), (limit,)).tolist() == expected
        assert range_mask(plain, Timestamp(), (limit,)).tolist() == expected


def _moment(microseconds: int):
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    try:
        return epoch + datetime.timedelta(microseconds=microseconds)
    except OverflowError:
        return None  # outside what a timestamp holds


def test_whole_seconds_over_years_take_four_bytes():
    seconds = np.random.default_rng(7).integers(1_733_000_000, 1_796_000_000, 1_000, dtype=np.int64) * 1_000_000
    column = NumberColumn.compact(seconds, None)
    assert column.stored.dtype == np.uint32 and column.values.tolist() == seconds.tolist()


@given(values, st.lists(st.integers(1, 2**40), unique=True, max_size=40))
def test_a_stored_base_comes_back_coded_and_compact_with_the_same_content(rows, ids):
    rows = rows[:len(ids)]
    ids = np.array(sorted(ids)[:len(rows)], dtype=np.int64)
    numbers = {"created_at": NumberColumn(ids * 1_000_000, None)}
    index = with_coded_texts(EntityIndex("leads", ids, {}, numbers, {"name": text_data(rows)}))
    loaded = index_from_parts("leads", index_parts(index))
    assert loaded.ids.tolist() == ids.tolist() and loaded.ids.dtype == compact_ids(ids).dtype
    assert loaded.numbers["created_at"].values.tolist() == (ids * 1_000_000).tolist()
    text = loaded.texts["name"]
    assert isinstance(text, CodedText) and [text.value_bytes(p) for p in range(len(rows))] == rows
    for needle in {row[1:4] for row in rows if len(row) >= 4}:
        assert sorted(scanned_positions(loaded, needle)) == _found(rows, needle)
        assert loaded.positions_of_ids(ids).to_array().tolist() == list(range(len(ids)))
