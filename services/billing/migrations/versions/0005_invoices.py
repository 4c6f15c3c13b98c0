"""Invoices of subscriptions collected by invoice, and their gapless numbers.

Revision ID: 0005
Revises: 0004

Rules held by the schema:
- numbers are gapless per account: ``invoice_sequences.next`` is taken with
  ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` in the transaction that inserts the
  invoices, so a rolled-back issue gives its numbers back (the row lock also serialises
  two issuers of one account), and nothing ever deletes an invoice — a voided invoice
  keeps its number (``UNIQUE (account_id, sequence)`` and ``(account_id, number)``);
- one invoice per payment date of a subscription (``UNIQUE (subscription_id,
  period_index)``), like its charges;
- the totals add up (``total = subtotal − discount + tax``), paid invoices have a paid
  date and void ones a void date;
- the public page's token is stored hashed; ``resolve_invoice_token`` maps it to its
  account before the tenant is known (like ``resolve_payment_method_token``).
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"""CREATE TABLE {s}.invoice_sequences (
                account_id text PRIMARY KEY REFERENCES {s}.accounts(id),
                prefix text NOT NULL CHECK (prefix ~ '^[A-Z0-9]{{1,12}}$'),
                -- The sequence number the next invoice gets.
                next integer NOT NULL CHECK (next >= 1)
            )""",
            f"""CREATE TABLE {s}.invoices (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                number text NOT NULL,
                sequence integer NOT NULL CHECK (sequence >= 1),
                subscription_id text REFERENCES {s}.subscriptions(id),
                -- The subscription's payment date this invoice bills (0 = the anchor).
                period_index integer CHECK (period_index >= 0),
                status text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
                -- Account-local dates: the period's payment date, and that + payment terms.
                issue_date date NOT NULL,
                due_date date NOT NULL CHECK (due_date >= issue_date),
                payment_terms_days integer NOT NULL DEFAULT 0 CHECK (payment_terms_days >= 0),
                currency text NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
                lines jsonb NOT NULL,
                subtotal bigint NOT NULL CHECK (subtotal >= 0),
                discount bigint NOT NULL DEFAULT 0 CHECK (discount >= 0),
                tax bigint NOT NULL DEFAULT 0 CHECK (tax >= 0),
                total bigint NOT NULL CHECK (total >= 0),
                amount_paid bigint NOT NULL DEFAULT 0 CHECK (amount_paid >= 0),
                token_hash bytea NOT NULL UNIQUE,
                token_version integer NOT NULL DEFAULT 1,
                language text NOT NULL DEFAULT 'en',
                locale text NOT NULL DEFAULT 'en_US',
                comments text,
                tax_ids jsonb NOT NULL DEFAULT '[]',
                email text,
                contact jsonb NOT NULL DEFAULT '{{}}',
                contact_id text,
                company_id text,
                billing_address jsonb,
                -- Online payment: {{online_payment, payment_methods, collect_billing_address,
                -- collect_shipping_address}} (PRODUCT §6.5).
                payment_settings jsonb NOT NULL DEFAULT '{{}}',
                -- "Collect the payment method on the first invoice": paying it saves the method.
                collect_payment_method boolean NOT NULL DEFAULT false,
                test_mode boolean NOT NULL,
                version integer NOT NULL DEFAULT 1,
                issued_at timestamptz,
                paid_at timestamptz,
                voided_at timestamptz,
                marked_uncollectible_at timestamptz,
                payment_id text UNIQUE,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                UNIQUE (account_id, number),
                UNIQUE (account_id, sequence),
                UNIQUE (subscription_id, period_index),
                CONSTRAINT invoices_total_adds_up CHECK (total = subtotal - discount + tax),
                CONSTRAINT invoices_paid_has_date CHECK ((status = 'paid') = (paid_at IS NOT NULL)),
                CONSTRAINT invoices_void_has_date CHECK ((status = 'void') = (voided_at IS NOT NULL))
            )""",
            f"CREATE INDEX invoices_account ON {s}.invoices (account_id, id)",
            f"CREATE INDEX invoices_subscription ON {s}.invoices (account_id, subscription_id, period_index)",
            f"CREATE INDEX invoices_status ON {s}.invoices (account_id, status, id)",
            f"""CREATE FUNCTION {s}.resolve_invoice_token(p_token_hash bytea)
                RETURNS TABLE (account_id text, invoice_id text)
                LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
                AS $$
                BEGIN
                    RETURN QUERY SELECT i.account_id, i.id FROM {s}.invoices i WHERE i.token_hash = p_token_hash;
                END
                $$""",
            f"REVOKE ALL ON FUNCTION {s}.resolve_invoice_token(bytea) FROM PUBLIC",
            *tenant_policy(s, "invoice_sequences"),
            *tenant_policy(s, "invoices"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
