"""TARGETS P2: the processor webhook endpoint — verify the signature, de-duplicate, store,
enqueue — against a bare aiohttp endpoint that reads a 1 KB POST and does one INSERT.

``python bench/p2_webhook.py [--seconds 5] [--rounds 7] [--connections 32]``

Both servers are one process on uvloop with an asyncpg pool of 10, in a fresh database
with only checkout's schema; the bare one is ``bench/_common.py``'s (``POST /bare``: read
the body, one INSERT), the baseline of P1 too. The same load generator drives both in
the same run: ``wrk`` (Debian's package, closed model, 2 threads), in rounds that
alternate which side goes first. Every webhook request is a
different ~1 KB ``payment_intent.succeeded`` event (so each one is stored and enqueued,
none is a cheap duplicate), signed just before its round with the account's secret; the
bare endpoint gets a 1 KB body of the same shape. The checkout relay and worker do not
run (the outbox rows wait), so only the endpoint is measured.

Prints each round, then ``P2: ratio=… (target ≥ 0.80)`` with the rates and p99s (medians
over the rounds); the webhook rows stored are checked against the requests answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _common as common
from bench import _load as load

TARGET = 0.80
THREADS = 2


def event_body(account_id: str) -> str:
    """A compact Stripe event of about 1 KB with unique ids."""
    intent = "pi_" + secrets.token_hex(12)
    event = {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2017-08-15",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": intent,
                "object": "payment_intent",
                "amount": 2500,
                "amount_received": 2500,
                "capture_method": "automatic_async",
                "client_secret": intent + "_secret_" + secrets.token_hex(8),
                "confirmation_method": "automatic",
                "created": int(time.time()),
                "currency": "eur",
                "customer": "cus_" + secrets.token_hex(7),
                "description": None,
                "latest_charge": "ch_" + secrets.token_hex(12),
                "livemode": False,
                "metadata": {
                    "account_id": account_id,
                    "operation_id": "op_cs_" + secrets.token_hex(13) + "_charge_0",
                    "session_id": "cs_" + secrets.token_hex(13),
                },
                "next_action": None,
                "payment_method": "pm_" + secrets.token_hex(12),
                "payment_method_types": ["card"],
                "status": "succeeded",
            }
        },
    }
    body = json.dumps(event, separators=(",", ":"))
    event["data"]["object"]["description"] = "x" * max(0, 1024 - len(body) - 2)
    return json.dumps(event, separators=(",", ":"))


def write_requests(prefix: str, account_id: str, secret: str, count: int) -> None:
    from shared.processor.webhooks import sign

    per_thread = count // THREADS + 1
    for thread in range(THREADS):
        with open(f"{prefix}-{thread}.txt", "w") as out:
            now = int(time.time())
            for _ in range(per_thread):
                body = event_body(account_id)
                out.write(f"{sign(body, secret, now)}\t{body}\n")


async def create_account(owner_url: str, secret_key: str) -> tuple[str, str]:
    import asyncpg
    from pydantic import SecretStr

    from shared.config import CommonSettings
    from shared.ids import new_id
    from shared.secrets import encrypt

    account_id, secret = new_id("acct"), "whsec_" + secrets.token_urlsafe(32)
    processor = {
        "type": "test",
        "publishable_key": None,
        "api_base": None,
        "webhook_secret_encrypted": encrypt(CommonSettings(secret_key=SecretStr(secret_key)), secret),
    }
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute(
            "INSERT INTO checkout.accounts (id, version, name, test_mode, settings, processor) "
            "VALUES ($1, 1, 'P2 bench', true, '{}'::jsonb, $2::jsonb)",
            account_id,
            json.dumps(processor),
        )
    finally:
        await conn.close()
    return account_id, secret


async def stored(owner_url: str, account_id: str) -> tuple[int, int]:
    import asyncpg

    await asyncio.sleep(1)  # requests in flight when wrk stopped are committed by now
    conn = await asyncpg.connect(owner_url)
    try:
        row = await conn.fetchrow(  # one statement: one snapshot
            """SELECT (SELECT count(*) FROM checkout.processor_events WHERE account_id = $1) AS events,
                      (SELECT count(*) FROM checkout.outbox WHERE account_id = $1) AS jobs""",
            account_id,
        )
        return row["events"], row["jobs"]
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="keep the bench database and logs")
    args = parser.parse_args()

    from shared.secrets import generate_key

    load.ensure_wrk()
    load.say(f"P2 — processor webhook vs bare aiohttp + one INSERT; load generator: wrk; {load.machine_load()}")
    db = load.bench_database("commerce_bench_p2", ("checkout",))
    work = Path(tempfile.mkdtemp(prefix="commerce-bench-p2-"))
    processes: list[load.Process] = []
    stack = contextlib.ExitStack()
    try:
        secret_key = generate_key()
        owner_url = db.url("commerce_checkout")
        account_id, secret = asyncio.run(create_account(owner_url, secret_key))
        checkout_port = load.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHECKOUT_", "COMMERCE_"))}
        env.update(
            {
                "CHECKOUT_DATABASE_URL": db.url("commerce_checkout_app"),
                "CHECKOUT_DATABASE_OWNER_URL": owner_url,
                "CHECKOUT_HTTP_PORT": str(checkout_port),
                "COMMERCE_SECRET_KEY": secret_key,
                "COMMERCE_ENVIRONMENT": "test",
            }
        )
        processes.append(
            load.Process([load.PYTHON, "-m", "services.checkout", "serve"], env, work / "checkout-serve.log")
        )
        bare_base = stack.enter_context(common.bare_server(db.admin_db_url))  # the baseline P1 uses too
        load.wait_http(f"http://127.0.0.1:{checkout_port}/healthz")

        webhook_url = f"http://127.0.0.1:{checkout_port}/webhooks/stripe/{account_id}"
        bare_url = f"{bare_base}/bare"
        body_file = work / "bare-body.json"
        body_file.write_text(event_body(account_id))
        requests_prefix = str(work / "requests")

        def run_bare(seconds: float) -> load.WrkResult:
            return load.run_wrk(
                bare_url, load.WRK_BODY_LUA, [str(body_file)], seconds=seconds, connections=args.connections
            )

        def run_webhook(seconds: float, expected_rate: float) -> load.WrkResult:
            # Generously more than can be sent (the machine's load changes the rate a lot).
            write_requests(requests_prefix, account_id, secret, max(40_000, int(expected_rate * seconds * 3)))
            return load.run_wrk(
                webhook_url, load.WRK_FILE_LUA, [requests_prefix], seconds=seconds, connections=args.connections
            )

        warm_bare = run_bare(args.warmup)
        warm_hook = run_webhook(args.warmup, warm_bare.rate)
        load.say(f"warm-up: bare {warm_bare.rate:,.0f} req/s, webhook {warm_hook.rate:,.0f} req/s")
        answered = warm_hook.requests
        rounds = []
        for index in range(args.rounds):
            expected = max(warm_hook.rate, *(w.rate for _, w in rounds)) if rounds else warm_hook.rate
            if index % 2 == 0:
                bare = run_bare(args.seconds)
                hook = run_webhook(args.seconds, max(expected, bare.rate))
            else:
                hook = run_webhook(args.seconds, max(expected, warm_bare.rate))
                bare = run_bare(args.seconds)
            answered += hook.requests
            rounds.append((bare, hook))
            load.say(
                f"round {index + 1}: bare {bare.rate:,.0f} req/s (p99 {bare.p99_ms:.1f} ms), "
                f"webhook {hook.rate:,.0f} req/s (p99 {hook.p99_ms:.1f} ms), ratio {hook.rate / bare.rate:.2f}; "
                f"non-2xx {bare.non_2xx}/{hook.non_2xx}, socket errors {bare.socket_errors}/{hook.socket_errors}, "
                f"unique requests reused {hook.wrapped}"
            )
        events, jobs = asyncio.run(stored(owner_url, account_id))
        ratios = sorted(h.rate / b.rate for b, h in rounds)
        ratio = statistics.median(ratios)
        bare_rate = statistics.median(b.rate for b, _ in rounds)
        hook_rate = statistics.median(h.rate for _, h in rounds)
        bare_p99 = statistics.median(b.p99_ms for b, _ in rounds)
        hook_p99 = statistics.median(h.p99_ms for _, h in rounds)
        load.say(
            f"stored: {events:,} events and {jobs:,} outbox jobs for {answered:,} webhook requests answered "
            f"(in-flight requests at a round's end may be stored without being counted)"
        )
        ok = (
            all(b.non_2xx == 0 and h.non_2xx == 0 and h.wrapped == 0 for b, h in rounds)
            and answered <= events <= answered + (args.rounds + 1) * args.connections
            and jobs == events
        )
        load.say(
            f"P2: ratio={ratio:.2f} (target >= {TARGET:.2f}) webhook={hook_rate:,.0f} req/s bare={bare_rate:,.0f} "
            f"req/s p99 webhook={hook_p99:.1f} ms bare={bare_p99:.1f} ms at {args.connections} connections "
            f"(wrk, {args.rounds} rounds of {args.seconds:g}s, medians; round ratios {ratios[0]:.2f}–{ratios[-1]:.2f})"
            f"{'' if ok else ' — CHECKS FAILED'}"
        )
        return 0 if ok else 1
    finally:
        stack.close()
        for process in processes:
            process.stop()
        if args.keep:
            load.say(f"kept: database {db.name}, logs in {work}")
        else:
            load.drop(db)


if __name__ == "__main__":
    raise SystemExit(main())
