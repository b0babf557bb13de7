-- onemap's own tables in a PostGIS database. Feature tables (one per layer:
-- fid, geom geometry(Geometry,4326) with a GiST index, onemap_version and
-- the typed property columns) are created by the store with the layer.
-- PostGIS itself is enabled by the store before these run.

-- Layer definitions as JSON (titles, zoom ranges and the declared CRS
-- survive), in creation order (pos). last_fid is the largest id ever given
-- in the layer: ids are never reused, even after the newest feature is
-- deleted (what AUTOINCREMENT's sqlite_sequence does in a GeoPackage).
CREATE TABLE onemap_layers (
    name text PRIMARY KEY,
    pos integer NOT NULL,
    def text NOT NULL,
    last_fid bigint NOT NULL DEFAULT 0
);

CREATE TABLE onemap_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

-- The change log. txn is the first seq of the change set a row belongs to.
-- before/after are `json`, not `jsonb`: json keeps the text as written (key
-- order included, so a feature's properties stay in schema order), and
-- queries cast to jsonb where they compare values.
CREATE TABLE onemap_changes (
    seq bigserial PRIMARY KEY,
    txn bigint NOT NULL,
    time text NOT NULL,
    author text NOT NULL,
    reason text NOT NULL,
    layer text NOT NULL,
    fid bigint,
    op text NOT NULL,
    version bigint,
    before json,
    after json
);

CREATE INDEX onemap_changes_feature ON onemap_changes (layer, fid);

-- Followers LISTEN on onemap_changes and read the log past the seq they
-- hold. One notification per statement with its newest seq (not one per
-- row: a bulk change set would queue thousands); delivered at commit.
CREATE FUNCTION onemap_changes_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    SELECT max(seq) INTO newest FROM onemap_new_changes;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('onemap_changes', newest::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER onemap_changes_notify
    AFTER INSERT ON onemap_changes
    REFERENCING NEW TABLE AS onemap_new_changes
    FOR EACH STATEMENT
    EXECUTE FUNCTION onemap_changes_notify();
