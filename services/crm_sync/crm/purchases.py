"""What a completed purchase does to companies and deals (PRODUCT §4.2 points 2–3, §9).

Called by the ``purchase.completed`` handler after the buyer's contact is upserted, in
the same transaction (the inbox makes it run once per event):

1. **Company.** A company name given at checkout finds the account's company of that
   name (any case; the one without a domain first, else the oldest) or creates it. The
   contact gets it as its company when it has none (a merchant's choice is kept) and is
   associated with it. The payment is associated with the company: that one, else the
   contact's own company.
2. **Simplified link** (§3.4): the contact, company or deal the link was made from is
   associated with the link (already at the link's creation, ``link_events.py``; again
   here for links made before that, a no-op otherwise); the payment stays with the
   contact whose e-mail paid (§9).
3. **Deal rule** (§3.2), from ``event.deal_rule``:
   - off (``create_deal`` null): the payment, the contact and the company are
     associated with the link's deal (``deal_id``) if it has one that exists;
   - on: if the link has an open deal (its stage is not closed) — the link's own
     ``deal_id`` first, else the newest deal the link created — the payment goes to it;
     otherwise a new deal is created in the chosen pipeline and stage, named after the
     link and the buyer, with the payment's amount and currency, and associated with the
     link, the contact, the company and the payment. Purchases through one link are
     serialised (advisory lock), so two concurrent first payments make one open deal.
   A pipeline or stage that no longer exists falls back to the default pipeline's
   first stage (a stage of another pipeline: that pipeline's first stage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from shared.events.models import DealRule, PurchaseCompletedV1
from shared.ids import new_id
from shared.logging import get_logger

from ..contacts import repository as contacts_repo
from . import records
from . import repository as repo
from .service import ensure_default_pipeline

log = get_logger(__name__)
CRM_RECORD_TYPES = ("contact", "company", "deal")


@dataclass
class PurchaseOutcome:
    contact: Any  # the contact row as it is after the purchase
    company_id: str | None = None
    deal_ids: list[str] = field(default_factory=list)


async def apply_purchase(
    conn: asyncpg.Connection, account_id: str, event: PurchaseCompletedV1, contact: Any, now: datetime
) -> PurchaseOutcome:
    outcome = PurchaseOutcome(contact=contact)
    company_name = (event.contact.company or "").strip()
    if company_name:
        company = await company_named(conn, account_id, company_name[:200], now)
        outcome.company_id = company["id"]
        changed = await contacts_repo.set_company_if_empty(conn, account_id, contact["id"], company["id"], now)
        if changed is not None:
            outcome.contact = changed
        await repo.associate(conn, account_id, "contact", contact["id"], "company", company["id"])
    else:
        outcome.company_id = contact["company_id"]
    if outcome.company_id:
        await repo.associate(conn, account_id, "company", outcome.company_id, "payment", event.payment_id)

    link_id = event.source.get("id") if event.source.get("type") == "payment_link" else None
    record = event.crm_record or {}
    if link_id and record.get("type") in CRM_RECORD_TYPES and isinstance(record.get("id"), str):
        if await repo.existing_ids(conn, account_id, record["type"], [record["id"]]):
            await repo.associate(conn, account_id, record["type"], record["id"], "payment_link", link_id)

    if event.deal_rule is not None:
        deal_id = await apply_deal_rule(conn, account_id, event, event.deal_rule, outcome, now)
        if deal_id:
            outcome.deal_ids.append(deal_id)
    if event.quote is not None:
        await _attach_quote(conn, account_id, event, outcome)
    return outcome


async def _attach_quote(conn: asyncpg.Connection, account_id: str, event: PurchaseCompletedV1, outcome) -> None:
    """A quote paid online (PRODUCT §5): the payment joins the quote's deal (its stage is
    the merchant's to move), and the buyer's contact and company join the deal."""
    quote = event.quote
    if quote is None or not quote.deal_id:
        return
    if not await repo.existing_ids(conn, account_id, "deal", [quote.deal_id]):
        return
    await repo.associate(conn, account_id, "deal", quote.deal_id, "payment", event.payment_id)
    await repo.associate(conn, account_id, "deal", quote.deal_id, "contact", outcome.contact["id"])
    if outcome.company_id:
        await repo.associate(conn, account_id, "deal", quote.deal_id, "company", outcome.company_id)
    outcome.deal_ids.append(quote.deal_id)


async def company_named(conn: asyncpg.Connection, account_id: str, name: str, now: datetime) -> Any:
    """The account's company called ``name`` (any case), created if there is none."""
    company = await repo.find_company_by_name(conn, account_id, name)
    if company is not None:
        return company
    company = await repo.insert_company_named(conn, account_id, new_id("company"), name, now)
    if company is None:  # a concurrent purchase created it
        return await repo.find_company_by_name(conn, account_id, name)
    await records.record_changed(conn, account_id, "company", company, now)
    return company


