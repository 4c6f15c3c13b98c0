"""Payable invoices: checkout's projection of billing's ``invoice.updated``.

The buyer's page of an invoice (billing) posts to ``POST /api/invoices/{token}/checkout``
(checkout), which opens a checkout session for it. This table is what that endpoint
reads: the invoice's lines, total, status and payment settings, by the hash of the
page's token (``resolve_invoice_token`` maps it to its account before the tenant is
known). Snapshots apply in any order: the highest ``version`` wins.

``session_id`` / ``session_seq``: the invoice's current checkout session. A buyer who
presses "Pay online" again gets the same open session (its token is derived from the
invoice id and ``session_seq``, so it is never stored), which is how one invoice is
never paid by two sessions at once.

Revision ID: 0011
Revises: 0010
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"""CREATE TABLE {s}.invoices (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                version integer NOT NULL,
                token_hash bytea NOT NULL UNIQUE,
                number text NOT NULL,
                status text NOT NULL,
                subscription_id text,
                currency text NOT NULL,
                lines jsonb NOT NULL,
                subtotal bigint NOT NULL,
                discount bigint NOT NULL,
                tax bigint NOT NULL,
                total bigint NOT NULL,
                amount_paid bigint NOT NULL,
                due_date date NOT NULL,
                email text,
                language text NOT NULL,
                online_payment boolean NOT NULL,
                payment_methods text[] NOT NULL,
                collect_billing_address boolean NOT NULL,
                collect_shipping_address boolean NOT NULL,
                collect_payment_method boolean NOT NULL,
                test_mode boolean NOT NULL,
                session_id text,
                session_seq integer NOT NULL DEFAULT 0,
                updated_at timestamptz NOT NULL DEFAULT now()
            )""",
            f"CREATE INDEX invoices_account ON {s}.invoices (account_id, id)",
            f"""CREATE FUNCTION {s}.resolve_invoice_token(p_token_hash bytea)
                RETURNS TABLE (account_id text, invoice_id text)
                LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
                AS $$
                BEGIN
                    RETURN QUERY SELECT i.account_id, i.id FROM {s}.invoices i WHERE i.token_hash = p_token_hash;
                END
                $$""",
            f"REVOKE ALL ON FUNCTION {s}.resolve_invoice_token(bytea) FROM PUBLIC",
            *tenant_policy(s, "invoices"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
