"""TARGETS R9 at the database: the runtime role of every service cannot read or write
across accounts, whatever SQL it runs.

Connecting as ``commerce_<svc>_app`` (``dsn(service)``), with rows of two accounts in
every tenant table of the schema (found in information_schema, so a new table is covered
without touching this file; rows are seeded as the schema owner):
- with ``app.account_id`` = A, only A's rows are visible, in every tenant table;
- with no tenant set (a new connection, or a pooled one after a tenant transaction),
  nothing is visible and nothing can be written;
- inserting or re-assigning a row to B while the tenant is A is refused, and B's rows
  can be neither updated nor deleted;
- row-level security can be neither switched off nor dropped by that role;
- another service's schema cannot be read at all;
- the SECURITY DEFINER functions (``authenticate_api_key`` and the public-token
  resolvers) answer only for the key or token given.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from commerce_cli.database import SERVICES
from shared.db import create_pool, set_tenant, tenant_tx

SCHEMAS = dict(SERVICES)  # service -> schema
#: Tables of a service schema that are not per account (and so have no account column).
GLOBAL_TABLES = {"alembic_version"}
#: SECURITY DEFINER functions bypass row-level security: each one is reviewed, listed here.
DEFINER_FUNCTIONS = {
    "checkout": {
        "authenticate_api_key",
        "resolve_link_slug",
        "resolve_session_token",
        "resolve_invoice_token",
        "resolve_quote_token",
    },
    "billing": {"authenticate_api_key", "resolve_payment_method_token", "resolve_invoice_token"},
    "notifications": {"authenticate_api_key"},
    "crm_sync": {"authenticate_api_key"},
}
#: Tables keyed by the account itself (one row each).
ONE_ROW_PER_ACCOUNT = {"accounts", "invoice_sequences", "due_dates"}  # due_dates: one per subscription
#: Values for columns whose CHECK constraints a generic value would not satisfy.
COLUMN_VALUES: dict[str, Any] = {
    "currency": "USD",
    "scopes": ["*"],
    "version": 1,
    "amount": 100,
    "line_items": [],
    "kind": "payment",
    "status": "succeeded",
}
#: The same, where one table's CHECK differs from the column name's usual meaning.
TABLE_VALUES: dict[tuple[str, str], dict[str, Any]] = {
    ("checkout", "crm_records"): {"kind": "deal"},
    ("crm_sync", "pipeline_stages"): {"kind": "open"},
    ("checkout", "refunds"): {"status": "pending", "amount": 1},
    ("checkout", "discount_codes"): {"percent_off": Decimal(10), "code": None},
    ("checkout", "processor_events"): {"status": "received"},
    ("checkout", "payments"): {"email": "rls@example.com"},
    ("billing", "subscriptions"): {
        "status": "active",
        "collection_method": "charge_automatically",
        "payments_made": 0,
    },
    ("billing", "charges"): {"status": "succeeded"},
    ("billing", "reminders"): {"skipped": None},
    ("checkout", "quotes"): {"status": "draft"},
    ("checkout", "quote_versions"): {"version": lambda: next(_counter)},
    ("billing", "invoice_sequences"): {"prefix": "RLS", "next": 1},
    ("billing", "invoices"): {
        "status": "open",
        "subtotal": 100,
        "discount": 0,
        "tax": 0,
        "total": 100,
        "amount_paid": 0,
        "payment_terms_days": 0,
        "issue_date": date(2027, 1, 1),
        "due_date": date(2027, 1, 31),
    },
    ("billing", "charge_attempts"): {"status": "succeeded", "trigger": "due"},
}
RLS_REFUSED = asyncpg.exceptions.InsufficientPrivilegeError  # SQLSTATE 42501


def tenant_column(table: str) -> str:
    return "id" if table == "accounts" else "account_id"


def api_key_for(account_id: str) -> str:
    return f"ck_test_rls_{account_id}"


@dataclass
class Column:
    name: str
    udt: str
    required: bool  # NOT NULL without a default: an insert must give it


@dataclass
class Table:
    schema: str
    name: str
    columns: list[Column]

    @property
    def tenant(self) -> str:
        return tenant_column(self.name)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class World:
    a: str
    b: str
    tables: dict[str, list[Table]] = field(default_factory=dict)  # service -> tenant tables
    seeded: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (schema, table, account) -> rows


_counter = iter(range(1, 10**9))


def sample_value(table: Table, column: Column, account_id: str, known_key: bool = False) -> Any:
    if column.name == table.tenant:
        return account_id
    overrides = TABLE_VALUES.get((table.schema, table.name), {})
    if column.name in overrides:
        if overrides[column.name] is None:  # must be unique and plain: a generated code
            return f"RLS{next(_counter)}"
        if callable(overrides[column.name]):  # must be unique and of another type
            return overrides[column.name]()
        return overrides[column.name]
    if table.name == "api_keys" and column.name == "key_hash" and known_key:
        return hashlib.sha256(api_key_for(account_id).encode()).hexdigest()
    if column.name in COLUMN_VALUES:
        return COLUMN_VALUES[column.name]
    unique = uuid.uuid4().hex[:12]
    by_type = {
        "text": f"rls_{column.name}_{unique}",
        "varchar": f"rls_{column.name}_{unique}",
        "int2": next(_counter) % 30000,
        "int4": next(_counter),
        "int8": next(_counter),
        "numeric": Decimal(1),
        "bool": False,
        "timestamptz": datetime.now(UTC),
        "timestamp": datetime.now(UTC).replace(tzinfo=None),
        "date": date.today(),
        "jsonb": {},
        "json": {},
        "bytea": os.urandom(32),
        "uuid": uuid.uuid4(),
        "_text": [f"rls_{unique}"],
    }
    if column.udt not in by_type:
        raise AssertionError(
            f"{table.qualified}.{column.name} has type {column.udt}: teach sample_value() a value for it"
        )
    return by_type[column.udt]


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    table: str
    ref_table: str
    ref_columns: tuple[str, ...]


def insert_sql(
    table: Table, account_id: str, known_key: bool = False, references: dict[str, Any] | None = None
) -> tuple[str, list[Any]]:
    """A row with every required column (and every column a foreign key fills, from
    ``references``); ``known_key``: the account's API key `api_key_for`."""
    references = references or {}
    wanted = TABLE_VALUES.get((table.schema, table.name), {})
    columns = [
        c for c in table.columns if c.required or c.name == table.tenant or c.name in references or c.name in wanted
    ]
    values = [
        references[c.name]
        if c.name in references and c.name != table.tenant
        else sample_value(table, c, account_id, known_key)
        for c in columns
    ]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    names = ", ".join(c.name for c in columns)
    return f"INSERT INTO {table.qualified} ({names}) VALUES ({placeholders}) RETURNING *", values


