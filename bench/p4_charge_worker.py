"""TARGETS P4: the charge worker — read, charge a local processor, write, publish — against
a dramatiq no-op actor's throughput, same run and worker settings.

``python bench/p4_charge_worker.py [--n 600] [--fake-n 2000] [--noop-n 10000] [--rounds 2]``

Set-up (not timed): a fresh database with billing's schema (`bench/_load.py`); the test
processor (``python -m devtools.test_processor``, localstripe) on a free port, with a few
customers and saved cards made through its API; one test account whose processor is the
test processor; ``rounds × (n + fake-n)`` active monthly subscriptions due today, each with
its charge row (``scheduled``, as the scheduler leaves it); a scratch Redis namespace.

Each round runs three worker processes in turn, each alone on the machine, with the same
settings (`BillingSettings` from the same environment: threads, ``worker_timeout``,
prefetch, middleware, pools) and fed the same way: the round's messages are put on the
``billing`` queue with `shared.broker.enqueue_many` (as the scheduler does) before the
worker starts, and the rate is measured while the queue drains from 10 % to 90 % done
(a message is done when acknowledged: its body leaves ``<ns>:billing.msgs``):

1. **no-op**: this script's ``--worker noop``: `shared.worker.run_worker` with billing's
   event actors and a ``billing.charge`` actor that does nothing;
2. **charge, test processor**: the real billing worker, ``python -m services.billing
   worker``: the charge job (lock the charge, write the attempt, an off-session
   PaymentIntent at the test processor, record the outcome, the subscription's next date,
   ``payment.succeeded`` and the snapshot to the outbox);
3. **charge, in-process fake processor**: this script's ``--worker fake``: the same worker
   code and charge actor, its processor registry replaced by a fake
   `shared.processor.base.PaymentProcessor` that answers at once (idempotent by key) —
   the charge job without the processor's cost, to tell whose throughput it is.

CPU use in the measured window is printed (100 % = one core) for the worker, the
PostgreSQL backends serving it and the test processor; and each round measures the test
processor alone (``n / 2`` charges through the project's Stripe adapter, as many at a time
as the worker has threads): a worker close to that rate, or a test processor near 100 %
CPU, means the test processor is the bottleneck. Every charge must end
``succeeded`` with one attempt (checked). Prints ``P4: ratio=…`` for both processors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _load as load
from bench._common import cpu_seconds

TARGET = 0.40
QUEUE = "billing"
ACCOUNT_ID = "acct_p4bench0000000000000001"
CUSTOMERS = 10

SEED_ACCOUNT = """
INSERT INTO billing.accounts (id, version, name, test_mode, settings, processor)
VALUES ($1, 1, 'P4 bench', true, '{}'::jsonb, '{"type": "test"}'::jsonb)
"""
# Subscriptions due today (their second payment) and their charges, as the scheduler
# creates them; ``$3``/``$4``: customers and saved cards at the test processor.
SEED = """
WITH subs AS (
    INSERT INTO billing.subscriptions (
        id, account_id, status, currency, interval, start_date, payments_made, next_index, next_payment_date,
        amount, subtotal, line_items, email, contact, source_type, source_id, origin_payment_id,
        subscription_group, processor_customer_id, payment_method_id, method_type, test_mode,
        created_at, updated_at)
    SELECT format('sub_p4bench%s', lpad(g::text, 15, '0')), $2, 'active', 'USD', 'monthly',
           (current_date - interval '1 month')::date, 1, 1, current_date, 1500, 1500,
           '[{"name": "Coffee club", "quantity": 1, "unit_amount": 1500, "amount": 1500}]'::jsonb,
           'buyer' || g || '@example.com', jsonb_build_object('email', 'buyer' || g || '@example.com'),
           'payment_link', 'plink_p4bench', 'pay_p4bench' || g, 'g0',
           ($3::text[])[g % cardinality($3::text[]) + 1], ($4::text[])[g % cardinality($4::text[]) + 1],
           'card', true, now() - interval '1 month', now() - interval '1 month'
    FROM generate_series(1, $1) g
    RETURNING id, account_id
)
INSERT INTO billing.charges (id, account_id, subscription_id, period_index, due_date, amount, currency, status,
                             run_at, enqueued_at, created_at, updated_at)
