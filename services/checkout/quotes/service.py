"""Quotes paid online (PRODUCT §5): the rules, no HTTP types.

Life of a quote (decisions 51–56):

- **draft** — created and edited (PATCH) freely; references to CRM records are checked
  when it is published.
- **publish** — validates (contact, deal, owner, expiry date not past, currency allowed,
  every item's net price > 0, something due at checkout of at least the minimum charge)
  and freezes what buyers see in ``published`` (+ a row in ``quote_versions``). The page
  address is derived from the quote id, so every version has the same one.
- **recall** — back to draft for editing; the page says the quote is being revised and
  its open checkout session is closed. Refused while a charge may be under way.
- **expired** — a published quote after its ``expires_on`` (the end of that day on the
  account's clock): computed on read; the page says so and checkout answers 410.
- **paid** — the buyer's checkout completed (`mark_paid`, inside the transaction that
  records the payment): ``paid_at`` and ``payment_id``; final.
- **convert** — a published quote's recurring items become subscriptions without online
  payment (``quote.converted`` → billing); the quote is no longer payable online.

Every change publishes a ``quote.updated`` snapshot (crm_sync: the deal's quote card;
notifications: the owner's e-mail when it is paid).
"""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from shared.accounts import Account
from shared.clock import day_start
from shared.config import CommonSettings
from shared.events.models import QuoteConvertedV1, QuoteLine, QuoteUpdatedV1, TaxRateRef
from shared.ids import new_id, token_hash
from shared.outbox import publish_event
from shared.pricing import Discount, PricingError, Summary, line_amount, price
from shared.secrets import derive_token
from shared.web.problem import Conflict, Gone, NotFound, ValidationProblem, field_error

from .. import crm_refs
from ..links import service as links
from ..sessions import repository as sessions_repo
from ..sessions import sources
from . import repository as repo
from .schemas import ConvertIn, QuoteCreate, QuoteUpdate

S = "checkout"
PAGE_PURPOSE = "quote-page"
SESSION_PURPOSE = "quote-checkout"
#: Fields a PATCH may set to null.
NULLABLE = ("deal_id", "contact_id", "company_id", "owner_email", "discount", "expires_on", "comments")


class QuoteNotEditable(Conflict):
    slug = "quote-not-editable"


class QuoteNotPayable(Conflict):
    slug = "quote-not-payable"


class QuoteExpired(Gone):
    slug = "quote-expired"


# -- reading --------------------------------------------------------------------------------------
def page_token(settings: CommonSettings, quote_id: str) -> str:
    return derive_token(settings, PAGE_PURPOSE, quote_id)