async def foreign_keys(conn: asyncpg.Connection, schema: str) -> list[ForeignKey]:
    rows = await conn.fetch(
        """SELECT (SELECT relname FROM pg_class WHERE oid = con.conrelid) AS tbl,
                  (SELECT relname FROM pg_class WHERE oid = con.confrelid) AS ref,
                  array_agg(a.attname ORDER BY k.ord) AS cols,
                  array_agg(af.attname ORDER BY k.ord) AS refcols
           FROM pg_constraint con
           CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(attnum, fattnum, ord)
           JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
           JOIN pg_attribute af ON af.attrelid = con.confrelid AND af.attnum = k.fattnum
           WHERE con.contype = 'f' AND con.connamespace = $1::regnamespace
           GROUP BY con.oid, con.conrelid, con.confrelid""",
        schema,
    )
    return [ForeignKey(tuple(r["cols"]), r["tbl"], r["ref"], tuple(r["refcols"])) for r in rows]


async def tenant_tables(conn: asyncpg.Connection, schema: str) -> tuple[list[Table], set[str]]:
    """(tables holding an account column, the other tables) of a schema."""
    rows = await conn.fetch(
        """SELECT c.table_name, c.column_name, c.udt_name,
                  (c.is_nullable = 'NO' AND c.column_default IS NULL AND c.is_identity = 'NO'
                   AND c.is_generated = 'NEVER') AS required
           FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'
           ORDER BY c.table_name, c.ordinal_position""",
        schema,
    )
    by_table: dict[str, list[Column]] = {}
    for r in rows:
        by_table.setdefault(r["table_name"], []).append(Column(r["column_name"], r["udt_name"], r["required"]))
    tenant, other = [], set()
    for name, columns in sorted(by_table.items()):
        if tenant_column(name) in {c.name for c in columns}:
            tenant.append(Table(schema, name, columns))
        else:
            other.add(name)
    return tenant, other


