"""Refunds and manual payment associations.

Revision ID: 0005
Revises: 0004

The business rules live in the database, so that no code path (an API request, a
processor webhook, a repair script) can break them:
- a payment is never refunded above its amount: ``amount_refunded`` (succeeded refunds)
  plus ``amount_refund_pending`` (refunds whose outcome is not known yet, which reserve
  their amount) never exceed ``amount``;
- a payment's status agrees with its refunds (``refunded`` ⇔ all of it,
  ``partially_refunded`` ⇔ some of it), and only a settled payment has refunds;
- the two counters and the status follow the refund rows by a trigger, so they cannot
  drift from them; a refund's amount never changes and its status leaves ``pending``
  once, for good;
- a refund's processor idempotency key is derived from its id (a generated column), and
  one caller's ``Idempotency-Key`` names at most one refund;
- a manual association is recorded as such (``contact_source`` / ``company_source``,
  ``manual_deal_ids`` ⊆ ``deal_ids``).
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    statements = [
        # -- payments: refund counters, and who associated the CRM records ---------------------
        f"""ALTER TABLE {s}.payments
            ADD COLUMN amount_refund_pending bigint NOT NULL DEFAULT 0
                CONSTRAINT payments_amount_refund_pending_check CHECK (amount_refund_pending >= 0),
            ADD COLUMN contact_source text
                CONSTRAINT payments_contact_source_check CHECK (contact_source IN ('automatic', 'manual')),
            ADD COLUMN company_source text
                CONSTRAINT payments_company_source_check CHECK (company_source IN ('automatic', 'manual')),
            ADD COLUMN manual_deal_ids text[] NOT NULL DEFAULT '{{}}'""",
        f"UPDATE {s}.payments SET contact_source = 'automatic' WHERE contact_id IS NOT NULL",
        f"UPDATE {s}.payments SET company_source = 'automatic' WHERE company_id IS NOT NULL",
        f"""ALTER TABLE {s}.payments
            ADD CONSTRAINT payments_never_refunded_above_amount
                CHECK (amount_refunded + amount_refund_pending <= amount),
            ADD CONSTRAINT payments_status_matches_refunds CHECK (
                CASE status
                    WHEN 'refunded' THEN amount_refunded = amount
                    WHEN 'partially_refunded' THEN amount_refunded > 0 AND amount_refunded < amount
                    ELSE amount_refunded = 0
                END),
            ADD CONSTRAINT payments_refunds_only_when_settled
                CHECK (status IN ('succeeded', 'partially_refunded', 'refunded') OR amount_refund_pending = 0),
            ADD CONSTRAINT payments_manual_contact_is_set
                CHECK (contact_source IS DISTINCT FROM 'manual' OR contact_id IS NOT NULL),
            ADD CONSTRAINT payments_manual_company_is_set
                CHECK (company_source IS DISTINCT FROM 'manual' OR company_id IS NOT NULL),
            ADD CONSTRAINT payments_manual_deals_are_deals CHECK (manual_deal_ids <@ deal_ids)""",
        f"CREATE INDEX payments_created ON {s}.payments (account_id, created_at)",
        f"CREATE INDEX payments_contact ON {s}.payments (account_id, contact_id) WHERE contact_id IS NOT NULL",
        # -- refunds: the row is written before the processor call ----------------------------
        f"""CREATE TABLE {s}.refunds (
            id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES {s}.accounts(id),
            payment_id text NOT NULL REFERENCES {s}.payments(id),
            amount bigint NOT NULL CHECK (amount > 0),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
            idempotency_key text GENERATED ALWAYS AS ('commerce:' || id) STORED,
            request_key text,
            processor_refund_id text UNIQUE,
            failure_reason text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            settled_at timestamptz,
            CONSTRAINT refunds_request_key_once UNIQUE (account_id, request_key),
            CONSTRAINT refunds_settled_when_final CHECK ((status = 'pending') = (settled_at IS NULL)),
            CONSTRAINT refunds_succeeded_at_processor
                CHECK (status <> 'succeeded' OR processor_refund_id IS NOT NULL)
        )""",
        f"CREATE INDEX refunds_payment ON {s}.refunds (account_id, payment_id, id)",
        f"CREATE INDEX refunds_pending ON {s}.refunds (account_id, created_at) WHERE status = 'pending'",
        f"""CREATE FUNCTION {s}.refunds_apply() RETURNS trigger
            LANGUAGE plpgsql AS $$
            DECLARE
                pending_delta bigint := 0;
                refunded_delta bigint := 0;
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    IF NEW.status = 'pending' THEN
                        pending_delta := NEW.amount;
                    ELSIF NEW.status = 'succeeded' THEN
                        refunded_delta := NEW.amount;
                    END IF;
                ELSE
                    IF NEW.amount <> OLD.amount OR NEW.payment_id <> OLD.payment_id
                            OR NEW.account_id <> OLD.account_id OR NEW.currency <> OLD.currency THEN
                        RAISE EXCEPTION 'the amount and payment of refund % never change', OLD.id
                            USING ERRCODE = 'check_violation';
                    END IF;
                    IF NEW.status = OLD.status THEN
                        RETURN NEW;
                    END IF;
                    IF OLD.status <> 'pending' THEN
                        RAISE EXCEPTION 'refund % is already %', OLD.id, OLD.status
                            USING ERRCODE = 'check_violation';
                    END IF;
                    pending_delta := -OLD.amount;
                    IF NEW.status = 'succeeded' THEN
                        refunded_delta := NEW.amount;
                    END IF;
                END IF;
                IF pending_delta = 0 AND refunded_delta = 0 THEN
                    RETURN NEW;
                END IF;
                UPDATE {s}.payments
                   SET amount_refund_pending = amount_refund_pending + pending_delta,
                       amount_refunded = amount_refunded + refunded_delta,
                       status = CASE
                           WHEN refunded_delta = 0 THEN status
                           WHEN amount_refunded + refunded_delta = amount THEN 'refunded'
                           ELSE 'partially_refunded'
                       END
                 WHERE id = NEW.payment_id AND account_id = NEW.account_id;
                RETURN NEW;
            END $$""",
        f"""CREATE TRIGGER refunds_apply AFTER INSERT OR UPDATE ON {s}.refunds
            FOR EACH ROW EXECUTE FUNCTION {s}.refunds_apply()""",
        *tenant_policy(s, "refunds"),
    ]
    execute_all(statements)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
