"""The cluster's tables in PostgreSQL, as numbered migrations applied once each.

Every replica applies what is missing when it opens (under an advisory lock, so two
replicas starting together do not race), and `fleetdeck cluster init` does it ahead of
time. All tables live in one schema (`cluster_schema`, default `fleetdeck`), so one
database can hold several clusters, and each test its own.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MIGRATION_LOCK = 0x466C6565  # "Flee": the advisory lock migrations take

# Buckets hold settled spend per (scope, period key) (a store that joins adds what it spent
# before, once: `seeded`); holds are the reservations of calls
# in flight, each with an expiry, so a replica that dies leaks nothing past its lease.
# `reserve` locks the buckets in a fixed order (upserting the first reservation's row),
# then, in a later statement and so a fresh snapshot, sums what is settled and held and
# inserts the holds only when every cap has room: all or none, one round trip.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE buckets (
        scope text NOT NULL,
        period_key text NOT NULL,
        spent bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, period_key)
    );
    CREATE TABLE holds (
        reservation uuid NOT NULL,
        scope text NOT NULL,
        period_key text NOT NULL,
        nanos bigint NOT NULL,
        replica text NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (reservation, scope, period_key)
    );
    CREATE INDEX holds_by_bucket ON holds (scope, period_key, expires_at);
    CREATE TABLE seeded (
        store text PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE settled (
        reservation uuid PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX settled_by_time ON settled (at);
    CREATE TABLE keys (
        key_id text PRIMARY KEY,
        name text NOT NULL UNIQUE,
        environment text NOT NULL,
        key_hash text NOT NULL UNIQUE,
        key_hint text NOT NULL,
        daily_cap double precision,
        monthly_cap double precision,
        routes text[],
        created_at timestamptz NOT NULL,
        created_by text,
        revoked_at timestamptz,
        requests_per_minute integer,
        tokens_per_minute integer,
        concurrent integer
    );
    CREATE TABLE route_stops (
        route text PRIMARY KEY,
        actor text NOT NULL,
        reason text NOT NULL,
        stopped_at timestamptz NOT NULL
    );
    CREATE TABLE replicas (
        replica text PRIMARY KEY,
        url text,
        started_at timestamptz NOT NULL,
        seen_at timestamptz NOT NULL
    );
    CREATE FUNCTION reserve(
        p_reservation uuid, p_scopes text[], p_keys text[], p_caps bigint[],
        p_nanos bigint, p_lease_s double precision, p_replica text
    ) RETURNS TABLE (refused integer, spent bigint, held bigint)
    LANGUAGE plpgsql AS $$
    DECLARE
        i integer;
        v_spent bigint;
        v_held bigint;
    BEGIN
        FOR i IN 1 .. array_length(p_scopes, 1) LOOP  -- the caller sorts the buckets
            INSERT INTO buckets AS b (scope, period_key) VALUES (p_scopes[i], p_keys[i])
            ON CONFLICT (scope, period_key) DO UPDATE SET spent = b.spent;
        END LOOP;
        FOR i IN 1 .. array_length(p_scopes, 1) LOOP
            SELECT b.spent INTO v_spent FROM buckets b
            WHERE b.scope = p_scopes[i] AND b.period_key = p_keys[i];
            SELECT coalesce(sum(h.nanos), 0) INTO v_held FROM holds h
            WHERE h.scope = p_scopes[i] AND h.period_key = p_keys[i] AND h.expires_at > clock_timestamp();
            IF v_spent + v_held + p_nanos > p_caps[i] THEN
                RETURN QUERY SELECT i, v_spent, v_held;
                RETURN;
            END IF;
        END LOOP;
        INSERT INTO holds (reservation, scope, period_key, nanos, replica, expires_at)
        SELECT p_reservation, s, k, p_nanos, p_replica, clock_timestamp() + make_interval(secs => p_lease_s)
        FROM unnest(p_scopes, p_keys) AS w (s, k);
    END $$;
    CREATE FUNCTION settle(p_reservation uuid, p_scopes text[], p_keys text[], p_cost bigint)
    RETURNS boolean
    LANGUAGE plpgsql AS $$
    DECLARE
        i integer;
    BEGIN
        INSERT INTO settled (reservation) VALUES (p_reservation) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN false;  -- settled before: a retried settlement adds nothing
        END IF;
        FOR i IN 1 .. array_length(p_scopes, 1) LOOP
            UPDATE buckets SET spent = spent + p_cost WHERE scope = p_scopes[i] AND period_key = p_keys[i];
        END LOOP;
        DELETE FROM holds WHERE reservation = p_reservation;
        RETURN true;
    END $$;
    """,
    # Rate limits: one row per admitted call and scope (`rate_takes`), its window sliding over
    # `at`; a call in flight holds its concurrency slot until `lease_until` (NULL once released),
    # so a replica that dies frees its slots at the lease's end. `rate_admit` row-locks each
    # scope (`rate_scopes`, in the caller's sorted order), then counts in a fresh snapshot and
    # inserts the takes only when every limit has room: all or none, one round trip.
    """
    CREATE TABLE rate_scopes (scope text PRIMARY KEY);
    CREATE TABLE rate_takes (
        take uuid NOT NULL,
        scope text NOT NULL,
        at timestamptz NOT NULL,
        tokens bigint NOT NULL,
        replica text NOT NULL,
        lease_until timestamptz,
        PRIMARY KEY (take, scope)
    );
    CREATE INDEX rate_takes_by_scope ON rate_takes (scope, at);
    CREATE FUNCTION rate_usage(p_scope text, p_window double precision, p_now timestamptz)
    RETURNS TABLE (requests bigint, tokens bigint, reset_s double precision, in_flight bigint)
    LANGUAGE sql STABLE AS $$
        SELECT count(*) FILTER (WHERE t.at > p_now - make_interval(secs => p_window)),
               coalesce(sum(t.tokens) FILTER (WHERE t.at > p_now - make_interval(secs => p_window)), 0),
               coalesce(extract(epoch FROM
                   min(t.at) FILTER (WHERE t.at > p_now - make_interval(secs => p_window))
                   + make_interval(secs => p_window) - p_now), 0)::double precision,
               count(*) FILTER (WHERE t.lease_until > p_now)
        FROM rate_takes t WHERE t.scope = p_scope
    $$;
    CREATE FUNCTION rate_retry_s(
        p_scope text, p_window double precision, p_now timestamptz, p_kind text, p_room bigint
    ) RETURNS double precision
    LANGUAGE sql STABLE AS $$
        -- requests: when the p_room-th newest take leaves; tokens: when p_room tokens have left
        SELECT coalesce(extract(epoch FROM min(w.at) + make_interval(secs => p_window) - p_now), p_window)
        FROM (
            SELECT t.at, row_number() OVER (ORDER BY t.at DESC) AS newest,
                   sum(t.tokens) OVER (ORDER BY t.at, t.take ROWS UNBOUNDED PRECEDING) AS freed
            FROM rate_takes t
            WHERE t.scope = p_scope AND t.at > p_now - make_interval(secs => p_window)
        ) w
        WHERE (p_kind = 'requests' AND w.newest = p_room) OR (p_kind = 'tokens' AND w.freed >= p_room)
    $$;
    CREATE FUNCTION rate_admit(
        p_take uuid, p_scopes text[], p_windows double precision[], p_requests bigint[],
        p_tokens bigint[], p_concurrent bigint[], p_want bigint, p_lease_s double precision,
        p_replica text
    ) RETURNS TABLE (refused integer, kind text, requests bigint, tokens bigint,
                     reset_s double precision, retry_s double precision)
    LANGUAGE plpgsql AS $$
    DECLARE
        i integer;
        v_now timestamptz;
        u record;
    BEGIN
        FOR i IN 1 .. array_length(p_scopes, 1) LOOP  -- the caller sorts the scopes
            INSERT INTO rate_scopes AS r (scope) VALUES (p_scopes[i])
            ON CONFLICT (scope) DO UPDATE SET scope = r.scope;
        END LOOP;
        v_now := clock_timestamp();
        FOR i IN 1 .. array_length(p_scopes, 1) LOOP
            DELETE FROM rate_takes t WHERE t.scope = p_scopes[i]
                AND t.at <= v_now - make_interval(secs => p_windows[i])
                AND (t.lease_until IS NULL OR t.lease_until <= v_now);
            SELECT * INTO u FROM rate_usage(p_scopes[i], p_windows[i], v_now);
            IF p_concurrent[i] IS NOT NULL AND u.in_flight >= p_concurrent[i] THEN
                RETURN QUERY SELECT i, 'concurrent'::text, u.requests, u.tokens, u.reset_s,
                    1.0::double precision;
                RETURN;
            ELSIF p_requests[i] IS NOT NULL AND u.requests >= p_requests[i] THEN
                RETURN QUERY SELECT i, 'requests'::text, u.requests, u.tokens, u.reset_s,
                    rate_retry_s(p_scopes[i], p_windows[i], v_now, 'requests', p_requests[i]);
                RETURN;
            ELSIF p_tokens[i] IS NOT NULL AND u.tokens + p_want > p_tokens[i] THEN
                RETURN QUERY SELECT i, 'tokens'::text, u.requests, u.tokens, u.reset_s,
                    CASE WHEN p_want > p_tokens[i] THEN p_windows[i]
                    ELSE rate_retry_s(p_scopes[i], p_windows[i], v_now, 'tokens',
                                      u.tokens + p_want - p_tokens[i])
                    END;
                RETURN;
            END IF;
        END LOOP;
        INSERT INTO rate_takes (take, scope, at, tokens, replica, lease_until)
        SELECT p_take, s, v_now, p_want, p_replica, v_now + make_interval(secs => p_lease_s)
        FROM unnest(p_scopes) AS s;
        FOR i IN 1 .. array_length(p_scopes, 1) LOOP
            RETURN QUERY SELECT 0, NULL::text, x.requests, x.tokens, x.reset_s, 0.0::double precision
                FROM rate_usage(p_scopes[i], p_windows[i], v_now) x;
        END LOOP;
    END $$;
    CREATE FUNCTION rate_release(p_take uuid, p_tokens bigint) RETURNS void
    LANGUAGE sql AS $$
        UPDATE rate_takes SET lease_until = NULL, tokens = coalesce(p_tokens, tokens) WHERE take = p_take
    $$;
    """,
    # Prompt versions and pins, tool calls held for a human, breaker ejections. A version's
    # number is taken in PostgreSQL (`prompt_add`, under a per-name advisory lock), so `v3`
    # names the same text on every replica; `p_floor` keeps it above the numbers the
    # caller's own store has used. A held call is published by the replica holding it (with
    # its deadline, `expires_at`) and decided by writing `decision`: the holding replica's
    # sync job applies it. An ejection is kept with the time it ends (`until`).
    """
    CREATE TABLE prompt_versions (
        name text NOT NULL,
        version text NOT NULL,
        number integer NOT NULL,
        hash text NOT NULL,
        template text NOT NULL,
        created_at timestamptz NOT NULL,
        author text,
        replica text,
        PRIMARY KEY (name, version),
        UNIQUE (name, hash)
    );
    CREATE TABLE prompt_pins (
        name text PRIMARY KEY,
        version text NOT NULL,
        actor text NOT NULL,
        pinned_at timestamptz NOT NULL,
        replica text,
        FOREIGN KEY (name, version) REFERENCES prompt_versions (name, version)
    );
    CREATE FUNCTION prompt_add(
        p_name text, p_hash text, p_template text, p_author text, p_floor integer, p_replica text
    ) RETURNS TABLE (o_version text, o_created_at timestamptz, o_author text, o_added boolean)
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('fleetdeck.prompt:' || p_name));
        RETURN QUERY SELECT v.version, v.created_at, v.author, false FROM prompt_versions v
            WHERE v.name = p_name AND v.hash = p_hash;
        IF FOUND THEN
            RETURN;  -- this text is a version already
        END IF;
        RETURN QUERY INSERT INTO prompt_versions AS v
            (name, version, number, hash, template, created_at, author, replica)
            SELECT p_name, 'v' || n.next, n.next, p_hash, p_template, clock_timestamp(), p_author, p_replica
            FROM (SELECT greatest(coalesce(max(x.number), 0), p_floor) + 1 AS next
                  FROM prompt_versions x WHERE x.name = p_name) n
            RETURNING v.version, v.created_at, v.author, true;
    END $$;
    CREATE TABLE approvals (
        approval_id text PRIMARY KEY,
        replica text NOT NULL,
        request_id text NOT NULL,
        route text,
        tool text NOT NULL,
        arguments text NOT NULL,
        requested_by text NOT NULL,
        held_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        decision text,
        decided_by text,
        reason text,
        decided_on text,
        decided_at timestamptz
    );
    CREATE INDEX approvals_by_replica ON approvals (replica);
    CREATE TABLE ejections (
        target text PRIMARY KEY,
        replica text NOT NULL,
        ejected_at timestamptz NOT NULL,
        until timestamptz NOT NULL,
        ejections integer NOT NULL
    );
    """,
)


def check_schema_name(name: str) -> str:
    if not SCHEMA_NAME.match(name):
        raise ValueError(
            f"cluster schema {name!r}: use lower-case letters, digits and '_', starting with a letter or '_'"
        )
    return name


def migrate(conn: psycopg.Connection, schema: str) -> int:
    """Apply the migrations `schema` lacks; the number applied."""
    name = sql.Identifier(check_schema_name(schema))
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(name))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM migrations").fetchone()
        done = int(row[0]) if row else 0
        for version, statements in enumerate(MIGRATIONS[done:], start=done + 1):
            conn.execute(statements.encode())
            conn.execute("INSERT INTO migrations VALUES (%s, now())", [version])
        return len(MIGRATIONS) - done


def applied(conn: psycopg.Connection, schema: str) -> int:
    """The schema's migration version (0: never initialised)."""
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", [f"{check_schema_name(schema)}.migrations"]
    ).fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute(
        sql.SQL("SELECT coalesce(max(version), 0) FROM {}.migrations").format(sql.Identifier(schema))
    ).fetchone()
    return int(found[0]) if found else 0