SELECT 'ch_' || md5(id), account_id, id, 1, current_date, 1500, 'USD', 'scheduled',
       current_date::timestamp AT TIME ZONE 'UTC', now(), now(), now()
FROM subs
"""


# -- the worker processes -----------------------------------------------------------------------
def noop_actor(broker, get_context):
    import dramatiq

    from services.billing.charging.scheduler import CHARGE_ACTOR

    async def charge(account_id: str, charge_id: str) -> None:
        return None

    return dramatiq.actor(charge, actor_name=CHARGE_ACTOR, queue_name=QUEUE, broker=broker, max_retries=8)


class FakeProcessor:
    """A `PaymentProcessor` that charges at once, in memory, idempotent by key."""

    def __init__(self) -> None:
        from shared.processor.base import ProcessorConfig

        self.config = ProcessorConfig(type="test", secret_key="sk_fake", publishable_key="pk_fake")
        self.intents: dict[str, object] = {}

    async def charge(self, *, amount, currency, customer_id, payment_method_id, off_session, metadata,
                     idempotency_key, payment_method_types=None):  # fmt: skip
        from shared.processor.base import IntentOutcome

        outcome = self.intents.get(idempotency_key)
        if outcome is None:
            fee = (amount * 29 + 500) // 1000 + 30
            outcome = IntentOutcome(
                id="pi_" + uuid.uuid4().hex[:24],
                status="succeeded",
                amount=amount,
                currency=currency.upper(),
                charge_id="ch_" + uuid.uuid4().hex[:24],
                payment_method_id=payment_method_id,
                payment_method_type="card",
                raw_status="succeeded",
                metadata=dict(metadata),
                fee=fee,
                net=amount - fee,
                balance_currency=currency.upper(),
            )
            self.intents[idempotency_key] = outcome
        return outcome

    async def _unused(self, *args, **kwargs):
        raise NotImplementedError("not used by the charge job")

    find_or_create_customer = create_setup_intent = retrieve_setup_intent = attach_payment_method = _unused
    retrieve_payment_intent = find_payment_intent = create_refund = list_refunds = _unused

    async def close(self) -> None:
        return None


class FakeRegistry:
    def __init__(self) -> None:
        self.processor = FakeProcessor()

    def for_account(self, account, *, test_mode: bool = False) -> FakeProcessor:
        return self.processor

    async def close(self) -> None:
        return None


async def fake_extras(settings) -> dict:
    return {"processors": FakeRegistry()}


def worker_main(kind: str) -> None:
    """``--worker noop|fake``: billing's worker, as `services.billing.worker.run` builds it."""
    from shared.worker import prepare_metrics_dir

    prepare_metrics_dir("billing", "worker")
    from services.billing.charging.tasks import declare_charge_actor
    from services.billing.settings import BillingSettings
    from services.billing.worker import REGISTRIES
    from shared.logging import configure_logging
    from shared.worker import run_worker

    settings = BillingSettings()
    configure_logging(service="billing-worker", level=settings.common.log_level, fmt=settings.common.log_format)
    run_worker(
        settings,
        service="billing",
        schema="billing",
        registries=REGISTRIES,
        declare_extra_actors=noop_actor if kind == "noop" else declare_charge_actor,
        make_extras=None if kind == "noop" else fake_extras,
    )


# -- the driver -----------------------------------------------------------------------------------
def backend_cpu(admin_url: str) -> float:
    """CPU seconds so far of the PostgreSQL backends serving billing workers."""
    from bench._common import _backend_pids

    pids = asyncio.run(_backend_pids(admin_url, "billing-worker"))
    return sum(cpu_seconds(pid) for pid in pids)


@dataclass
class Drain:
    label: str
    messages: int
    rate: float  # messages/s between 10 % and 90 % done
    seconds: float  # 10 % → 90 %
    worker_cpu: float  # share of one core in that window
    database_cpu: float  # the worker's PostgreSQL backends, share of one core
    processor_cpu: float | None


