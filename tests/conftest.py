"""Shared fixtures: real PostgreSQL and Redis (the running ones, or private ones that
devtools.infra starts), one freshly migrated database per test run, and — for the
end-to-end tests — the whole stack on free ports in its own database and Redis
namespace."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from devtools import infra
from devtools.stack import Ports, Stack, StackConfig

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = uuid.uuid4().hex[:8]
ADMIN_URL = os.environ.get("COMMERCE_BOOTSTRAP_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COMMERCE_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def infrastructure() -> tuple[infra.Postgres, infra.Redis]:
    run_dir = ROOT / ".run" / "test-infra"
    return infra.ensure_postgres(ADMIN_URL, run_dir / "postgres"), infra.ensure_redis(REDIS_URL, run_dir / "redis")


@pytest.fixture(scope="session")
def postgres(infrastructure) -> infra.Postgres:
    return infrastructure[0]


@pytest.fixture(scope="session")
def redis_url(infrastructure) -> str:
    return infrastructure[1].url


@pytest.fixture(scope="session")
def database(postgres) -> str:
    """A migrated database of our own for in-process integration tests."""
    from commerce_cli.database import bootstrap, drop_database
    from shared.migrations import upgrade

    name = f"commerce_it_{RUN_ID}"
    asyncio.run(bootstrap(postgres.admin_url(), name))
    for service in ("checkout", "billing", "notifications", "crm_sync"):
        upgrade(service, service, postgres.url(f"commerce_{service}", name))
    yield name
    asyncio.run(drop_database(postgres.admin_url(), name))


@pytest.fixture(scope="session")
def dsn(postgres, database):
    """``dsn(service, owner=False)`` -> connection URL of that service's role."""

    def make(service: str, owner: bool = False) -> str:
        role = f"commerce_{service}" if owner else f"commerce_{service}_app"
        return postgres.url(role, database)

    return make


@pytest.fixture(scope="session")
def stack(tmp_path_factory, infrastructure) -> Stack:
    """The whole system, started once for the end-to-end tests of this run."""
    from commerce_cli.database import drop_database

    pg, redis = infrastructure
    config = StackConfig(
        run_dir=tmp_path_factory.mktemp("stack"),
        database=f"commerce_e2e_{RUN_ID}",
        pg_admin_url=pg.admin_url(),
        redis_url=redis.url,
        namespace=f"commerce-test-{RUN_ID}",
        ports=Ports.free(),
        environment="test",
    )
    running = Stack(config)
    running.prepare()
    try:
        running.start(timeout=90)
        yield running
    finally:
        running.stop()
        asyncio.run(drop_database(pg.admin_url(), config.database))