def fk_order(tables: list[Table], keys: list[ForeignKey] | None = None) -> list[Table]:
    """Referenced tables before the tables that reference them (accounts first)."""
    by_name = {t.name: t for t in tables}
    needs = {t.name: {k.ref_table for k in keys or [] if k.table == t.name and k.ref_table != t.name} for t in tables}
    ordered: list[Table] = []
    placed: set[str] = set()
    while len(ordered) < len(tables):
        ready = sorted(n for n in by_name if n not in placed and needs[n] <= placed | (needs[n] - set(by_name)))
        if not ready:
            raise AssertionError(f"cyclic foreign keys among {sorted(set(by_name) - placed)}")
        ready.sort(key=lambda n: (n != "accounts", n))
        for name in ready:
            ordered.append(by_name[name])
            placed.add(name)
    return ordered


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def owners(dsn):
    pools = {}
    for service in SCHEMAS:
        pools[service] = await create_pool(dsn(service, owner=True), application_name="rls-owner", max_size=2)
    yield pools
    for pool in pools.values():
        await pool.close()


@pytest.fixture(scope="module")
async def apps(dsn):
    pools = {}
    for service in SCHEMAS:
        pools[service] = await create_pool(dsn(service), application_name="rls-app", max_size=2)
    yield pools
    for pool in pools.values():
        await pool.close()


@pytest.fixture(scope="module")
async def world(owners) -> World:
    """Two accounts with a row (or two) in every tenant table of every schema."""
    run = uuid.uuid4().hex[:10]
    w = World(a=f"acct_rlsa_{run}", b=f"acct_rlsb_{run}")
    for service, schema in SCHEMAS.items():
        async with owners[service].acquire() as conn:
            tables, _ = await tenant_tables(conn, schema)
            assert any(t.name == "accounts" for t in tables), schema
            keys = await foreign_keys(conn, schema)
            w.tables[service] = fk_order(tables, keys)
            first_row: dict[tuple[str, str], asyncpg.Record] = {}  # (table, account) -> a seeded row
            async with conn.transaction():
                for table in w.tables[service]:
                    for account_id, copies in ((w.a, 2), (w.b, 1)):
                        if table.name in ONE_ROW_PER_ACCOUNT:
                            copies = 1
                        # Columns a foreign key fills: from a row of the same account in the referenced table.
                        references: dict[str, Any] = {}
                        for key in keys:
                            parent = first_row.get((key.ref_table, account_id))
                            required = {c.name for c in table.columns if c.required}
                            needed = set(key.columns) - {table.tenant} <= required  # leave optional references null
                            if (
                                key.table == table.name
                                and key.ref_table != table.name
                                and parent is not None
                                and needed
                            ):
                                references.update(
                                    {c: parent[r] for c, r in zip(key.columns, key.ref_columns, strict=True)}
                                )
                        for copy in range(copies):
                            sql, values = insert_sql(table, account_id, known_key=copy == 0, references=references)
                            try:
                                row = await conn.fetchrow(sql, *values)
                                first_row.setdefault((table.name, account_id), row)
                            except asyncpg.PostgresError as exc:
                                raise AssertionError(
                                    f"cannot seed {table.qualified} ({exc}); add the column to COLUMN_VALUES"
                                ) from exc
                            key = (schema, table.name, account_id)
                            w.seeded[key] = w.seeded.get(key, 0) + 1
    yield w
    for service, schema in SCHEMAS.items():
        async with owners[service].acquire() as conn, conn.transaction():
            for table in reversed(w.tables[service]):
                await conn.execute(f"DELETE FROM {table.qualified} WHERE {table.tenant} = ANY($1::text[])", [w.a, w.b])