def page_url(settings: CommonSettings, quote_id: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/quotes/{page_token(settings, quote_id)}"


def local_today(account: Account) -> date:
    return links.today(account)


def is_expired(row: Any, today: date) -> bool:
    published = row["published"]
    return (
        row["status"] == "published"
        and published is not None
        and published.get("expires_on") is not None
        and date.fromisoformat(published["expires_on"]) < today
    )


def status_of(row: Any, today: date) -> str:
    return "expired" if is_expired(row, today) else row["status"]


def _order_discounts(discount: dict | None) -> tuple[Discount, ...]:
    return links.order_discounts({"order_discount": discount} if discount else {})


def summary_of(items: list[dict], currency: str, discount: dict | None, day: date) -> Summary:
    return price(links.pricing_items(items), currency, checkout_day=day, order_discounts=_order_discounts(discount))


def published_summary(row: Any, account: Account) -> dict | None:
    """What the published version costs at checkout today (on the payment day once paid)."""
    published = row["published"]
    if not published:
        return None
    day = local_today(account)
    if row["paid_at"] is not None:
        day = row["paid_at"].astimezone(ZoneInfo(account.settings.time_zone)).date()
    try:
        return summary_of(published["line_items"], published["currency"], published.get("discount"), day).as_api()
    except PricingError:
        return None


# -- the snapshot event ----------------------------------------------------------------------------
def _lines(items: list[dict]) -> list[QuoteLine]:
    lines = []
    for li in items:
        stored = li.get("unit_discount")
        discount = links._discount(stored) if stored else None
        per_unit, amount = line_amount(li["unit_amount"], li["quantity"], discount)
        rate = li.get("tax_rate")
        lines.append(
            QuoteLine(
                line_item_id=li["id"],
                name=li["name"],
                description=li.get("description"),
                quantity=li["quantity"],
                unit_amount=li["unit_amount"],
                unit_discount=per_unit,
                amount=amount,
                tax_rate=TaxRateRef(**rate) if rate else None,
                recurring=li.get("recurring"),
            )
        )
    return lines


async def announce(conn: asyncpg.Connection, account: Account, row: Any, previous_status: str | None) -> None:
    published = row["published"]
    shown = published or {"line_items": row["line_items"], "currency": row["currency"]}
    summary = published_summary(row, account)
    expires_on = (published or {}).get("expires_on") or (row["expires_on"].isoformat() if row["expires_on"] else None)
    await publish_event(
        conn,
        schema=S,
        producer="checkout",
        account_id=account.id,
        event=QuoteUpdatedV1(
            quote_id=row["id"],
            version=row["version"],
            status=row["status"],
            previous_status=previous_status,
            title=row["title"],
            deal_id=row["deal_id"],
            contact_id=row["contact_id"],
            company_id=row["company_id"],
            owner_email=row["owner_email"],
            currency=shown["currency"],
            lines=_lines(shown["line_items"]),
            total_due_now=summary["total_due_now"] if summary else None,
            url=row["page_url"],
            expires_on=date.fromisoformat(expires_on) if expires_on else None,
            published_version=row["published_version"],
            published_at=row["published_at"],
            paid_at=row["paid_at"],
            payment_id=row["payment_id"],
            converted_at=row["converted_at"],
            test_mode=row["test_mode"],
        ),
        occurred_at=account.clock.now(),
    )


# -- draft -----------------------------------------------------------------------------------------
async def _items(conn: asyncpg.Connection, account: Account, currency: str, items: list) -> list[dict]:
    link_items = [item.as_link_item() for item in items]
    return await links.build_line_items(
        conn, account, currency, link_items, [set(item.model_fields_set) for item in items]
    )


def _discount(body: QuoteCreate | QuoteUpdate) -> dict | None:
    return links._order_discount(body.discount.model_dump(mode="json")) if body.discount else None


async def create(
    conn: asyncpg.Connection, account: Account, settings: CommonSettings, body: QuoteCreate
) -> asyncpg.Record:
    currency = links.check_currency(account, body.currency)
    items = await _items(conn, account, currency, body.line_items)
    now = account.clock.now()
    quote_id = new_id("quote")
    row = await repo.insert_quote(
        conn,
        id=quote_id,
        account_id=account.id,
        status="draft",
        title=body.title or "Quote",
        token_hash=token_hash(page_token(settings, quote_id)),
        deal_id=body.deal_id,
        contact_id=body.contact_id,
        company_id=body.company_id,
        owner_email=body.owner_email,
        currency=currency,
        line_items=items,
        discount=_discount(body),
        expires_on=body.expires_on,
        comments=body.comments,
        test_mode=account.test_mode,
        created_at=now,
        updated_at=now,
    )
    await announce(conn, account, row, None)
    return row


def _refuse_unless_draft(row: Any, action: str) -> None:
    if row["status"] == "paid":
        raise QuoteNotEditable(f"This quote is paid; it cannot be {action}.")
    if row["status"] != "draft":
        raise QuoteNotEditable(f"This quote is published; recall it before it can be {action}.")


async def update(conn: asyncpg.Connection, account: Account, row: asyncpg.Record, body: QuoteUpdate) -> asyncpg.Record:
    _refuse_unless_draft(row, "edited")
    given = body.model_fields_set
    nulls = [f for f in ("title", "currency", "line_items") if f in given and getattr(body, f) is None]
    if nulls:
        raise ValidationProblem([{"field": f, "message": "may not be null"} for f in nulls])
    changes: dict[str, Any] = {}
    currency = links.check_currency(account, body.currency) if body.currency else row["currency"]
    if body.line_items is not None:
        changes["line_items"] = await _items(conn, account, currency, body.line_items)
    elif currency != row["currency"]:
        raise field_error("currency", "changing the currency needs the line items again (prices are per currency)")
    changes["currency"] = currency
    if "title" in given:
        changes["title"] = body.title
    for field in NULLABLE:
        if field in given:
            changes[field] = _discount(body) if field == "discount" else getattr(body, field)
    updated = await repo.update_quote(conn, row["id"], changes, account.clock.now())
    await announce(conn, account, updated, row["status"])
    return updated


# -- publish / recall ------------------------------------------------------------------------------
async def _publish_errors(conn: asyncpg.Connection, account: Account, row: Any) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    for kind, field in (("contact", "contact_id"), ("deal", "deal_id"), ("company", "company_id")):
        if row[field] is None:
            if kind != "company":
                errors.append({"field": field, "message": f"a quote needs a {kind} before it is published"})
        elif await crm_refs.find_record(conn, account.id, kind, row[field]) is None:
            errors.append({"field": field, "message": f"no such {kind}"})
    if not row["owner_email"]:
        errors.append({"field": "owner_email", "message": "a quote needs an owner (told when it is paid)"})
    today = local_today(account)
    if row["expires_on"] is None:
        errors.append({"field": "expires_on", "message": "a quote needs an expiration date before it is published"})
    elif row["expires_on"] < today:
        errors.append({"field": "expires_on", "message": f"must not be before today ({today.isoformat()})"})
    return errors


def _check_pricing(account: Account, row: Any) -> None:
    """§5: every item's net price > 0 (items are built that way), the currency allowed,
    and something due at checkout of at least the minimum charge (§3.1)."""
    links.check_currency(account, row["currency"])
    try:
        summary = summary_of(row["line_items"], row["currency"], row["discount"], local_today(account))
    except PricingError as exc:
        raise field_error(exc.field, exc.message) from None
    for index, line in enumerate(summary.lines):
        if line.amount <= 0:
            raise field_error(f"line_items[{index}]", "every item's net price must be more than zero")
    links.check_due_now(summary, row["line_items"], row["currency"])


async def publish(
    conn: asyncpg.Connection, account: Account, settings: CommonSettings, row: asyncpg.Record
) -> asyncpg.Record:
    _refuse_unless_draft(row, "published again")
    errors = await _publish_errors(conn, account, row)
    if errors:
        raise ValidationProblem(errors)
    _check_pricing(account, row)
    now = account.clock.now()
    version = row["published_version"] + 1
    snapshot = {
        "version": version,
        "title": row["title"],
        "currency": row["currency"],
        "line_items": row["line_items"],
        "discount": row["discount"],
        "expires_on": row["expires_on"].isoformat(),
        "comments": row["comments"],
    }
    await repo.insert_version(conn, account.id, row["id"], version, snapshot, now)
    updated = await repo.update_quote(
        conn,
        row["id"],
        {
            "status": "published",
            "published": snapshot,
            "published_version": version,
            "published_at": now,
            "page_url": page_url(settings, row["id"]),
        },
        now,
    )
    await announce(conn, account, updated, row["status"])
    return updated


async def _close_session(conn: asyncpg.Connection, account: Account, row: Any, action: str) -> None:
    if row["session_id"] and await sources.charge_may_be_under_way(conn, account.id, row["session_id"]):
        raise Conflict(f"A payment of this quote is under way; it cannot be {action} now. Try again in a minute.")
    await repo.expire_open_sessions(conn, account.id, row["id"])


async def recall(conn: asyncpg.Connection, account: Account, row: asyncpg.Record) -> asyncpg.Record:
    if row["status"] == "paid":
        raise QuoteNotEditable("This quote is paid; it cannot be recalled.")
    if row["status"] != "published":
        raise QuoteNotEditable("Only a published quote can be recalled.")
    if row["converted_at"] is not None:
        raise QuoteNotEditable("This quote was converted to subscriptions; it cannot be recalled.")
    await _close_session(conn, account, row, "recalled")
    updated = await repo.update_quote(conn, row["id"], {"status": "draft"}, account.clock.now())
    await announce(conn, account, updated, row["status"])
    return updated


# -- conversion ------------------------------------------------------------------------------------
async def convert(conn: asyncpg.Connection, account: Account, row: asyncpg.Record, body: ConvertIn) -> asyncpg.Record:
    if row["status"] != "published":
        raise QuoteNotEditable(f"Only a published quote can be converted (this one is {row['status']}).")
    if row["converted_at"] is not None:
        raise QuoteNotEditable("This quote was converted to subscriptions already.")
    published = row["published"]
    items = published["line_items"]
    if not any(li.get("recurring") for li in items):
        raise QuoteNotEditable("This quote has no recurring items to make subscriptions of.")
    one_time = [li["name"] for li in items if not li.get("recurring")]
    if one_time:
        raise QuoteNotEditable(
            "Only recurring items become subscriptions; this quote also has one-time items ("
            + ", ".join(one_time)
            + "): have the buyer pay it online, or recall it and remove them."
        )
    if body.collection_method == "none" and body.payment_terms_days is not None:
        raise field_error("payment_terms_days", "is for subscriptions collected by invoice (send_invoice)")
    today = local_today(account)
    start = body.start_date or today
    if start < today:
        raise field_error("start_date", f"must not be before today ({today.isoformat()}, the account's date)")
    contact = await crm_refs.find_record(conn, account.id, "contact", row["contact_id"]) if row["contact_id"] else None
    email = (contact or {}).get("data", {}).get("email")
    if not email:
        raise QuoteNotEditable("The quote's contact has no e-mail address to send the invoices to.")
    await _close_session(conn, account, row, "converted")
    terms = body.payment_terms_days if body.collection_method == "send_invoice" else None
    if body.collection_method == "send_invoice" and terms is None:
        terms = 30
    conversion = {"collection_method": body.collection_method, "payment_terms_days": terms, "start_date": start}
    now = account.clock.now()
    updated = await repo.update_quote(
        conn,
        row["id"],
        {"converted_at": now, "conversion": {**conversion, "start_date": start.isoformat()}},
        now,
    )
    data = contact["data"]
    await publish_event(
        conn,
        schema=S,
        producer="checkout",
        account_id=account.id,
        event=QuoteConvertedV1(
            quote_id=row["id"],
            deal_id=row["deal_id"],
            contact_id=row["contact_id"],
            company_id=row["company_id"],
            email=email,
            firstname=data.get("firstname"),
            lastname=data.get("lastname"),
            currency=published["currency"],
            lines=_lines(items),
            test_mode=row["test_mode"],
            **conversion,
        ),
        occurred_at=now,
    )
    await announce(conn, account, updated, row["status"])
    return updated


# -- paying ----------------------------------------------------------------------------------------
def session_settings(account: Account, row: Any) -> dict:
    """The checkout session's settings: the account's link defaults, the quote's
    discount, and the quote's CRM references (for ``purchase.completed``)."""
    published = row["published"]
    settings = links._default_settings(account, published["currency"])
    settings.update(
        {
            "order_discount": published.get("discount"),
            "create_deal": None,
            "deal_id": row["deal_id"],
            "checkout_text": published.get("comments"),
            "after_completion": {"type": "message"},
            "quote": {
                "quote_id": row["id"],
                "title": published["title"],
                "deal_id": row["deal_id"],
                "contact_id": row["contact_id"],
                "company_id": row["company_id"],
                "owner_email": row["owner_email"],
            },
        }
    )
    if not any(f.get("property") == "email" for f in settings.get("contact_fields") or []):
        settings["contact_fields"] = [{"property": "email", "required": True}, *(settings["contact_fields"] or [])]
    return settings


def _session_expiry(account: Account, row: Any, ttl: timedelta) -> timedelta:
    """A session never outlives the quote: it ends with the quote's last day."""
    tz = ZoneInfo(account.settings.time_zone)
    last_day = date.fromisoformat(row["published"]["expires_on"])
    end = day_start(last_day + timedelta(days=1), tz)
    return min(ttl, end - account.clock.now())


async def checkout_session_for(
    conn: asyncpg.Connection, account: Account, settings: CommonSettings, row: asyncpg.Record, ttl: timedelta
) -> str:
    """The session token to pay quote ``row`` (locked): the same open session while it
    lasts (its token is derived, never stored), else a new one."""
    if row["status"] == "paid":
        raise QuoteNotPayable("This quote is paid.")
    if row["status"] == "draft":
        raise QuoteNotPayable("This quote is being revised; please check back later.")
    if is_expired(row, local_today(account)):
        raise QuoteExpired("This quote has expired; please contact the seller for a new one.")
    if row["converted_at"] is not None:
        raise QuoteNotPayable("This quote was turned into a subscription; it is not paid online.")
    reused = await sources.current_session_token(
        conn,
        account,
        settings,
        purpose=SESSION_PURPOSE,
        record=row,
        paid=QuoteNotPayable("This quote has just been paid."),
        noun="quote",
    )
    if reused is not None:
        return reused
    published = row["published"]
    seq = row["session_seq"] + 1
    session_token = derive_token(settings, SESSION_PURPOSE, f"{row['id']}:{seq}")
    now = account.clock.now()
    session = await sessions_repo.insert_session(
        conn,
        id=new_id("cs"),
        account_id=account.id,
        token_hash=token_hash(session_token),
        csrf_token=secrets.token_urlsafe(24),
        source_type="quote",
        source_id=row["id"],
        test_mode=row["test_mode"],
        currency=published["currency"],
        line_items=published["line_items"],
        settings=session_settings(account, row),
        created_at=now,
        expires_at=now + _session_expiry(account, row, ttl),
    )
    await conn.execute(
        f"UPDATE {S}.quotes SET session_id = $2, session_seq = $3 WHERE id = $1", row["id"], session["id"], seq
    )
    return session_token


async def mark_paid(
    conn: asyncpg.Connection, account: Account, quote_id: str, payment_id: str, at: datetime
) -> asyncpg.Record | None:
    """Inside the transaction that records the payment of a quote's session."""
    row = await repo.get_quote(conn, account.id, quote_id, lock=True)
    if row is None:
        raise NotFound("no such quote")
    if row["status"] == "paid":  # one session at a time: cannot happen, but never overwrite
        return None
    changes: dict[str, Any] = {"status": "paid", "paid_at": at, "payment_id": payment_id}
    if row["published"] is None:  # pragma: no cover - a session exists only for a published quote
        raise QuoteNotPayable("an unpublished quote cannot be paid")
    updated = await repo.update_quote(conn, quote_id, changes, at)
    await announce(conn, account, updated, row["status"])
    return updated
