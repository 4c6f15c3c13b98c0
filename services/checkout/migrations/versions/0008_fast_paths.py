"""Fast paths of the buyer's checkout (TARGETS P1): one round trip each, and resolvers
whose plans are kept.

``open_link_session`` opens a checkout session from a link's slug, and ``load_session``
(with ``tenant_account`` joined LATERAL) reads a session with its account from a session
token hash, each in ONE statement
instead of resolve + BEGIN + set_config + SELECT(s) + INSERT + COMMIT. Both are
SECURITY INVOKER: they call the two SECURITY DEFINER resolvers (secret -> account), set
``app.account_id`` for the rest of the statement's transaction, and then read and write
as the runtime role, so row-level security applies to them exactly as to the Python
code they replace (services/checkout/sessions/fastpath.py).

Revision ID: 0008
Revises: 0007
"""

from shared.migrations import execute_all

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            # The two public-token resolvers (0002), same signatures and results, in PL/pgSQL:
            # a SQL function that is SECURITY DEFINER with a SET clause is never inlined, and
            # PostgreSQL (< 18) plans its body again on every call (~0.1 ms); PL/pgSQL keeps
            # the plan for the life of the connection.
            f"""CREATE OR REPLACE FUNCTION {s}.resolve_link_slug(p_slug text)
                RETURNS TABLE (account_id text, link_id text)
                LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
                AS $$
                BEGIN
                    RETURN QUERY SELECT l.account_id, l.id FROM {s}.payment_links l
                        WHERE l.slug = p_slug AND l.deleted_at IS NULL;
                END
                $$""",
            f"""CREATE OR REPLACE FUNCTION {s}.resolve_session_token(p_token_hash bytea)
                RETURNS TABLE (account_id text, session_id text)
                LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
                AS $$
                BEGIN
                    RETURN QUERY SELECT cs.account_id, cs.id FROM {s}.checkout_sessions cs
                        WHERE cs.token_hash = p_token_hash;
                END
                $$""",
            # outcome: ok | not_found | inactive | test_refused (what open_from_link raises)
            f"""CREATE FUNCTION {s}.open_link_session(
                    p_slug text, p_session_id text, p_token_hash bytea, p_csrf_token text,
                    p_now timestamptz, p_ttl interval, p_test boolean)
                RETURNS text
                LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
                AS $$
                DECLARE
                    v_account text;
                    v_link text;
                    l record;
                    v_now timestamptz;
                BEGIN
                    SELECT r.account_id, r.link_id INTO v_account, v_link FROM {s}.resolve_link_slug(p_slug) r;
                    IF v_account IS NULL THEN
                        RETURN 'not_found';
                    END IF;
                    PERFORM set_config('app.account_id', v_account, true);
                    SELECT pl.id, pl.name, pl.active, pl.currency, pl.line_items, pl.settings,
                           a.test_mode, a.clock_offset_us
                        INTO l
                        FROM {s}.payment_links pl JOIN {s}.accounts a ON a.id = pl.account_id
                        WHERE pl.account_id = v_account AND pl.id = v_link AND pl.deleted_at IS NULL;
                    IF NOT FOUND THEN
                        RETURN 'not_found';
                    END IF;
                    IF NOT l.active THEN
                        RETURN 'inactive';
                    END IF;
                    IF p_test AND EXISTS (
                        SELECT 1 FROM jsonb_array_elements(l.line_items) AS e
                        WHERE coalesce(e -> 'recurring', 'null') NOT IN
                              ('null', 'false', '0', '""', '{{}}', '[]')) THEN
                        RETURN 'test_refused';
                    END IF;
                    v_now := p_now + l.clock_offset_us * interval '1 microsecond';
                    INSERT INTO {s}.checkout_sessions
                        (id, account_id, token_hash, csrf_token, source_type, source_id, test_mode,
                         currency, line_items, settings, created_at, expires_at)
                    VALUES
                        (p_session_id, v_account, p_token_hash, p_csrf_token, 'payment_link', l.id,
                         l.test_mode OR p_test, l.currency, l.line_items,
                         coalesce(l.settings, '{{}}') || jsonb_build_object('link_name', l.name),
                         v_now, v_now + p_ttl);
                    RETURN 'ok';
                END
                $$""",
            f"REVOKE ALL ON FUNCTION {s}.open_link_session(text, text, bytea, text, timestamptz, interval, boolean) "
            "FROM PUBLIC",
            # The session of a token hash (its table's row type, so new columns follow) ...
            f"""CREATE FUNCTION {s}.load_session(p_token_hash bytea)
                RETURNS SETOF {s}.checkout_sessions
                LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
                AS $$
                DECLARE
                    v_account text;
                    v_session text;
                BEGIN
                    SELECT r.account_id, r.session_id INTO v_account, v_session
                        FROM {s}.resolve_session_token(p_token_hash) r;
                    IF v_account IS NULL THEN
                        RETURN;
                    END IF;
                    PERFORM set_config('app.account_id', v_account, true);
                    RETURN QUERY SELECT * FROM {s}.checkout_sessions WHERE account_id = v_account AND id = v_session;
                END
                $$""",
            # ... and the account row, as that account's tenant (joined LATERAL to the above).
            f"""CREATE FUNCTION {s}.tenant_account(p_account_id text)
                RETURNS SETOF {s}.accounts
                LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
                AS $$
                BEGIN
                    PERFORM set_config('app.account_id', p_account_id, true);
                    RETURN QUERY SELECT * FROM {s}.accounts WHERE id = p_account_id;
                END
                $$""",
            f"REVOKE ALL ON FUNCTION {s}.tenant_account(text) FROM PUBLIC",
            f"REVOKE ALL ON FUNCTION {s}.load_session(bytea) FROM PUBLIC",
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