def services():
    return pytest.mark.parametrize("service", list(SCHEMAS))


async def count_rows(conn: asyncpg.Connection, table: Table, account_id: str | None = None) -> tuple[int, int]:
    """(all visible rows, visible rows of other accounts than ``account_id``)."""
    return tuple(
        await conn.fetchrow(
            f"SELECT count(*), count(*) FILTER (WHERE {table.tenant} IS DISTINCT FROM $1) FROM {table.qualified}",
            account_id,
        )
    )


# -- catalogue ------------------------------------------------------------------------------
@services()
async def test_every_table_is_a_tenant_table_with_row_level_security(service, owners, dsn):
    schema = SCHEMAS[service]
    async with owners[service].acquire() as conn:
        tables, other = await tenant_tables(conn, schema)
        assert other <= GLOBAL_TABLES, f"{schema} tables without an account column: {sorted(other - GLOBAL_TABLES)}"
        for table in tables:
            rls = await conn.fetchval("SELECT relrowsecurity FROM pg_class WHERE oid = $1::regclass", table.qualified)
            assert rls, f"{table.qualified}: row-level security is not enabled"
            policies = await conn.fetch(
                "SELECT polcmd::text AS polcmd, pg_get_expr(polqual, polrelid) AS qual, "
                "pg_get_expr(polwithcheck, polrelid) AS chk FROM pg_policy WHERE polrelid = $1::regclass",
                table.qualified,
            )
            assert policies, f"{table.qualified}: no policy"
            for p in policies:
                assert p["polcmd"] == "*", f"{table.qualified}: a policy for one command only"
                for expr in (p["qual"], p["chk"]):
                    assert expr and table.tenant in expr and "app.account_id" in expr, (table.qualified, expr)
    role = dsn(service).split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]
    async with owners[service].acquire() as conn:
        attrs = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", role)
        assert attrs is not None and not attrs["rolsuper"] and not attrs["rolbypassrls"]
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = $1 AND c.relnamespace = $2::regnamespace",
            role,
            schema,
        )
        assert owned == 0, f"{role} owns tables of {schema} (owners are not subject to row-level security)"


# -- reading --------------------------------------------------------------------------------
@services()
async def test_a_tenant_sees_only_its_own_rows_in_every_table(service, apps, world):
    schema = SCHEMAS[service]
    for account_id in (world.a, world.b):
        async with tenant_tx(apps[service], account_id) as conn:
            for table in world.tables[service]:
                visible, others = await count_rows(conn, table, account_id)
                assert others == 0, f"{table.qualified}: tenant {account_id} sees {others} rows of other accounts"
                assert visible == world.seeded[(schema, table.name, account_id)], table.qualified
                by_id = await conn.fetchval(
                    f"SELECT count(*) FROM {table.qualified} WHERE {table.tenant} = $1",
                    world.b if account_id == world.a else world.a,
                )
                assert by_id == 0, f"{table.qualified}: another account's rows found by filtering on them"


@services()
async def test_without_a_tenant_nothing_is_visible(service, apps, dsn, world):
    conn = await asyncpg.connect(dsn(service))  # a connection that never had a tenant
    try:
        for table in world.tables[service]:
            assert (await count_rows(conn, table))[0] == 0, table.qualified
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.account_id', '', true)")
            for table in world.tables[service]:
                assert (await count_rows(conn, table))[0] == 0, table.qualified
    finally:
        await conn.close()
    # A pooled connection after a tenant transaction: the setting was transaction-local.
    async with apps[service].acquire() as conn:
        async with conn.transaction():
            await set_tenant(conn, world.a)
            assert await conn.fetchval(f"SELECT count(*) FROM {SCHEMAS[service]}.accounts") == 1
        assert (await conn.fetchval("SELECT current_setting('app.account_id', true)")) in (None, "")
        for table in world.tables[service]:
            assert (await count_rows(conn, table))[0] == 0, f"{table.qualified} visible after the transaction"


