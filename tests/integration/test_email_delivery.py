"""Delivery against real SMTP servers that misbehave (PRODUCT §8; decision 84): a
transient refusal or a server that is down is retried with backoff from the row (the
event is acknowledged; the sweep sends it when its time comes), a permanent refusal is
recorded and never retried, a message whose sender died mid-send is sent after its
lease — and every message reaches the server once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from aiosmtpd.controller import Controller

from devtools.infra import free_port
from devtools.mail_sink import FileSink
from services.notifications.emails import repository as repo
from services.notifications.emails.sender import retry_delay, send_claimed, sweep_once
from services.notifications.settings import NotificationsSettings
from shared.db import tenant_tx
from shared.events.models import PurchaseCompletedV1, PurchaseContact, PurchasedItem
from tests.support.mail import SCHEMA, deliver, envelope, messages, new_account, rows

BUYER = "jane@example.com"


class PickySink(FileSink):
    """The devtools sink, refusing some recipients for good (550 at RCPT) and some
    messages (554 at DATA), and the first ``fail_first`` messages for now (451)."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.startswith("reject") for r in envelope.rcpt_tos):
            return "554 5.6.0 Message refused"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_port():
    return free_port()


@pytest.fixture
def notify_settings(dsn, smtp_port):
    return NotificationsSettings(
        database_url=dsn(SCHEMA),
        database_owner_url=dsn(SCHEMA, owner=True),
        smtp_port=smtp_port,
        smtp_timeout_s=5,
        retry_base_s=0.3,
        retry_max_s=1.0,
        sending_lease_s=10,
    )


@pytest.fixture
def start_sink(smtp_port, tmp_path):
    """``start_sink(fail_first=0)`` starts the server on the configured port."""
    started: list[Controller] = []

    def start(fail_first: int = 0) -> Controller:
        controller = Controller(PickySink(tmp_path / "mail", fail_first), hostname="127.0.0.1", port=smtp_port)
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def ctx(notify_ctx):
    return notify_ctx


def purchase(email: str = BUYER) -> PurchaseCompletedV1:
    return PurchaseCompletedV1(
        payment_id=f"pay_{uuid.uuid4().hex[:12]}",
        session_id="cs_1",
        source={"type": "payment_link", "id": "plink_1"},
        amount=2500,
        currency="USD",
        subtotal=2500,
        method_type="card",
        contact=PurchaseContact(email=email),
        items=[PurchasedItem(line_item_id="li_1", name="Beans", quantity=1, unit_amount=2500, amount=2500)],
        paid_at=datetime.now(UTC),
        test_mode=True,
    )


