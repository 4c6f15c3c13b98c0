"""Database bootstrap: the database, one schema per service, two roles per service.

Per service ``<svc>``: ``commerce_<svc>`` owns the schema (migrations, relay, sweeps)
and ``commerce_<svc>_app`` is the runtime role — row-level security applies to it, and
it has no privileges on any other service's schema. Needs a role that may create roles
and databases (``COMMERCE_BOOTSTRAP_DATABASE_URL``), once per install.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit, urlunsplit

import asyncpg

SERVICES = {
    "checkout": "checkout",
    "billing": "billing",
    "notifications": "notifications",
    "crm_sync": "crm_sync",
}


def owner_role(service: str) -> str:
    return f"commerce_{service}"


def app_role(service: str) -> str:
    return f"commerce_{service}_app"


def _ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"unsafe identifier {name!r}")
    return f'"{name}"'


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def with_user(dsn: str, user: str, password: str | None = None) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = user + (f":{password}" if password else "") + "@" + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def bootstrap(admin_dsn: str, database: str, *, password: str | None = None) -> None:
    """Idempotent: create what is missing, leave the rest."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        for service in SERVICES:
            for role in (owner_role(service), app_role(service)):
                exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
                verb = "ALTER" if exists else "CREATE"
                clause = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"
                if password:
                    await conn.execute(
                        f"{verb} ROLE {_ident(role)} {clause} PASSWORD $1".replace("$1", _literal(password))
                    )
                else:
                    await conn.execute(f"{verb} ROLE {_ident(role)} {clause}")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f"CREATE DATABASE {_ident(database)}")
    finally:
        await conn.close()

    conn = await asyncpg.connect(with_database(admin_dsn, database))
    try:
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for service, schema in SERVICES.items():
            owner, app = _ident(owner_role(service)), _ident(app_role(service))
            await conn.execute(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {owner}, {app}")
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)} AUTHORIZATION {owner}")
            await conn.execute(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {app}")
            for grant in (
                "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES",
                "GRANT USAGE, SELECT ON SEQUENCES",
                "GRANT EXECUTE ON FUNCTIONS",
            ):
                await conn.execute(
                    f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {_ident(schema)} {grant} TO {app}"
                )
    finally:
        await conn.close()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def drop_database(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_ident(database)} WITH (FORCE)")
    finally:
        await conn.close()


def run(coro) -> None:
    asyncio.run(coro)