@services()
async def test_without_a_tenant_nothing_can_be_written(service, apps, world):
    for table in world.tables[service]:
        async with apps[service].acquire() as conn:
            sql, values = insert_sql(table, world.a)
            with pytest.raises(RLS_REFUSED):
                async with conn.transaction():
                    await conn.execute(sql, *values)
            async with conn.transaction():
                assert await conn.execute(f"UPDATE {table.qualified} SET {table.tenant} = {table.tenant}") == "UPDATE 0"
                assert await conn.execute(f"DELETE FROM {table.qualified}") == "DELETE 0"


# -- writing --------------------------------------------------------------------------------
@services()
async def test_rows_of_another_account_cannot_be_written(service, apps, owners, world):
    schema = SCHEMAS[service]
    pool = apps[service]
    for table in world.tables[service]:
        # insert a row that belongs to B while the tenant is A
        sql, values = insert_sql(table, world.b)
        with pytest.raises(RLS_REFUSED, match="row-level security"):
            async with tenant_tx(pool, world.a) as conn:
                await conn.execute(sql, *values)
        # move one of A's rows to B
        with pytest.raises(RLS_REFUSED, match="row-level security"):
            async with tenant_tx(pool, world.a) as conn:
                await conn.execute(f"UPDATE {table.qualified} SET {table.tenant} = $1", world.b)
        # B's rows are invisible to updates and deletes
        async with tenant_tx(pool, world.a) as conn:
            touched = await conn.execute(
                f"UPDATE {table.qualified} SET {table.tenant} = {table.tenant} WHERE {table.tenant} = $1", world.b
            )
            assert touched == "UPDATE 0", table.qualified
            assert await conn.execute(f"DELETE FROM {table.qualified} WHERE {table.tenant} = $1", world.b) == (
                "DELETE 0"
            )
    async with owners[service].acquire() as conn:
        for table in world.tables[service]:
            for account_id in (world.a, world.b):
                stored = await conn.fetchval(
                    f"SELECT count(*) FROM {table.qualified} WHERE {table.tenant} = $1", account_id
                )
                assert stored == world.seeded[(schema, table.name, account_id)], (table.qualified, account_id)


@services()
async def test_row_level_security_cannot_be_switched_off_by_the_runtime_role(service, apps, world):
    schema = SCHEMAS[service]
    async with apps[service].acquire() as conn:
        with pytest.raises(RLS_REFUSED):
            async with conn.transaction():
                await conn.execute("SET LOCAL row_security = off")
                await conn.fetchval(f"SELECT count(*) FROM {schema}.accounts")
        for statement in (
            f"ALTER TABLE {schema}.accounts DISABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {schema}.accounts NO FORCE ROW LEVEL SECURITY",
            f"DROP POLICY tenant_isolation ON {schema}.accounts",
            f"CREATE POLICY everything ON {schema}.accounts USING (true)",
            f"CREATE TABLE {schema}.rls_probe (id text)",
            f"CREATE FUNCTION {schema}.rls_probe() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
            f"CREATE VIEW {schema}.rls_probe AS SELECT * FROM {schema}.accounts",
            "SET ROLE " + ("commerce_" + service),
        ):
            with pytest.raises(RLS_REFUSED):
                async with conn.transaction():
                    await conn.execute(statement)


# -- other schemas ---------------------------------------------------------------------------
@services()
async def test_runtime_role_cannot_read_other_services_schemas(service, apps, world):
    async with apps[service].acquire() as conn:
        for other_service, other in SCHEMAS.items():
            if other_service == service:
                continue
            for table in world.tables[other_service]:
                with pytest.raises(RLS_REFUSED, match="permission denied"):
                    async with conn.transaction():
                        await set_tenant(conn, world.a)
                        await conn.fetchval(f"SELECT count(*) FROM {table.qualified}")
            with pytest.raises(RLS_REFUSED, match="permission denied"):
                async with conn.transaction():
                    await conn.fetch(f"SELECT * FROM {other}.authenticate_api_key($1)", "x")
            with pytest.raises(RLS_REFUSED, match="permission denied"):
                async with conn.transaction():
                    await conn.execute(
                        f"INSERT INTO {other}.inbox (event_id, handler, account_id) VALUES ('e','h','a')"
                    )


