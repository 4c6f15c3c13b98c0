"""Gapless invoice numbers per account (PRODUCT §6.6, §11) — the pure part.

A number is ``<prefix>-<sequence>`` with the sequence zero-padded to four digits
(``K7QF2M3A-0001``; the padding grows past 9999). The sequences themselves are taken in
the database (`repository.take_numbers`), in the transaction that inserts the invoices,
so a rolled-back issue gives its numbers back and concurrent issuers of one account
queue on the account's sequence row; a voided invoice keeps its number.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PREFIX_LENGTH = 8


def default_prefix(account_id: str) -> str:
    """The account's prefix until it sets one: 8 characters derived from its id (stable,
    distinct between accounts in practice, like Stripe's per-account prefixes)."""
    digest = hashlib.sha256(account_id.encode()).digest()
    return base64.b32encode(digest).decode()[:PREFIX_LENGTH]


def format_number(prefix: str, sequence: int) -> str:
    if sequence < 1:
        raise ValueError("invoice sequences start at 1")
    return f"{prefix}-{sequence:04d}"


@dataclass(frozen=True, slots=True)
class Taken:
    """Numbers an account took in one transaction: ``first`` … ``first + count − 1``."""

    prefix: str
    first: int
    count: int


def taken_from_next(prefix: str, next_after: int, count: int) -> Taken:
    """The range taken, from the sequence's ``next`` after the UPDATE … RETURNING."""
    first = next_after - count
    if first < 1 or count < 1:
        raise ValueError("a sequence hands out at least one number, from 1 up")
    return Taken(prefix, first, count)


def counts_by_account(account_ids: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for account_id in account_ids:
        counts[account_id] = counts.get(account_id, 0) + 1
    return counts


def assign(account_ids: Sequence[str], taken: dict[str, Taken]) -> list[tuple[int, str]]:
    """(sequence, number) for each entry of ``account_ids``, in that order: each account's
    range is handed out in the order its invoices appear (their issue order)."""
    used: dict[str, int] = {}
    out = []
    for account_id in account_ids:
        t = taken[account_id]
        offset = used.get(account_id, 0)
        if offset >= t.count:
            raise ValueError(f"account {account_id} took {t.count} numbers but issues more")
        used[account_id] = offset + 1
        out.append((t.first + offset, format_number(t.prefix, t.first + offset)))
    if any(used.get(a, 0) != t.count for a, t in taken.items()):
        raise ValueError("every number taken must be used (no gaps)")
    return out