async def apply_deal_rule(
    conn: asyncpg.Connection,
    account_id: str,
    event: PurchaseCompletedV1,
    rule: DealRule,
    outcome: PurchaseOutcome,
    now: datetime,
) -> str | None:
    """The deal the payment goes to (see the module's docstring), or None."""
    if rule.create_deal is None:
        if not rule.deal_id:
            return None
        deal = await repo.get_deal(conn, account_id, rule.deal_id, for_update=True)
        if deal is None:
            log.warning("the link's deal does not exist", link_id=rule.link_id, deal_id=rule.deal_id)
            return None
    else:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"crm-deal-rule:{account_id}:{rule.link_id}"
        )
        deal = await repo.open_deal_of_link(conn, account_id, rule.link_id, rule.deal_id)
        if deal is None:
            return await _create_deal(conn, account_id, event, rule, outcome, now)
    await _attach(conn, account_id, deal["id"], event, rule, outcome)
    if outcome.company_id and await repo.set_deal_company_if_empty(
        conn, account_id, deal["id"], outcome.company_id, now
    ):
        await records.record_changed(conn, account_id, "deal", await repo.get_deal(conn, account_id, deal["id"]), now)
    return deal["id"]


async def _create_deal(
    conn: asyncpg.Connection,
    account_id: str,
    event: PurchaseCompletedV1,
    rule: DealRule,
    outcome: PurchaseOutcome,
    now: datetime,
) -> str:
    pipeline_id, stage_id = await _pipeline_and_stage(conn, account_id, rule.create_deal or {}, now)
    deal_id = new_id("deal")
    values = {
        "name": deal_name(rule.link_name, event),
        "amount": event.amount,
        "currency": event.currency.upper(),
        "pipeline_id": pipeline_id,
        "stage_id": stage_id,
        "company_id": outcome.company_id,
    }
    await repo.insert_deal(conn, account_id, deal_id, values, now, created_by_link_id=rule.link_id)
    await _attach(conn, account_id, deal_id, event, rule, outcome)
    await records.record_changed(conn, account_id, "deal", await repo.get_deal(conn, account_id, deal_id), now)
    return deal_id


async def _attach(
    conn: asyncpg.Connection,
    account_id: str,
    deal_id: str,
    event: PurchaseCompletedV1,
    rule: DealRule,
    outcome: PurchaseOutcome,
) -> None:
    await repo.associate(conn, account_id, "deal", deal_id, "payment", event.payment_id)
    await repo.associate(conn, account_id, "deal", deal_id, "contact", outcome.contact["id"])
    await repo.associate(conn, account_id, "deal", deal_id, "payment_link", rule.link_id)
    if outcome.company_id:
        await repo.associate(conn, account_id, "deal", deal_id, "company", outcome.company_id)


async def _pipeline_and_stage(
    conn: asyncpg.Connection, account_id: str, chosen: dict, now: datetime
) -> tuple[str, str]:
    pipeline = None
    if isinstance(chosen.get("pipeline"), str):
        pipeline = await repo.get_pipeline(conn, account_id, chosen["pipeline"])
    if pipeline is None or not pipeline["stages"]:
        log.warning("the link's deal pipeline does not exist; using the default", chosen=chosen)
        pipeline = await repo.get_pipeline(conn, account_id, await ensure_default_pipeline(conn, account_id, now))
    stages = pipeline["stages"]
    stage = next((s for s in stages if s["id"] == chosen.get("stage")), None)
    if stage is None:
        log.warning("the link's deal stage is not in its pipeline; using the first stage", chosen=chosen)
        stage = stages[0]
    return pipeline["id"], stage["id"]


def deal_name(link_name: str, event: PurchaseCompletedV1) -> str:
    """``<link name> – <buyer>``; the buyer is their name, else their company, else e-mail."""
    c = event.contact
    buyer = " ".join(p.strip() for p in (c.firstname, c.lastname) if p and p.strip())
    buyer = buyer or (c.company or "").strip() or c.email
    link = link_name.strip() or "Payment link"
    return f"{link} – {buyer}"[:200]