@services()
async def test_owner_role_cannot_read_other_services_schemas(service, owners, world):
    async with owners[service].acquire() as conn:
        for other_service in SCHEMAS:
            if other_service == service:
                continue
            with pytest.raises(RLS_REFUSED, match="permission denied"):
                await conn.fetchval(f"SELECT count(*) FROM {SCHEMAS[other_service]}.accounts")


# -- SECURITY DEFINER functions ----------------------------------------------------------------
@services()
async def test_security_definer_functions_are_reviewed_and_pinned(service, owners):
    schema = SCHEMAS[service]
    async with owners[service].acquire() as conn:
        rows = await conn.fetch(
            """SELECT p.proname, p.proconfig,
                      coalesce(has_function_privilege('public', p.oid, 'EXECUTE'), false) AS public_exec
               FROM pg_proc p WHERE p.pronamespace = $1::regnamespace AND p.prosecdef""",
            schema,
        )
    names = {r["proname"] for r in rows}
    assert names == DEFINER_FUNCTIONS[service], (
        f"SECURITY DEFINER functions of {schema} changed: review them for cross-account reads, then update "
        f"DEFINER_FUNCTIONS ({sorted(names)})"
    )
    for r in rows:
        assert any(c.startswith("search_path=") for c in r["proconfig"] or []), f"{r['proname']}: no pinned search_path"
        assert not r["public_exec"], f"{r['proname']} is executable by PUBLIC"


@services()
async def test_authenticate_api_key_returns_only_the_keys_own_account(service, apps, owners, world):
    schema = SCHEMAS[service]
    query = f"SELECT * FROM {schema}.authenticate_api_key($1)"

    def key_hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    async with apps[service].acquire() as conn:  # no tenant: as the auth middleware calls it
        for account_id in (world.a, world.b):
            rows = await conn.fetch(query, key_hash(api_key_for(account_id)))
            assert len(rows) == 1, (schema, account_id, rows)
            assert set(rows[0].keys()) == {"key_id", "account_id", "scopes", "test_mode"}
            assert rows[0]["account_id"] == account_id
        for unknown in ("", "x", key_hash("ck_test_unknown"), "' OR true --", "%"):
            assert await conn.fetch(query, unknown) == []
        async with conn.transaction():  # whatever tenant is set, a key resolves to its own account
            await set_tenant(conn, world.a)
            (row,) = await conn.fetch(query, key_hash(api_key_for(world.b)))
            assert row["account_id"] == world.b
    # a revoked key authenticates nothing
    async with owners[service].acquire() as conn:
        await conn.execute(
            f"UPDATE {schema}.api_keys SET revoked_at = now() WHERE key_hash = $1", key_hash(api_key_for(world.b))
        )
    try:
        async with apps[service].acquire() as conn:
            assert await conn.fetch(query, key_hash(api_key_for(world.b))) == []
            assert len(await conn.fetch(query, key_hash(api_key_for(world.a)))) == 1
    finally:
        async with owners[service].acquire() as conn:
            await conn.execute(
                f"UPDATE {schema}.api_keys SET revoked_at = NULL WHERE key_hash = $1", key_hash(api_key_for(world.b))
            )


async def test_public_token_resolvers_answer_only_for_the_token_given(apps, owners, world):
    async with owners["checkout"].acquire() as conn:
        links = await conn.fetch(
            "SELECT id, account_id, slug FROM checkout.payment_links WHERE account_id = ANY($1::text[])",
            [world.a, world.b],
        )
        sessions = await conn.fetch(
            "SELECT id, account_id, token_hash FROM checkout.checkout_sessions WHERE account_id = ANY($1::text[])",
            [world.a, world.b],
        )
    assert links and sessions
    async with apps["checkout"].acquire() as conn:
        for link in links:
            rows = await conn.fetch("SELECT * FROM checkout.resolve_link_slug($1)", link["slug"])
            assert [tuple(r.values()) for r in rows] == [(link["account_id"], link["id"])]
        for session in sessions:
            rows = await conn.fetch("SELECT * FROM checkout.resolve_session_token($1)", session["token_hash"])
            assert [tuple(r.values()) for r in rows] == [(session["account_id"], session["id"])]
        assert await conn.fetch("SELECT * FROM checkout.resolve_link_slug($1)", "no-such-slug") == []
        assert await conn.fetch("SELECT * FROM checkout.resolve_link_slug($1)", "%") == []
        assert await conn.fetch("SELECT * FROM checkout.resolve_session_token($1)", b"\x00" * 32) == []


