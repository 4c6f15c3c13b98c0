"""Alembic, per service schema, with raw SQL migrations.

Each service keeps its versions in ``services/<name>/migrations/versions`` and its
alembic version table inside its own schema. Runs take an advisory lock (two migrators
never interleave), and set ``lock_timeout`` / ``statement_timeout`` so a migration
waiting behind live traffic fails fast instead of queueing every request behind it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def sqlalchemy_url(dsn: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+asyncpg://" + dsn[len(prefix) :]
    return dsn


def alembic_config(service: str, schema: str, owner_dsn: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
    cfg.attributes["schema"] = schema
    cfg.attributes["dsn"] = owner_dsn
    return cfg


def upgrade(service: str, schema: str, owner_dsn: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, schema, owner_dsn), revision)


def current(service: str, schema: str, owner_dsn: str) -> None:
    command.current(alembic_config(service, schema, owner_dsn))


def run_env() -> None:
    """Body of every service's ``migrations/env.py``."""
    from alembic import context
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    cfg = context.config
    schema = cfg.attributes["schema"]
    engine = create_async_engine(sqlalchemy_url(cfg.attributes["dsn"]), poolclass=NullPool)

    def do_run(sync_conn) -> None:
        context.configure(
            connection=sync_conn,
            version_table_schema=schema,
            version_table="alembic_version",
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations(schema=schema)

    async def run() -> None:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SET lock_timeout = '5s'")
            await conn.exec_driver_sql("SET statement_timeout = '10min'")
            await conn.exec_driver_sql(f"SELECT pg_advisory_lock(hashtext('commerce-migrate-{schema}'))")
            await conn.commit()
            try:
                await conn.run_sync(do_run)
                await conn.commit()
            finally:
                await conn.exec_driver_sql(f"SELECT pg_advisory_unlock(hashtext('commerce-migrate-{schema}'))")
                await conn.commit()
        await engine.dispose()

    if context.is_offline_mode():
        raise SystemExit("offline (SQL script) mode is not supported; run against a database")
    asyncio.run(run())


def execute_all(statements: list[str]) -> None:
    """Run raw SQL statements in a migration (no bind-parameter parsing)."""
    from alembic import op

    bind = op.get_bind()
    for statement in statements:
        bind.exec_driver_sql(statement)
