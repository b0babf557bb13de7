-- Access control (#14). Account records (users, machine tokens, sessions)
-- as typed JSON documents: few, read whole at start.
CREATE TABLE onemap_auth (
    kind text NOT NULL,
    id text NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (kind, id)
);

-- The audit trail (安全审计): append-only, hash-chained (each row carries
-- the previous row's hash and its own over every field; see
-- src/store/auth.rs). seq is given by the writer under the write lock.
CREATE TABLE onemap_audit (
    seq bigint PRIMARY KEY,
    time text NOT NULL,
    actor text NOT NULL,
    role text NOT NULL,
    action text NOT NULL,
    outcome text NOT NULL,
    source text NOT NULL,
    target text NOT NULL,
    detail text NOT NULL,
    prev text NOT NULL,
    hash text NOT NULL
);

CREATE INDEX onemap_audit_actor ON onemap_audit (actor, seq);
CREATE INDEX onemap_audit_action ON onemap_audit (action, seq);
