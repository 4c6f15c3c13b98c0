"""Quotes paid online (PRODUCT §5).

Revision ID: 0012
Revises: 0011

A quote is edited as a draft, published (its public page ``/quotes/{token}`` shows the
published version), recalled for editing and published again — a new version at the same
address: the page token is derived from the quote id (`shared.secrets.derive_token`), so
it is never stored and never changes; ``token_hash`` finds the quote before the tenant is
known (``resolve_quote_token``). ``published`` holds what buyers see and pay (items,
discount, expiry) while the draft may be edited after a recall; every publish is kept in
``quote_versions``.

Rules held by the schema:
- ``status`` is draft | published | paid; ``expired`` is computed on read from
  ``published->>'expires_on'`` and the account's clock (like an invoice's ``overdue``);
- a paid quote has its payment and date, and stays paid (the trigger-free rule: the
  service never updates a paid quote, and ``quotes_paid_is_final`` checks the fields);
- one conversion to subscriptions per quote (``converted_at`` set once, by the service
  under the row lock).
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"""CREATE TABLE {s}.quotes (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                version integer NOT NULL DEFAULT 1,
                status text NOT NULL CHECK (status IN ('draft', 'published', 'paid')),
                title text NOT NULL,
                token_hash bytea NOT NULL UNIQUE,
                deal_id text,
                contact_id text,
                company_id text,
                owner_email text,
                currency text NOT NULL,
                line_items jsonb NOT NULL,
                discount jsonb,
                expires_on date,
                comments text,
                published jsonb,
                published_version integer NOT NULL DEFAULT 0,
                page_url text,
                published_at timestamptz,
                paid_at timestamptz,
                payment_id text,
                session_id text,
                session_seq integer NOT NULL DEFAULT 0,
                converted_at timestamptz,
                conversion jsonb,
                test_mode boolean NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                CONSTRAINT quotes_paid_is_final CHECK (
                    status <> 'paid' OR (paid_at IS NOT NULL AND payment_id IS NOT NULL AND published IS NOT NULL)),
                CONSTRAINT quotes_published_has_version CHECK (
                    status = 'draft' OR (published IS NOT NULL AND published_version > 0))
            )""",
            f"CREATE INDEX quotes_account ON {s}.quotes (account_id, id)",
            f"CREATE INDEX quotes_deal ON {s}.quotes (account_id, deal_id)",
            f"""CREATE TABLE {s}.quote_versions (
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                quote_id text NOT NULL REFERENCES {s}.quotes(id),
                version integer NOT NULL,
                snapshot jsonb NOT NULL,
                published_at timestamptz NOT NULL,
                PRIMARY KEY (quote_id, version)
            )""",
            f"""CREATE FUNCTION {s}.resolve_quote_token(p_token_hash bytea)
                RETURNS TABLE (account_id text, quote_id text)
                LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
                AS $$
                BEGIN
                    RETURN QUERY SELECT q.account_id, q.id FROM {s}.quotes q
                        WHERE q.token_hash = p_token_hash AND q.published IS NOT NULL;
                END
                $$""",
            f"REVOKE ALL ON FUNCTION {s}.resolve_quote_token(bytea) FROM PUBLIC",
            *tenant_policy(s, "quotes"),
            *tenant_policy(s, "quote_versions"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
