"""Contact rows of a bulk upsert (pure: no I/O).

One batch (the batch API's ``contacts``, or 1,000 lines of a CSV file) goes through:

1. `clean_row` per row: texts stripped, empty ones become None ("no value": it never
   erases a stored one), then checked — a valid e-mail address, each field within its
   length, no NUL character or lone surrogate (PostgreSQL cannot store them), nothing
   that looks like a payment card number. A refused row gets its errors, naming each
   field; the other rows go on (per-row errors, never a whole-batch failure).
2. `merge` of the accepted rows by their key (the e-mail in lower case, as the unique
   index ``(account_id, lower(email))`` sees it): one row per contact, so that the
   upsert's ``ON CONFLICT`` never meets one row twice in a statement. A later row's
   values win over an earlier one's, and an empty value of a later row keeps the
   earlier one's — the same rule as against what is stored. The merged rows are sorted
   by key: concurrent batches lock their contacts in one order and cannot deadlock.

The keys are given to `merge` by the caller: Python's ``str.lower`` equals
PostgreSQL's ``lower()`` for ASCII, and for other e-mails the service asks the database
(`services.crm_sync.contacts.imports`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.accounts import valid_email
from shared.web.request import looks_like_card_number

#: The contact-information properties a row may carry besides ``email`` (API.md, CRM).
TEXT_FIELDS = (
    "firstname",
    "lastname",
    "phone",
    "company",
    "jobtitle",
    "website",
    "address",
    "city",
    "state",
    "zip",
    "country",
)
FIELDS = ("email", *TEXT_FIELDS)
#: Longest value of each field, in characters (the API's contact models use the same).
MAX_LENGTH = {
    "email": 320,
    "firstname": 200,
    "lastname": 200,
    "phone": 50,
    "company": 200,
    "jobtitle": 200,
    "website": 2000,
    "address": 500,
    "city": 200,
    "state": 200,
    "zip": 50,
    "country": 200,
}

Values = dict[str, str | None]
Errors = list[dict[str, str]]


def normalize(value: Any) -> Any:
    """Surrounding blanks dropped; an empty or blank text is None (no value) — as
    `clean_row` does."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


_LIMITS = tuple(MAX_LENGTH.items())


def clean_row(raw: Mapping[str, Any]) -> tuple[Values, Errors]:
    """The row's values (every field of `FIELDS`, None when absent or empty) and its
    errors (empty when the row is acceptable). Keys outside `FIELDS` are not read.
    (Written for speed: a million-row import calls it a million times.)"""
    values: Values = {}
    errors: Errors = []
    present: list[str] = []
    for name, limit in _LIMITS:
        value = raw.get(name)
        if value is None:
            values[name] = None
            continue
        if value.__class__ is not str:
            errors.append({"field": name, "message": "must be text"})
            values[name] = None
            continue
        value = value.strip()
        if not value:
            values[name] = None
            continue
        if len(value) > limit:
            errors.append({"field": name, "message": f"is longer than {limit} characters"})
        values[name] = value
        present.append(value)
    email = values["email"]
    if email is None:
        if not errors or all(e["field"] != "email" for e in errors):
            errors.append({"field": "email", "message": "is required (a contact is found by its e-mail address)"})
    elif not errors or all(e["field"] != "email" for e in errors):
        try:
            values["email"] = valid_email(email)
        except ValueError as exc:
            errors.append({"field": "email", "message": str(exc)})
    if present and _suspect("\n".join(present)):
        errors.extend(_text_errors(values))
    return values, errors


#: Digits to "9", anything else but blanks and dashes (which are dropped) to a newline:
#: a card number (15–19 digits, single blanks or dashes between them) becomes 15 nines.
_CARD_SHAPE = bytes(57 if 48 <= b <= 57 else 10 for b in range(256))
_FIFTEEN_DIGITS = b"9" * 15


def _suspect(text: str) -> bool:
    """Whether the text may hold something PostgreSQL cannot store (NUL, a lone
    surrogate) or a card number — cheap enough to ask of every row (two C-level passes);
    `_text_errors` then says which field."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    if b"\x00" in data:
        return True
    return _FIFTEEN_DIGITS in data.translate(_CARD_SHAPE, b" -") and looks_like_card_number(text)


def _text_errors(values: Values) -> Errors:
    """Which fields carry text PostgreSQL cannot store, or a card number (the slow path,
    taken only when the row as a whole has one)."""
    errors: Errors = []
    for name, value in values.items():
        if value is None:
            continue
        if "\x00" in value:
            errors.append({"field": name, "message": "must not contain NUL characters"})
        elif looks_like_card_number(value):
            errors.append(
                {
                    "field": name,
                    "message": "looks like a payment card number; card details are entered only in the "
                    "payment processor's fields",
                }
            )
        elif _suspect(value):  # neither NUL nor a card number: it does not encode (a lone surrogate)
            errors.append({"field": name, "message": "must be valid Unicode text"})
    return errors


@dataclass
class Merged:
    """Accepted rows merged into one per contact, sorted by key."""

    keys: list[str] = field(default_factory=list)
    #: field -> one value per merged row (the upsert's arrays)
    columns: dict[str, list[str | None]] = field(default_factory=dict)
    #: merged row -> the input positions it came from, first one first
    sources: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


def merge(rows: Sequence[tuple[int, Values]], keys: Sequence[str]) -> Merged:
    """Merge accepted rows ``(input position, values)`` whose keys are equal: values of a
    later row replace an earlier row's, except where the later one is None."""
    by_key: dict[str, int] = {}  # key -> its first row
    later: dict[int, list[int]] = {}  # first row -> the rows merged into it
    for n, key in enumerate(keys):
        first = by_key.setdefault(key, n)
        if first != n:
            later.setdefault(first, []).append(n)
    order = sorted(by_key.values(), key=keys.__getitem__)
    merged = Merged(keys=[keys[n] for n in order])
    if not later:  # the usual case: every address once
        merged.columns = {name: [rows[n][1][name] for n in order] for name in FIELDS}
        merged.sources = [[rows[n][0]] for n in order]
        return merged
    combined: list[Values] = []
    for n in order:
        values = rows[n][1]
        positions = [rows[n][0]]
        if n in later:
            values = dict(values)
            for m in later[n]:
                for name, value in rows[m][1].items():
                    if value is not None:
                        values[name] = value
                positions.append(rows[m][0])
        combined.append(values)
        merged.sources.append(positions)
    merged.columns = {name: [values[name] for values in combined] for name in FIELDS}
    return merged


def ascii_key(email: str) -> str | None:
    """The key of an ASCII e-mail address (its lower case); None for other addresses,
    whose lower case the database must give (its ``lower()`` follows its own locale)."""
    return email.lower() if email.isascii() else None