def processor_call(base: str, path: str, form: dict[str, str]) -> dict:
    from shared.processor.registry import TEST_SECRET_KEY

    request = urllib.request.Request(
        base + path,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Authorization": f"Bearer {TEST_SECRET_KEY}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def saved_cards(base: str, count: int) -> tuple[list[str], list[str]]:
    customers, methods = [], []
    for i in range(count):
        customer = processor_call(base, "/v1/customers", {"email": f"p4-{i}@example.com"})["id"]
        method = processor_call(
            base,
            "/v1/payment_methods",
            {
                "type": "card",
                "card[number]": "4242424242424242",
                "card[exp_month]": "12",
                "card[exp_year]": "2034",
                "card[cvc]": "123",
            },
        )["id"]
        processor_call(base, f"/v1/payment_methods/{method}/attach", {"customer": customer})
        customers.append(customer)
        methods.append(method)
    return customers, methods


async def processor_alone(base: str, customers: list[str], methods: list[str], n: int, concurrency: int) -> float:
    """Charges/s of the test processor driven directly (the project's Stripe adapter, as
    many calls at once as a worker has threads, no worker, no database)."""
    from shared.processor.base import ProcessorConfig
    from shared.processor.registry import TEST_PUBLISHABLE_KEY, TEST_SECRET_KEY
    from shared.processor.stripe_adapter import StripeProcessor

    processor = StripeProcessor(
        ProcessorConfig(type="test", secret_key=TEST_SECRET_KEY, publishable_key=TEST_PUBLISHABLE_KEY, api_base=base)
    )
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            outcome = await processor.charge(
                amount=1500,
                currency="USD",
                customer_id=customers[i % len(customers)],
                payment_method_id=methods[i % len(methods)],
                off_session=True,
                metadata={"bench": "p4"},
                idempotency_key=f"p4-alone-{uuid.uuid4().hex}",
            )
            assert outcome.status == "succeeded", outcome

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)
    finally:
        await processor.close()


async def seed(owner_url: str, count: int, customers: list[str], methods: list[str]) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute(SEED_ACCOUNT, ACCOUNT_ID)
        await conn.execute(SEED, count, ACCOUNT_ID, customers, methods)
        await conn.execute("ANALYZE")
        return [r["id"] for r in await conn.fetch("SELECT id FROM billing.charges ORDER BY subscription_id")]
    finally:
        await conn.close()


async def enqueue(redis_url: str, namespace: str, charge_ids: list[str]) -> None:
    import redis.asyncio as aioredis

    from shared.broker import OutgoingMessage, enqueue_many

    client = aioredis.from_url(redis_url)
    try:
        for i in range(0, len(charge_ids), 10_000):
            await enqueue_many(
                client,
                namespace,
                [
                    OutgoingMessage(actor_name="billing.charge", queue_name=QUEUE, args=(ACCOUNT_ID, c))
                    for c in charge_ids[i : i + 10_000]
                ],
            )
    finally:
        await client.aclose()


def drain(label: str, argv: list[str], env: dict, log: Path, redis_url: str, namespace: str, n: int,
          processor_pid: int | None, timeout: float, admin_url: str) -> Drain:  # fmt: skip
    """Start the worker on a full queue; time 10 % → 90 % of the messages acknowledged."""
    import redis

    client = redis.Redis.from_url(redis_url)
    key = f"{namespace}:{QUEUE}.msgs"
    assert client.hlen(key) == n, (client.hlen(key), n)
    worker = load.Process(argv, env, log)
    marks: dict[int, tuple[float, float, float, float]] = {}
    deadline = time.monotonic() + timeout
    try:
        while True:
            done = n - client.hlen(key)
            for pct in (10, 90):
                if pct not in marks and done >= n * pct / 100:
                    marks[pct] = (
                        time.monotonic(),
                        cpu_seconds(worker.popen.pid),
                        cpu_seconds(processor_pid) if processor_pid else 0.0,
                        backend_cpu(admin_url),
                    )
            if 90 in marks:
                break
            if worker.popen.poll() is not None:
                raise RuntimeError(f"{label}: the worker exited ({worker.popen.returncode}); see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: only {done} of {n} messages done in {timeout:.0f} s; see {log}")
            time.sleep(0.01)
        while client.hlen(key) and time.monotonic() < deadline:  # let it finish (not timed)
            time.sleep(0.05)
    finally:
        worker.stop()
        client.close()
    (t10, w10, p10, d10), (t90, w90, p90, d90) = marks[10], marks[90]
    window = t90 - t10
    return Drain(
        label,
        n,
        0.8 * n / window,
        window,
        (w90 - w10) / window,
        (d90 - d10) / window,
        (p90 - p10) / window if processor_pid else None,
    )


