"""Processor webhooks: the inbox of received events.

Revision ID: 0004
Revises: 0003

``processor_events`` keeps every verified event the processor posted, once per (account,
processor event id): a repeated delivery finds its row and changes nothing. A new row is
written in the same transaction as the outbox job that makes checkout's worker process
it (``processor_event.received``), before the endpoint answers 2xx.

``receive_processor_events`` does that store-and-enqueue for a batch of events in one
statement (the endpoint commits concurrent requests together, TARGETS P2): per account
in the batch it sets the tenant for row-level security as ``tenant_tx`` does, inserts
the events that are new and, for those only, their outbox rows — the rows
``shared.outbox.publish_event`` writes; it returns the batch positions of the new events.
It runs with the caller's rights (SECURITY INVOKER), so the tenant policy applies.
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    statements = [
        # ``payload`` is the body exactly as signed (re-verifiable later), parsed by the worker.
        f"""CREATE TABLE {s}.processor_events (
            account_id text NOT NULL REFERENCES {s}.accounts(id),
            event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
            type text NOT NULL,
            object_id text,
            livemode boolean,
            payload text NOT NULL,
            processor_created_at timestamptz,
            received_at timestamptz NOT NULL DEFAULT now(),
            status text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'processed', 'ignored')),
            result text,
            processed_at timestamptz,
            PRIMARY KEY (account_id, event_id),
            CONSTRAINT processed_when_done CHECK ((status = 'received') = (processed_at IS NULL))
        )""",
        *tenant_policy(s, "processor_events"),
        f"""CREATE FUNCTION {s}.receive_processor_events(
                p_account_ids text[], p_event_ids text[], p_types text[], p_object_ids text[],
                p_livemodes boolean[], p_created timestamptz[], p_payloads text[], p_jobs text[],
                p_pending text[])
            RETURNS SETOF integer
            LANGUAGE plpgsql SECURITY INVOKER
            SET search_path = pg_catalog, pg_temp
            AS $$
            DECLARE
                v_account text;
            BEGIN
                FOR v_account IN SELECT DISTINCT a FROM unnest(p_account_ids) AS a LOOP
                    PERFORM set_config('app.account_id', v_account, true);
                    RETURN QUERY
                    WITH given AS (
                        SELECT g.account_id, g.event_id, g.type, g.object_id, g.livemode, g.created, g.payload,
                               g.job::jsonb AS job, g.n
                        FROM unnest(p_account_ids, p_event_ids, p_types, p_object_ids, p_livemodes, p_created,
                                    p_payloads, p_jobs)
                            WITH ORDINALITY AS g(account_id, event_id, type, object_id, livemode, created,
                                                 payload, job, n)
                        WHERE g.account_id = v_account
                    ), stored AS (
                        INSERT INTO {s}.processor_events AS e
                            (account_id, event_id, type, object_id, livemode, processor_created_at, payload,
                             status, result, processed_at)
                        SELECT account_id, event_id, type, object_id, livemode, created, payload,
                               CASE WHEN job IS NULL THEN 'ignored' ELSE 'received' END,
                               CASE WHEN job IS NULL THEN 'not an event checkout acts on' END,
                               CASE WHEN job IS NULL THEN now() END
                        FROM given ORDER BY n
                        ON CONFLICT (account_id, event_id) DO NOTHING
                        RETURNING e.event_id
                    ), fresh AS (
                        SELECT given.* FROM given JOIN stored USING (event_id)
                    ), jobs AS (
                        INSERT INTO {s}.outbox (event_id, account_id, type, version, envelope, pending, delivered_at)
                        SELECT job->>'id', account_id, job->>'type', (job->>'version')::int, job, p_pending,
                               CASE WHEN cardinality(p_pending) = 0 THEN now() END
                        FROM fresh WHERE job IS NOT NULL ORDER BY n
                    )
                    SELECT n::integer FROM fresh;
                END LOOP;
            END
            $$""",
    ]
    execute_all(statements)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
