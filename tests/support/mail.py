"""Notifications against real PostgreSQL and a real SMTP sink, in process: events are
delivered to the notifications actors exactly as a worker runs them
(`shared.inbox.consume`: inbox, handler, commit, send after commit), and tests read the
messages the sink received, parsed as a mail client would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from services.notifications.emails.handlers import registry
from shared.accounts import apply_account_snapshot
from shared.db import tenant_tx
from shared.events import EventEnvelope
from shared.events.models import AccountSnapshot
from shared.inbox import HandlerContext, consume

SCHEMA = "notifications"
#: babel writes no-break spaces in Swedish amounts ("1 234,50 kr") and percentages.
NBSP = "\xa0"


class Acks:
    """Stands in for Redis in the acknowledgement step (not under test here)."""

    def __init__(self) -> None:
        self.pushed: list[str] = []

    async def rpush(self, key: str, value: str) -> None:
        self.pushed.append(value)


async def new_account(ctx: HandlerContext, prefix: str = "acct_mail", name: str = "Acme Coffee", **settings) -> str:
    account_id = f"{prefix}_{uuid.uuid4().hex[:10]}"
    snapshot = AccountSnapshot(
        id=account_id, version=1, name=name, test_mode=True, settings=settings, clock_offset_us=0, api_keys=[]
    )
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        await apply_account_snapshot(conn, SCHEMA, snapshot)
    return account_id


def envelope(account_id: str, event, producer: str = "billing", event_id: str | None = None) -> EventEnvelope:
    return EventEnvelope(
        id=event_id or f"evt_{uuid.uuid4().hex}",
        type=type(event).event_type,
        version=1,
        account_id=account_id,
        producer=producer,
        occurred_at=datetime.now(UTC),
        data=event.model_dump(mode="json"),
    )


async def deliver(ctx: HandlerContext, env: EventEnvelope) -> None:
    """One delivery to the notifications actor, as the worker runs it."""
    actor = f"notifications.on_{env.type.replace('.', '_')}"
    await consume(ctx, registry.handlers[actor], env.model_dump(mode="json"))


def messages(sink_dir: Path) -> list[EmailMessage]:
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(p.read_bytes()) for p in sorted(sink_dir.glob("*.eml"))]


def to(msgs: list[EmailMessage], address: str) -> list[EmailMessage]:
    return [m for m in msgs if m["To"] == address]


def subject_of(msg: EmailMessage) -> str:
    """The Subject as a reader sees it: a long one is folded onto the next line, which
    Python's parser returns with the fold's leading space."""
    return str(msg["Subject"]).strip()


def parts(msg: EmailMessage) -> tuple[str, str]:
    """(text, html) of a message, with the line ends as written (SMTP carries CRLF)."""
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


async def ledger(ctx: HandlerContext, account_id: str) -> list[tuple[str, str, str, str]]:
    """(fact, kind, recipient, status) of every row of the account, by kind and recipient."""
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        rows = await conn.fetch(
            f"SELECT fact_key, kind, recipient, status FROM {SCHEMA}.emails "
            "WHERE account_id = $1 ORDER BY kind, recipient",
            account_id,
        )
    return [(r["fact_key"], r["kind"], r["recipient"], r["status"]) for r in rows]


async def rows(ctx: HandlerContext, account_id: str) -> list:
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        return await conn.fetch(f"SELECT * FROM {SCHEMA}.emails WHERE account_id = $1 ORDER BY id", account_id)