async def check_charges(owner_url: str, charge_ids: list[str]) -> tuple[int, int]:
    """(succeeded charges, attempts) among ``charge_ids``."""
    import asyncpg

    conn = await asyncpg.connect(owner_url)
    try:
        succeeded = await conn.fetchval(
            "SELECT count(*) FROM billing.charges WHERE id = ANY($1::text[]) AND status = 'succeeded'", charge_ids
        )
        attempts = await conn.fetchval(
            "SELECT count(*) FROM billing.charge_attempts WHERE charge_id = ANY($1::text[])", charge_ids
        )
        return succeeded, attempts
    finally:
        await conn.close()


def describe(d: Drain) -> str:
    cpu = f"worker CPU {d.worker_cpu:.0%}, its PostgreSQL backends {d.database_cpu:.0%}"
    if d.processor_cpu is not None:
        cpu += f", test processor CPU {d.processor_cpu:.0%}"
    return f"{d.label}: {d.rate:,.0f} msgs/s over {d.seconds:.2f} s ({d.messages:,} messages; {cpu})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="charges per round, test processor")
    parser.add_argument("--fake-n", type=int, default=2000, help="charges per round, in-process fake processor")
    parser.add_argument("--noop-n", type=int, default=10_000, help="no-op messages per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the bench database and logs")
    parser.add_argument("--worker", choices=("noop", "fake"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker)
        return 0

    from devtools import infra
    from shared.secrets import generate_key

    load.say(f"P4 — charge worker vs dramatiq no-op actor; {load.machine_load()}")
    db = load.bench_database("commerce_bench_p4", ("billing",))
    work = Path(tempfile.mkdtemp(prefix="commerce-bench-p4-"))
    redis_url = infra.ensure_redis(
        os.environ.get("COMMERCE_REDIS_URL", "redis://127.0.0.1:6379/0"), load.ROOT / ".run" / "bench-infra" / "redis"
    ).url
    namespace = f"commerce-bench-p4-{uuid.uuid4().hex[:8]}"
    port = load.free_port()
    processor = load.Process(
        [load.PYTHON, "-m", "devtools.test_processor", "--port", str(port)], dict(os.environ), work / "processor.log"
    )
    try:
        base = f"http://127.0.0.1:{port}"
        load.wait_http(f"{base}/js.stripe.com/v3/")
        customers, methods = saved_cards(base, CUSTOMERS)
        per_round = args.n + args.fake_n
        charge_ids = asyncio.run(seed(db.url("commerce_billing"), per_round * args.rounds, customers, methods))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "COMMERCE_"))}
        env.update(
            {
                "BILLING_DATABASE_URL": db.url("commerce_billing_app"),
                "BILLING_DATABASE_OWNER_URL": db.url("commerce_billing"),
                "BILLING_WORKER_METRICS_PORT": "0",
                "COMMERCE_REDIS_URL": redis_url,
                "COMMERCE_BROKER_NAMESPACE": namespace,
                "COMMERCE_TEST_PROCESSOR_URL": base,
                "COMMERCE_SECRET_KEY": generate_key(),
                "COMMERCE_ENVIRONMENT": "test",
                "PYTHONUNBUFFERED": "1",
            }
        )
        script = str(Path(__file__).resolve())
        rounds: list[tuple[Drain, Drain, Drain]] = []
        alone_rates: list[float] = []
        from services.billing.settings import BillingSettings

        threads = BillingSettings().worker_threads
        for r in range(args.rounds):
            mine = charge_ids[r * per_round : (r + 1) * per_round]
            real_ids, fake_ids = mine[: args.n], mine[args.n :]
            noop_ids = [f"ch_noop{r}_{i:08d}" for i in range(args.noop_n)]
            asyncio.run(enqueue(redis_url, namespace, noop_ids))
            noop = drain(
                "no-op actor", [load.PYTHON, script, "--worker", "noop"], env, work / f"noop-{r}.log",
                redis_url, namespace, args.noop_n, None, 600, db.admin_db_url,
            )  # fmt: skip
            asyncio.run(enqueue(redis_url, namespace, real_ids))
            real = drain(
                "charge job, test processor", [load.PYTHON, "-m", "services.billing", "worker"], env,
                work / f"charge-{r}.log", redis_url, namespace, args.n, processor.popen.pid, 1200, db.admin_db_url,
            )  # fmt: skip
            asyncio.run(enqueue(redis_url, namespace, fake_ids))
            fake = drain(
                "charge job, in-process fake processor", [load.PYTHON, script, "--worker", "fake"], env,
                work / f"fake-{r}.log", redis_url, namespace, args.fake_n, None, 1200, db.admin_db_url,
            )  # fmt: skip
            alone = asyncio.run(processor_alone(base, customers, methods, args.n // 2, threads))
            rounds.append((noop, real, fake))
            alone_rates.append(alone)
            load.say(f"round {r + 1}:")
            for d in (noop, real, fake):
                load.say(f"  {describe(d)}")
            load.say(f"  test processor alone ({threads} calls at a time, no worker): {alone:,.0f} charges/s")
            load.say(
                f"  ratios: test processor {real.rate / noop.rate:.3f}, in-process fake processor "
                f"{fake.rate / noop.rate:.3f}"
            )
        succeeded, attempts = asyncio.run(check_charges(db.url("commerce_billing"), charge_ids))
        ok = succeeded == attempts == len(charge_ids)
        real_ratio = statistics.median(real.rate / noop.rate for noop, real, _ in rounds)
        fake_ratio = statistics.median(fake.rate / noop.rate for noop, _, fake in rounds)
        noop_rate = statistics.median(noop.rate for noop, _, _ in rounds)
        real_rate = statistics.median(real.rate for _, real, _ in rounds)
        fake_rate = statistics.median(fake.rate for _, _, fake in rounds)
        processor_cpu = statistics.median(real.processor_cpu or 0.0 for _, real, _ in rounds)
        alone_rate = statistics.median(alone_rates)
        bound = real_rate >= 0.8 * alone_rate or processor_cpu > 0.85
        load.say(
            f"checks: {succeeded:,} of {len(charge_ids):,} charges succeeded with {attempts:,} attempts"
            f"{'' if ok else ' — CHECKS FAILED'}"
        )
        load.say(
            f"P4: ratio={real_ratio:.3f} (target >= {TARGET:.2f}) charges/s={real_rate:,.1f} with the test processor "
            f"(localstripe) vs no-op msgs/s={noop_rate:,.0f} (medians of {args.rounds} rounds; the test processor "
            f"alone does {alone_rate:,.0f} charges/s, its CPU during the run {processor_cpu:.0%} of a core"
            f"{' — THE TEST PROCESSOR IS THE BOTTLENECK' if bound else ': not the bottleneck'})"
        )
        load.say(
            f"P4 (in-process fake processor): ratio={fake_ratio:.3f} (target >= {TARGET:.2f}) "
            f"charges/s={fake_rate:,.1f} vs no-op msgs/s={noop_rate:,.0f}"
        )
        load.say(f"at the end: {load.machine_load()}")
        return 0 if ok else 1
    finally:
        processor.stop()
        try:
            from bench._common import _delete_namespace

            _delete_namespace(redis_url, namespace)
        except Exception as exc:  # pragma: no cover - best effort
            load.say(f"(could not delete Redis namespace {namespace}: {exc!r})")
        if args.keep:
            load.say(f"kept: database {db.name}, logs in {work}")
        else:
            load.drop(db)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
