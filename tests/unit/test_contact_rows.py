"""The pure part of bulk contact upserts (``services/crm_sync/contacts/rows.py``): each row
checked on its own, rows of one address merged in order without erasing, and the
packing of columns for the statement (``contacts/repository.packed``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.crm_sync.contacts.repository import NULL_MARK, SEPARATOR, packed
from services.crm_sync.contacts.rows import FIELDS, MAX_LENGTH, TEXT_FIELDS, ascii_key, clean_row, merge


def fields_of(errors: list[dict]) -> list[str]:
    return [e["field"] for e in errors]


def test_texts_are_stripped_and_empty_ones_are_no_value():
    values, errors = clean_row({"email": "  Ada@Example.com ", "firstname": " Ada ", "lastname": "   ", "city": ""})
    assert errors == []
    assert values["email"] == "Ada@Example.com" and values["firstname"] == "Ada"
    assert values["lastname"] is None and values["city"] is None
    assert set(values) == set(FIELDS)  # every field, None when absent
    assert all(values[f] is None for f in ("phone", "zip", "country"))


@pytest.mark.parametrize(
    ("row", "fields"),
    [
        ({}, ["email"]),
        ({"email": "   "}, ["email"]),
        ({"email": "no-at-sign"}, ["email"]),
        ({"email": "two@@example.com"}, ["email"]),
        ({"email": "a@b.c"}, ["email"]),
        ({"email": "x" * 321}, ["email"]),
        ({"email": "a@example.com", "firstname": "x" * 201}, ["firstname"]),
        ({"email": "a@example.com", "zip": "1" * 51, "phone": "2" * 51}, ["phone", "zip"]),
        ({"email": "a@example.com", "city": 7}, ["city"]),
        ({"email": ["a@example.com"]}, ["email"]),
        ({"email": "a@example.com", "address": "a\x00b"}, ["address"]),
        ({"email": "a@example.com", "lastname": "\udc80"}, ["lastname"]),
        ({"email": "a@example.com", "phone": "4242 4242 4242 4242"}, ["phone"]),
        ({"email": "a@example.com", "address": "Card 5555-5555-5555-4444 please"}, ["address"]),
        ({"email": "bad", "firstname": "x" * 201, "phone": "4242424242424242"}, ["email", "firstname", "phone"]),
    ],
)
def test_a_refused_row_names_each_field(row, fields):
    _, errors = clean_row(row)
    assert sorted(fields_of(errors)) == sorted(fields)
    assert all(e["message"] for e in errors)


@pytest.mark.parametrize(
    "value",
    ["+46 70 123 45 67", "4242 4242 4242 4241", "Street 12345 67890", "1-800-555-0199 ext 12345", "0" * 14],
)
def test_numbers_that_are_not_card_numbers_pass(value):
    assert clean_row({"email": "a@example.com", "address": value})[1] == []


def test_values_at_their_limits_pass():
    row = {name: "x" * limit for name, limit in MAX_LENGTH.items() if name != "email"}
    row["email"] = "a" * 60 + "@" + "b" * 250 + ".com"
    assert len(row["email"]) <= MAX_LENGTH["email"]
    assert clean_row(row)[1] == []


def test_merge_keeps_one_row_per_key_in_key_order_and_later_values_win():
    rows = [
        (0, {**dict.fromkeys(FIELDS), "email": "b@x.com", "firstname": "B1", "city": "Lund"}),
        (1, {**dict.fromkeys(FIELDS), "email": "a@x.com", "firstname": "A"}),
        (2, {**dict.fromkeys(FIELDS), "email": "B@X.com", "firstname": "B2", "city": None, "zip": "1"}),
    ]
    merged = merge(rows, [ascii_key(v["email"]) for _, v in rows])
    assert merged.keys == ["a@x.com", "b@x.com"]
    assert merged.sources == [[1], [0, 2]]
    assert merged.columns["firstname"] == ["A", "B2"]
    assert merged.columns["city"] == [None, "Lund"]  # the later row's empty city keeps the earlier one's
    assert merged.columns["zip"] == [None, "1"]
    assert merged.columns["email"] == ["a@x.com", "B@X.com"]


def test_only_ascii_addresses_are_keyed_without_the_database():
    assert ascii_key("Ada@Example.COM") == "ada@example.com"
    assert ascii_key("İpek@örnek.tr") is None


row_values = st.fixed_dictionaries(
    {"email": st.sampled_from(["a@x.com", "A@x.com", "b@x.com", "c@x.com", "B@X.COM"])},
    optional={f: st.one_of(st.none(), st.sampled_from(["1", "2", "3"])) for f in TEXT_FIELDS[:4]},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(row_values, max_size=12))
def test_merge_is_applying_the_rows_one_after_another(raw_rows):
    """Merging equals upserting the rows one at a time under the never-erase rule."""
    rows = [(i, clean_row(r)[0]) for i, r in enumerate(raw_rows)]
    merged = merge(rows, [ascii_key(v["email"]) for _, v in rows])
    expected: dict[str, dict] = {}
    for _, values in rows:
        key = values["email"].lower()
        stored = expected.setdefault(key, dict.fromkeys(FIELDS))
        for name, value in values.items():
            if value is not None:
                stored[name] = value
    assert merged.keys == sorted(expected)
    for n, key in enumerate(merged.keys):
        assert {name: merged.columns[name][n] for name in FIELDS} == expected[key]
    assert sorted(p for positions in merged.sources for p in positions) == list(range(len(rows)))


def test_columns_are_packed_unless_a_value_holds_a_separator():
    assert packed(["a", None, "b"]) == f"a{SEPARATOR}{NULL_MARK}{SEPARATOR}b"
    assert packed(["", "x"]) == f"{SEPARATOR}x"
    assert packed([]) is None  # nothing to pack: the arrays form
    assert packed([f"a{SEPARATOR}b"]) is None
    assert packed([NULL_MARK, "x"]) is None
    assert packed([""]) is None  # alone it would split into no element at all
    assert packed([f"a{NULL_MARK}b"]) == f"a{NULL_MARK}b"  # only a value equal to the mark is ambiguous