# -- the figure ----------------------------------------------------------------------------
async def test_r9_database_summary(apps, world, capsys):
    """Every tenant table of every schema, read as every tenant: the count of rows leaked."""
    tables = leaked = 0
    for service, schema in SCHEMAS.items():
        for table in world.tables[service]:
            tables += 1
            for account_id in (world.a, world.b):
                async with tenant_tx(apps[service], account_id) as conn:
                    leaked += (await count_rows(conn, table, account_id))[1]
            async with apps[service].acquire() as conn:
                leaked += (await count_rows(conn, table))[0]
        assert schema
    with capsys.disabled():
        print(f"\nR9 database: tables={tables} rows leaked={leaked}")
    assert tables >= 4 * 6
    assert leaked == 0


async def test_billing_token_resolvers_answer_only_for_the_token_given(apps, owners, world):
    """The update link's and the invoice page's tokens map to one row of one account."""
    async with owners["billing"].acquire() as conn:
        subs = await conn.fetch(
            """UPDATE billing.subscriptions SET pm_token_hash = sha256(convert_to(id, 'UTF8'))
               WHERE account_id = ANY($1::text[]) RETURNING id, account_id, pm_token_hash""",
            [world.a, world.b],
        )
        invoices = await conn.fetch(
            """UPDATE billing.invoices SET token_hash = sha256(convert_to(id || ':inv', 'UTF8'))
               WHERE account_id = ANY($1::text[]) RETURNING id, account_id, token_hash""",
            [world.a, world.b],
        )
    assert subs and invoices
    async with apps["billing"].acquire() as conn:
        for sub in subs:
            rows = await conn.fetch("SELECT * FROM billing.resolve_payment_method_token($1)", sub["pm_token_hash"])
            assert [tuple(r.values()) for r in rows] == [(sub["account_id"], sub["id"])]
        for invoice in invoices:
            rows = await conn.fetch("SELECT * FROM billing.resolve_invoice_token($1)", invoice["token_hash"])
            assert [tuple(r.values()) for r in rows] == [(invoice["account_id"], invoice["id"])]
        assert await conn.fetch("SELECT * FROM billing.resolve_payment_method_token($1)", b"\x00" * 32) == []
        assert await conn.fetch("SELECT * FROM billing.resolve_invoice_token($1)", b"\x00" * 32) == []


async def test_the_quote_page_resolver_answers_only_for_published_quotes(apps, owners, world):
    """A quote's page token maps to one quote of one account, once it has been published."""
    async with owners["checkout"].acquire() as conn:
        quotes = await conn.fetch(
            """UPDATE checkout.quotes SET token_hash = sha256(convert_to(id || ':quote', 'UTF8')),
                      status = 'published', published = '{}', published_version = 1
               WHERE account_id = ANY($1::text[]) RETURNING id, account_id, token_hash""",
            [world.a, world.b],
        )
        draft = await conn.fetchrow(
            """UPDATE checkout.quotes SET status = 'draft', published = NULL, published_version = 0
               WHERE id = $1 RETURNING token_hash""",
            quotes[0]["id"],
        )
    assert len(quotes) >= 2
    async with apps["checkout"].acquire() as conn:
        for quote in quotes[1:]:
            rows = await conn.fetch("SELECT * FROM checkout.resolve_quote_token($1)", quote["token_hash"])
            assert [tuple(r.values()) for r in rows] == [(quote["account_id"], quote["id"])]
        assert await conn.fetch("SELECT * FROM checkout.resolve_quote_token($1)", draft["token_hash"]) == []
        assert await conn.fetch("SELECT * FROM checkout.resolve_quote_token($1)", b"\x00" * 32) == []