async def sweep_until(ctx, account_id: str, done, timeout: float = 15.0) -> None:
    """The worker's sweep, run here for one account until ``done(rows)``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not done(await rows(ctx, account_id)):
        assert asyncio.get_running_loop().time() < deadline, [dict(r) for r in await rows(ctx, account_id)]
        await sweep_once(ctx, account_id=account_id)
        await asyncio.sleep(0.1)


def test_the_backoff_doubles_up_to_its_ceiling():
    delays = [retry_delay(n, 5.0, 300.0, jitter=0) for n in range(1, 10)]
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert all(4.0 <= retry_delay(1, 5.0, 300.0) <= 5.0 for _ in range(100))
    assert retry_delay(10_000, 5.0, 300.0, jitter=0) == 300


async def test_a_transient_refusal_is_retried_from_the_row_and_sent_once(ctx, start_sink, tmp_path):
    start_sink(fail_first=1)
    account_id = await new_account(ctx, "acct_dlv")
    await deliver(ctx, envelope(account_id, purchase(), producer="checkout"))

    (row,) = await rows(ctx, account_id)
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert "451" in row["last_error"] and row["next_attempt_at"] > row["updated_at"]
    assert row["first_failed_at"] is not None
    assert await sweep_once(ctx, account_id=account_id) == 0  # not due yet: backing off
    await sweep_until(ctx, account_id, lambda rs: rs[0]["status"] == "sent")
    (row,) = await rows(ctx, account_id)
    assert row["attempts"] == 2 and row["last_error"] is None
    (msg,) = messages(tmp_path / "mail")
    assert msg["Message-ID"] == row["message_id"]


async def test_a_server_that_is_down_is_retried_with_growing_waits_until_it_returns(ctx, start_sink, tmp_path):
    account_id = await new_account(ctx, "acct_dlv")
    for _ in range(3):
        await deliver(ctx, envelope(account_id, purchase(), producer="checkout"))
    assert {(r["status"], r["attempts"]) for r in await rows(ctx, account_id)} == {("queued", 1)}

    await sweep_until(ctx, account_id, lambda rs: all(r["attempts"] >= 3 for r in rs))
    for r in await rows(ctx, account_id):
        assert r["status"] == "queued" and "Connect" in r["last_error"]
    # nothing lost while it is down; when it returns, each is sent once
    start_sink()
    await sweep_until(ctx, account_id, lambda rs: all(r["status"] == "sent" for r in rs))
    sent = messages(tmp_path / "mail")
    assert sorted(m["Message-ID"] for m in sent) == sorted(r["message_id"] for r in await rows(ctx, account_id))


async def test_a_permanent_refusal_is_recorded_and_never_retried(ctx, start_sink, tmp_path):
    start_sink()
    account_id = await new_account(ctx, "acct_dlv")
    await deliver(ctx, envelope(account_id, purchase("bounce@example.com"), producer="checkout"))
    await deliver(ctx, envelope(account_id, purchase("reject@example.com"), producer="checkout"))
    await deliver(ctx, envelope(account_id, purchase(), producer="checkout"))

    by_recipient = {r["recipient"]: r for r in await rows(ctx, account_id)}
    assert by_recipient["bounce@example.com"]["status"] == "bounced"
    assert "550" in by_recipient["bounce@example.com"]["last_error"]
    assert by_recipient["reject@example.com"]["status"] == "failed"
    assert "554" in by_recipient["reject@example.com"]["last_error"]
    assert by_recipient[BUYER]["status"] == "sent"
    await asyncio.sleep(1.2)
    assert await sweep_once(ctx, account_id=account_id) == 0
    assert [r["attempts"] for r in await rows(ctx, account_id)] == [1, 1, 1]
    assert [m["To"] for m in messages(tmp_path / "mail")] == [BUYER]


async def test_a_message_failing_past_the_give_up_time_is_failed(ctx, notify_settings):
    ctx.settings = notify_settings.model_copy(update={"give_up_after_s": 0.5})
    account_id = await new_account(ctx, "acct_dlv")
    await deliver(ctx, envelope(account_id, purchase(), producer="checkout"))  # nothing listens
    await sweep_until(ctx, account_id, lambda rs: rs[0]["status"] == "failed")
    (row,) = await rows(ctx, account_id)
    assert row["attempts"] >= 2 and "Connect" in row["last_error"]
    assert await sweep_once(ctx, account_id=account_id) == 0


async def insert_queued(ctx, account_id: str, count: int) -> None:
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        for _ in range(count):
            email_id = f"email_{uuid.uuid4().hex}"
            await conn.execute(
                f"""INSERT INTO {SCHEMA}.emails (id, account_id, kind, fact_key, recipient, subject, html_body,
                        text_body, locale, message_id, created_at)
                    VALUES ($1, $2, 'receipt', 'fact:x', $3, 'Hello', '<p>Hi</p>', 'Hi', 'en', $4, now())""",
                email_id,
                account_id,
                f"{email_id}@example.com",
                f"<{email_id}@commerce.localhost>",
            )


async def test_a_dead_senders_message_is_sent_after_its_lease_once(ctx, start_sink, tmp_path):
    start_sink()
    account_id = await new_account(ctx, "acct_dlv")
    await insert_queued(ctx, account_id, 1)
    async with tenant_tx(ctx.app_pool, account_id) as conn:  # a sender claims it, then dies
        (claimed,) = await repo.claim_fact(conn, account_id, "fact:x", ctx.settings.sending_lease_s)
    assert await sweep_once(ctx, account_id=account_id) == 0  # its lease runs
    async with tenant_tx(ctx.app_pool, account_id) as conn:  # ... out
        await conn.execute(f"UPDATE {SCHEMA}.emails SET next_attempt_at = now() WHERE id = $1", claimed["id"])
    assert await sweep_once(ctx, account_id=account_id) == 1
    assert await sweep_once(ctx, account_id=account_id) == 0
    (row,) = await rows(ctx, account_id)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert [m["Message-ID"] for m in messages(tmp_path / "mail")] == [row["message_id"]]


async def test_a_stopping_sender_gives_back_what_it_has_not_sent(ctx, start_sink, tmp_path):
    start_sink()
    account_id = await new_account(ctx, "acct_dlv")
    await insert_queued(ctx, account_id, 3)
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        claimed = await repo.claim_fact(conn, account_id, "fact:x", ctx.settings.sending_lease_s)
    stop = asyncio.Event()
    stop.set()
    await send_claimed(ctx, claimed, stop)
    assert {(r["status"], r["attempts"]) for r in await rows(ctx, account_id)} == {("queued", 0)}
    assert messages(tmp_path / "mail") == []
    await sweep_until(ctx, account_id, lambda rs: all(r["status"] == "sent" for r in rs))
    assert len(messages(tmp_path / "mail")) == 3
