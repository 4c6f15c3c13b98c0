"""``commerce`` — accounts, API keys, database bootstrap and migrations.

commerce db bootstrap            create the database, schemas and roles (once)
commerce db migrate [--service]  apply every service's migrations
commerce accounts create --name NAME --currency USD [--test-mode] [--json]
commerce keys create --account ACCT [--scope S ...] [--json]
commerce keys revoke --account ACCT KEY_ID
commerce crm import contacts FILE.csv --account ACCT [--batch-size 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

SERVICE_SETTINGS = {
    "checkout": "services.checkout.settings:CheckoutSettings",
    "billing": "services.billing.settings:BillingSettings",
    "notifications": "services.notifications.settings:NotificationsSettings",
    "crm_sync": "services.crm_sync.settings:CrmSettings",
}


def _settings(service: str):
    import importlib

    module, _, cls = SERVICE_SETTINGS[service].partition(":")
    return getattr(importlib.import_module(module), cls)()


def _fail(message: str, code: int = 2) -> None:
    print(f"commerce: {message}", file=sys.stderr)
    raise SystemExit(code)


def cmd_db_bootstrap(args: argparse.Namespace) -> None:
    from .database import bootstrap

    asyncio.run(bootstrap(args.admin_url, args.database, password=os.environ.get("COMMERCE_DB_ROLE_PASSWORD")))
    print(f"database {args.database!r}: schemas and roles are in place")


def cmd_db_migrate(args: argparse.Namespace) -> None:
    from shared.migrations import upgrade

    for service in args.service or list(SERVICE_SETTINGS):
        settings = _settings(service)
        upgrade(service, service, settings.database_owner_url)
        print(f"{service}: migrated to head")


async def _create_account(args: argparse.Namespace) -> dict:
    from services.checkout.accounts import service
    from shared.db import create_pool
    from shared.web.problem import Problem

    settings = _settings("checkout")
    pool = await create_pool(settings.database_url, application_name="commerce-cli", min_size=1, max_size=2)
    try:
        try:
            account, key, event_id = await service.create_account(
                pool,
                settings.common,
                name=args.name,
                currency=args.currency,
                test_mode=args.test_mode,
                scopes=args.scope or ["*"],
            )
        except Problem as problem:
            _fail(f"{problem.detail} {json.dumps(problem.errors) if problem.errors else ''}".strip())
        if not args.no_wait:
            done = await service.wait_propagated(pool, account.id, [event_id], args.wait_timeout)
            if not done:
                print(
                    "commerce: warning: not every service confirmed the new account yet "
                    "(are the workers and relays running?); the key works in checkout now "
                    "and in the others once they catch up",
                    file=sys.stderr,
                )
        return {"account_id": account.id, "api_key": key, "test_mode": account.test_mode, "name": account.name}
    finally:
        await pool.close()


def cmd_accounts_create(args: argparse.Namespace) -> None:
    result = asyncio.run(_create_account(args))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"account {result['account_id']} ({'test' if result['test_mode'] else 'live'} mode)")
        print(f"API key (shown once): {result['api_key']}")


async def _keys(args: argparse.Namespace) -> dict:
    from services.checkout.accounts import service
    from shared.db import create_pool, tenant_tx

    settings = _settings("checkout")
    pool = await create_pool(settings.database_url, application_name="commerce-cli", min_size=1, max_size=2)
    try:
        async with tenant_tx(pool, args.account) as conn:
            exists = await conn.fetchval("SELECT 1 FROM checkout.accounts WHERE id = $1", args.account)
            if not exists:
                _fail(f"no account {args.account}")
            if args.keys_command == "create":
                key, row, event_id = await service.create_key(conn, args.account, sorted(set(args.scope or ["*"])))
                result = {"key_id": row["id"], "api_key": key, "scopes": list(row["scopes"])}
            else:
                row, event_id = await service.revoke_key(conn, args.account, args.key_id)
                if row is None:
                    _fail(f"no key {args.key_id} on account {args.account}")
                result = {"key_id": row["id"], "revoked_at": row["revoked_at"].isoformat()}
        await service.wait_propagated(pool, args.account, [event_id], args.wait_timeout)
        return result
    finally:
        await pool.close()


def cmd_keys(args: argparse.Namespace) -> None:
    from shared.web.auth import SCOPES

    for scope in args.scope or []:
        if scope not in SCOPES:
            _fail(f"unknown scope {scope!r}; known: {', '.join(SCOPES)}")
    result = asyncio.run(_keys(args))
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


def cmd_crm_import_contacts(args: argparse.Namespace) -> None:
    from .crm_import import command

    raise SystemExit(command(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="commerce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="group", required=True)

    db = sub.add_parser("db", help="database bootstrap and migrations").add_subparsers(dest="db_command", required=True)
    boot = db.add_parser("bootstrap", help="create the database, schemas and roles")
    boot.add_argument(
        "--admin-url",
        default=os.environ.get("COMMERCE_BOOTSTRAP_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    boot.add_argument("--database", default=os.environ.get("COMMERCE_DATABASE_NAME", "commerce"))
    boot.set_defaults(func=cmd_db_bootstrap)
    mig = db.add_parser("migrate", help="apply migrations")
    mig.add_argument("--service", action="append", choices=list(SERVICE_SETTINGS))
    mig.set_defaults(func=cmd_db_migrate)

    accounts = sub.add_parser("accounts", help="accounts").add_subparsers(dest="accounts_command", required=True)
    create = accounts.add_parser("create", help="create an account and its first API key")
    create.add_argument("--name", required=True)
    create.add_argument("--currency", required=True)
    create.add_argument("--test-mode", action="store_true")
    create.add_argument("--scope", action="append", help="scope of the first key (default: *)")
    create.add_argument("--json", action="store_true", help="print one JSON line")
    create.add_argument("--no-wait", action="store_true", help="do not wait for every service to know the account")
    create.add_argument("--wait-timeout", type=float, default=20.0)
    create.set_defaults(func=cmd_accounts_create)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    kc = keys.add_parser("create", help="create an API key")
    kc.add_argument("--account", required=True)
    kc.add_argument("--scope", action="append")
    kc.add_argument("--json", action="store_true")
    kc.add_argument("--wait-timeout", type=float, default=20.0)
    kc.set_defaults(func=cmd_keys)
    kr = keys.add_parser("revoke", help="revoke an API key")
    kr.add_argument("--account", required=True)
    kr.add_argument("key_id")
    kr.add_argument("--json", action="store_true")
    kr.add_argument("--wait-timeout", type=float, default=20.0)
    kr.set_defaults(func=cmd_keys)

    crm = sub.add_parser("crm", help="the CRM").add_subparsers(dest="crm_command", required=True)
    crm_import = crm.add_parser("import", help="bulk imports").add_subparsers(dest="import_command", required=True)
    ic = crm_import.add_parser(
        "contacts",
        help="import contacts from a CSV file (created or updated by e-mail address; re-running changes nothing)",
        description="Exit status: 0 every row imported, 1 some rows refused (the others imported), "
        "2 nothing done, 3 stopped part-way (run the same file again to finish).",
    )
    ic.add_argument("file", help="CSV with a header row (email, firstname, lastname, phone, company, …)")
    ic.add_argument("--account", required=True)
    ic.add_argument("--batch-size", type=int, default=1000, help="rows per transaction (1–1000, default 1000)")
    ic.add_argument("--column", action="append", metavar="HEADER=FIELD", help="map a column (FIELD '-' ignores it)")
    ic.add_argument("--encoding", default="utf-8-sig")
    ic.add_argument("--delimiter", default=",")
    ic.add_argument("--errors", metavar="FILE", help="write every refused row (line, field, message) to this CSV")
    ic.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="default: on a terminal")
    ic.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    ic.set_defaults(func=cmd_crm_import_contacts)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
