//! The embedded store: a GeoPackage 1.3 file, through sqlx's SQLite driver.
//!
//! The file is a standard GeoPackage that GDAL and QGIS open as it is: one
//! feature table per layer (`fid` primary key, a `geom` column of GPKG
//! geometry blobs, typed property columns), registered in `gpkg_contents`
//! and `gpkg_geometry_columns` with SRS 4326. Our own bookkeeping lives in
//! three extra tables: `onemap_layers` (the layer definitions as JSON, so
//! titles, zoom ranges and the declared CRS survive), `onemap_changes` (the
//! change log, registered as an attributes table so QGIS can show the audit
//! trail) and `onemap_meta` (key/value).
//!
//! Each feature table also has an `onemap_version` column: the optimistic-lock
//! version, bumped on every change we make.
//!
//! Writes are serialised by a mutex and run in one `BEGIN IMMEDIATE`
//! transaction, so a change set is atomic and the change log's order is the
//! commit order.

use super::auth::{AuditEntry, AuditQuery, AuditRow, AuthRecord, AuthWrite};
use super::{Applied, Change, ChangeSet, LogDetail, Op, Result, Store, StoreError, wkb};
use crate::model::{Feature, LayerDef, PropType, Value};
use async_trait::async_trait;
use futures::TryStreamExt;
use geo::{BoundingRect, Geometry, Rect};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Decode, Row, Sqlite, SqlitePool, Transaction, TypeInfo, ValueRef};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// `PRAGMA application_id` of a GeoPackage: the ASCII bytes "GPKG".
const GPKG_APPLICATION_ID: i64 = 0x4750_4B47;
/// `PRAGMA user_version` for GeoPackage 1.3.0 (GDAL 3.6, on Debian, warns on 1.4).
const GPKG_USER_VERSION: i64 = 10300;
pub const SRS_WGS84: i32 = 4326;

const WGS84_WKT: &str = r#"GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]"#;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL,
  srs_id INTEGER PRIMARY KEY,
  organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL,
  definition TEXT NOT NULL,
  description TEXT
);
CREATE TABLE IF NOT EXISTS gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY,
  data_type TEXT NOT NULL,
  identifier TEXT UNIQUE,
  description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE,
  srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id)
);
CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (
  table_name TEXT NOT NULL,
  column_name TEXT NOT NULL,
  geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL,
  z TINYINT NOT NULL,
  m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT uk_gc_table_name UNIQUE (table_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id)
);
CREATE TABLE IF NOT EXISTS onemap_layers (
  name TEXT PRIMARY KEY NOT NULL,
  pos INTEGER NOT NULL,
  def TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS onemap_meta (
  key TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS onemap_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  txn INTEGER NOT NULL,
  time DATETIME NOT NULL,
  author TEXT NOT NULL,
  reason TEXT NOT NULL,
  layer TEXT NOT NULL,
  fid INTEGER,
  op TEXT NOT NULL,
  version INTEGER,
  before TEXT,
  after TEXT
);
CREATE INDEX IF NOT EXISTS onemap_changes_feature ON onemap_changes(layer, fid);
CREATE TABLE IF NOT EXISTS onemap_auth (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS onemap_audit (
  seq INTEGER PRIMARY KEY NOT NULL,
  time TEXT NOT NULL,
  actor TEXT NOT NULL,
  role TEXT NOT NULL,
  action TEXT NOT NULL,
  outcome TEXT NOT NULL,
  source TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS onemap_audit_actor ON onemap_audit(actor, seq);
CREATE INDEX IF NOT EXISTS onemap_audit_action ON onemap_audit(action, seq);
"#;

/// The GeoPackage store. Cheap to share behind an `Arc`.
pub struct GpkgStore {
    path: PathBuf,
    pool: SqlitePool,
    /// Layer definitions, in creation order; written only under `writer`.
    layers: RwLock<Vec<LayerDef>>,
    /// One writer at a time: keeps id allocation and log order simple.
    writer: tokio::sync::Mutex<()>,
    /// Dropped with the store: stops the checkpointer.
    _stop: tokio::sync::watch::Sender<()>,
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Copies the WAL into the database file every [`CHECKPOINT_EVERY`]
/// (PASSIVE: never waits for readers or writers), until the store is
/// dropped or closed.
async fn checkpointer(pool: SqlitePool, mut stopped: tokio::sync::watch::Receiver<()>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => break,
        }
        if pool.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::debug!("checkpoint: {e}");
        }
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Quotes an identifier for SQL. Names are checked at layer creation, this
/// is belt and braces.
pub(crate) fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Now, as GeoPackage DATETIME wants it (GPKG 1.3 Req 15:
/// `YYYY-MM-DDTHH:MM:SS.SSSZ`).
fn gpkg_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A DATETIME value as the GeoPackage stores it: with milliseconds. Values
/// in memory are RFC 3339 UTC to the second (`format_utc`); anything else
/// (a value another tool wrote) is parsed and rewritten, or left as it is
/// when it is no date-time at all.
fn to_gpkg_datetime(s: &str) -> std::borrow::Cow<'_, str> {
    let b = s.as_bytes();
    if b.len() == 20 && b[10] == b'T' && b[19] == b'Z' {
        return format!("{}.000Z", &s[..19]).into();
    }
    if b.len() == 24 && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z' {
        return s.into();
    }
    match crate::model::value::parse_instant(s).and_then(chrono::DateTime::from_timestamp_millis) {
        Some(t) => t
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into(),
        None => s.into(),
    }
}

/// A DATETIME value read from the file, in the form onemap keeps in memory
/// (RFC 3339 UTC to the second): the inverse of [`to_gpkg_datetime`], and
/// the reading of files written before it (no milliseconds) or by others.
fn from_gpkg_datetime(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() == 24 && b[10] == b'T' && &b[19..] == b".000Z" {
        return format!("{}Z", &s[..19]);
    }
    if b.len() == 20 && b[10] == b'T' && b[19] == b'Z' {
        return s.to_string();
    }
    crate::model::value::normalize_datetime(s).unwrap_or_else(|_| s.to_string())
}

impl GpkgStore {
    /// Opens (or creates) a GeoPackage. A file that exists but is not a
    /// GeoPackage is refused rather than modified.
    pub async fn open(path: &Path) -> Result<GpkgStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Checkpoints run in the background (below), not inside the
            // commit that happens to fill the WAL: that commit would wait
            // for the copy and its fsync (60–110 ms seen in the live soak).
            .pragma("wal_autocheckpoint", "0")
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // Every connection gets the functions the R-tree triggers call
            // (`gpkg_fn`): without them no feature row could be written.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    let mut h = conn.lock_handle().await?;
                    // SAFETY: the locked handle is this connection's, open,
                    // and used by no one else while we hold it.
                    unsafe { super::gpkg_fn::register(h.as_raw_handle().as_ptr()) }
                        .map_err(|e| sqlx::Error::Configuration(e.into()))
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;

        let app_id: i64 = sqlx::query_scalar("PRAGMA application_id")
            .fetch_one(&pool)
            .await?;
        let tables: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
                .fetch_one(&pool)
                .await?;
        if app_id != GPKG_APPLICATION_ID && tables > 0 {
            return Err(backend(format!(
                "{} is an SQLite file but not a GeoPackage (application_id {app_id:#x})",
                path.display()
            )));
        }
        if app_id != GPKG_APPLICATION_ID {
            sqlx::query(&format!("PRAGMA application_id = {GPKG_APPLICATION_ID}"))
                .execute(&pool)
                .await?;
            sqlx::query(&format!("PRAGMA user_version = {GPKG_USER_VERSION}"))
                .execute(&pool)
                .await?;
        }
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        for (name, id, org, org_id, def, desc) in [
            (
                "Undefined cartesian SRS",
                -1,
                "NONE",
                -1,
                "undefined",
                "undefined cartesian coordinate reference system",
            ),
            (
                "Undefined geographic SRS",
                0,
                "NONE",
                0,
                "undefined",
                "undefined geographic coordinate reference system",
            ),
            (
                "WGS 84 geodetic",
                SRS_WGS84,
                "EPSG",
                4326,
                WGS84_WKT,
                "longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid",
            ),
        ] {
            sqlx::query(
                "INSERT OR IGNORE INTO gpkg_spatial_ref_sys \
                 (srs_name, srs_id, organization, organization_coordsys_id, definition, description) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(name)
            .bind(id)
            .bind(org)
            .bind(org_id)
            .bind(def)
            .bind(desc)
            .execute(&pool)
            .await?;
        }
        sqlx::query(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description) \
             VALUES ('onemap_changes', 'attributes', 'onemap_changes', '变更记录 change log')",
        )
        .execute(&pool)
        .await?;

        let rows: Vec<(String,)> = sqlx::query_as("SELECT def FROM onemap_layers ORDER BY pos")
            .fetch_all(&pool)
            .await?;
        let mut layers = Vec::with_capacity(rows.len());
        for (json,) in rows {
            let def: LayerDef = serde_json::from_str(&json)
                .map_err(|e| backend(format!("corrupt layer definition: {e}")))?;
            layers.push(def);
        }
        upgrade(&pool, &layers).await?;
        let (stop, stopped) = tokio::sync::watch::channel(());
        tokio::spawn(checkpointer(pool.clone(), stopped));
        Ok(GpkgStore {
            path: path.to_path_buf(),
            pool,
            layers: RwLock::new(layers),
            writer: tokio::sync::Mutex::new(()),
            _stop: stop,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the pool, checkpointing the WAL so the file stands alone.
    pub async fn close(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }

    /// Reads the layer list again: another process sharing the file may
    /// have created layers since this one opened it.
    async fn refresh_layers(&self) -> Result<()> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT def FROM onemap_layers ORDER BY pos")
            .fetch_all(&self.pool)
            .await?;
        let mut layers = Vec::with_capacity(rows.len());
        for (json,) in rows {
            layers.push(
                serde_json::from_str::<LayerDef>(&json)
                    .map_err(|e| backend(format!("corrupt layer definition: {e}")))?,
            );
        }
        *self
            .layers
            .write()
            .map_err(|_| backend("layer cache poisoned"))? = layers;
        Ok(())
    }

    /// A layer's definition, reading the list again once when it is not
    /// known (yet).
    async fn layer_fresh(&self, name: &str) -> Result<LayerDef> {
        match self.layer(name) {
            Ok(d) => Ok(d),
            Err(StoreError::UnknownLayer(_)) => {
                self.refresh_layers().await?;
                self.layer(name)
            }
            Err(e) => Err(e),
        }
    }

    fn layer(&self, name: &str) -> Result<LayerDef> {
        self.layers
            .read()
            .map_err(|_| backend("layer cache poisoned"))?
            .iter()
            .find(|l| l.name == name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownLayer(name.to_string()))
    }

    fn select_sql(def: &LayerDef) -> String {
        let mut sql = String::from("SELECT fid, onemap_version, geom");
        for p in &def.properties {
            sql.push_str(", ");
            sql.push_str(&q(&p.name));
        }
        sql.push_str(" FROM ");
        sql.push_str(&q(&def.name));
        sql
    }
}

/// Decodes one row of `select_sql` into a feature.
fn decode_feature(def: &LayerDef, row: &SqliteRow) -> Result<Feature> {
    let id: i64 = row.try_get(0)?;
    let version: i64 = row.try_get(1)?;
    let blob: Option<Vec<u8>> = row.try_get(2)?;
    let geometry = match blob {
        Some(b) => {
            wkb::from_gpkg(&b).map_err(|e| backend(format!("{} feature {id}: {e}", def.name)))?
        }
        None => Geometry::GeometryCollection(Default::default()),
    };
    let mut properties = Vec::with_capacity(def.properties.len());
    for (i, p) in def.properties.iter().enumerate() {
        properties.push(decode_value(row, i + 3, p.ty).map_err(|e| {
            backend(format!(
                "{} feature {id} property {}: {e}",
                def.name, p.name
            ))
        })?);
    }
    Ok(Feature {
        id,
        version,
        geometry,
        properties,
    })
}

/// Decodes a cell by its storage class (SQLite is dynamically typed: a file
/// edited in another tool may hold a REAL in an INTEGER column), converting to
/// the declared type where no information is lost.
fn decode_value(row: &SqliteRow, i: usize, ty: PropType) -> std::result::Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let info = raw.type_info();
    let e = |e: sqlx::error::BoxDynError| e.to_string();
    Ok(match info.name() {
        "INTEGER" => {
            let v = <i64 as Decode<Sqlite>>::decode(raw).map_err(e)?;
            match ty {
                PropType::Bool => Value::Bool(v != 0),
                PropType::Float => Value::Float(v as f64),
                PropType::Text | PropType::DateTime | PropType::Date => Value::text(v.to_string()),
                PropType::Int => Value::Int(v),
            }
        }
        "REAL" => {
            let v = <f64 as Decode<Sqlite>>::decode(raw).map_err(e)?;
            match ty {
                PropType::Int if v.fract() == 0.0 => Value::Int(v as i64),
                PropType::Bool => Value::Bool(v != 0.0),
                PropType::Text => Value::text(v.to_string()),
                _ => Value::Float(v),
            }
        }
        "TEXT" => {
            let v = <&str as Decode<Sqlite>>::decode(raw).map_err(e)?;
            match ty {
                PropType::DateTime => Value::text(from_gpkg_datetime(v)),
                PropType::Text | PropType::Date => Value::text(v),
                _ => Value::from_text(v, ty).unwrap_or_else(|_| Value::text(v)),
            }
        }
        other => return Err(format!("unexpected {other} value")),
    })
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// Binds a property value; DATETIME columns get milliseconds, as the
/// GeoPackage asks ([`to_gpkg_datetime`]).
fn bind_prop<'q>(q: Query<'q>, v: &'q Value, ty: PropType) -> Query<'q> {
    match (v, ty) {
        (Value::Text(s), PropType::DateTime) => match to_gpkg_datetime(s) {
            std::borrow::Cow::Borrowed(b) => q.bind(b),
            std::borrow::Cow::Owned(o) => q.bind(o),
        },
        _ => bind_value(q, v),
    }
}

fn bind_value<'q>(q: Query<'q>, v: &'q Value) -> Query<'q> {
    match v {
        Value::Null => q.bind(Option::<i64>::None),
        Value::Bool(b) => q.bind(*b),
        Value::Int(i) => q.bind(*i),
        Value::Float(f) => q.bind(*f),
        Value::Text(s) => q.bind(&**s),
    }
}

/// One change-log row to write.
struct LogRow<'a> {
    layer: &'a str,
    fid: Option<i64>,
    op: &'a str,
    version: Option<i64>,
    before: Option<String>,
    after: Option<String>,
}

/// One feature row to insert: its GPKG geometry blob and properties.
struct NewRow<'a> {
    id: i64,
    version: i64,
    blob: Vec<u8>,
    props: &'a [Value],
}

/// State of one `apply` call: next ids per layer, bbox growth, log rows.
struct TxState {
    next_id: HashMap<String, i64>,
    bbox: HashMap<String, Rect>,
    txn: Option<i64>,
    last_seq: i64,
    time: String,
}

impl TxState {
    fn grow(&mut self, layer: &str, g: &Geometry) {
        if let Some(r) = g.bounding_rect() {
            self.bbox
                .entry(layer.to_string())
                .and_modify(|b| *b = union(*b, r))
                .or_insert(r);
        }
    }
}

fn union(a: Rect, b: Rect) -> Rect {
    Rect::new(
        (a.min().x.min(b.min().x), a.min().y.min(b.min().y)),
        (a.max().x.max(b.max().x), a.max().y.max(b.max().y)),
    )
}

/// A DATETIME value of the second (no fraction), as files written before
/// milliseconds hold them.
const SECONDS_GLOB: &str =
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z";

/// Brings a file written by an earlier version up to what this one writes,
/// once: DATETIME values with milliseconds (features, `gpkg_contents`, the
/// change log) and an R-tree spatial index on every feature table. Takes
/// the write lock only when something is to be done.
async fn upgrade(pool: &SqlitePool, layers: &[LayerDef]) -> Result<()> {
    let dated: Option<String> =
        sqlx::query_scalar("SELECT value FROM onemap_meta WHERE key = 'gpkg_datetime_ms'")
            .fetch_optional(pool)
            .await?;
    let mut missing = Vec::new();
    for def in layers {
        if !rtree_complete(pool, &def.name).await? {
            missing.push(def.name.clone());
        }
    }
    if dated.is_some() && missing.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    if dated.is_none() {
        let fix = |table: &str, col: &str| {
            format!(
                "UPDATE {t} SET {c} = substr({c}, 1, 19) || '.000Z' WHERE {c} GLOB '{SECONDS_GLOB}'",
                t = q(table),
                c = q(col)
            )
        };
        for def in layers {
            for p in def.properties.iter().filter(|p| p.ty == PropType::DateTime) {
                sqlx::query(&fix(&def.name, &p.name))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(&fix("onemap_changes", "time"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&fix("gpkg_contents", "last_change"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT OR REPLACE INTO onemap_meta (key, value) VALUES ('gpkg_datetime_ms', '1')",
        )
        .execute(&mut *tx)
        .await?;
    }
    for name in &missing {
        ensure_rtree(&mut tx, name).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Whether `table` has its R-tree and all six triggers.
async fn rtree_complete<'e, E>(db: E, table: &str) -> Result<bool>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let r = super::gpkg_fn::rtree_name(table);
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE (type = 'table' AND name = ?1) \
         OR (type = 'trigger' AND tbl_name = ?2)",
    )
    .bind(&r)
    .bind(table)
    .fetch_all(db)
    .await?;
    Ok(names.contains(&r)
        && super::gpkg_fn::rtree_triggers(table)
            .iter()
            .all(|(n, _)| names.contains(n)))
}

/// Gives `table` the GeoPackage R-tree spatial index (GPKG 1.3 Annex F.3)
/// unless it has it whole: the `rtree_<table>_geom` table filled in one
/// pass, its six triggers, and its row in `gpkg_extensions`. An index with
/// a trigger missing is rebuilt, since it may have missed changes.
async fn ensure_rtree(tx: &mut Transaction<'_, Sqlite>, table: &str) -> Result<()> {
    if rtree_complete(&mut **tx, table).await? {
        return Ok(());
    }
    let r = super::gpkg_fn::rtree_name(table);
    let triggers = super::gpkg_fn::rtree_triggers(table);
    for (name, _) in &triggers {
        sqlx::query(&format!("DROP TRIGGER IF EXISTS {}", q(name)))
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(&format!("DROP TABLE IF EXISTS {}", q(&r)))
        .execute(&mut **tx)
        .await?;
    sqlx::query(&format!(
        "CREATE VIRTUAL TABLE {} USING rtree(id, minx, maxx, miny, maxy)",
        q(&r)
    ))
    .execute(&mut **tx)
    .await?;
    sqlx::query(&format!(
        "INSERT OR REPLACE INTO {} SELECT fid, ST_MinX(geom), ST_MaxX(geom), ST_MinY(geom), ST_MaxY(geom) \
         FROM {} WHERE geom NOT NULL AND NOT ST_IsEmpty(geom)",
        q(&r),
        q(table)
    ))
    .execute(&mut **tx)
    .await?;
    for (_, ddl) in &triggers {
        sqlx::query(ddl).execute(&mut **tx).await?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT, \
         extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL, \
         CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))",
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT OR IGNORE INTO gpkg_extensions (table_name, column_name, extension_name, definition, scope) \
         VALUES (?, 'geom', 'gpkg_rtree_index', 'http://www.geopackage.org/spec120/#extension_rtree', 'write-only')",
    )
    .bind(table)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Grows a layer's extent in `gpkg_contents` to cover `r` and stamps
/// `last_change`. The extent only grows (the spec allows an informative,
/// not minimal, bbox).
async fn grow_extent(
    tx: &mut Transaction<'_, Sqlite>,
    layer: &str,
    r: &Rect,
    time: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE gpkg_contents SET \
         min_x = min(coalesce(min_x, ?1), ?1), min_y = min(coalesce(min_y, ?2), ?2), \
         max_x = max(coalesce(max_x, ?3), ?3), max_y = max(coalesce(max_y, ?4), ?4), \
         last_change = ?5 WHERE table_name = ?6",
    )
    .bind(r.min().x)
    .bind(r.min().y)
    .bind(r.max().x)
    .bind(r.max().y)
    .bind(time)
    .bind(layer)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl GpkgStore {
    /// Allocates the next id of a layer: one past the largest ever used
    /// (AUTOINCREMENT's `sqlite_sequence` remembers deleted ones).
    async fn next_id(
        tx: &mut Transaction<'_, Sqlite>,
        st: &mut TxState,
        layer: &str,
        explicit: Option<i64>,
    ) -> Result<i64> {
        if !st.next_id.contains_key(layer) {
            let max: Option<i64> =
                sqlx::query_scalar(&format!("SELECT max(fid) FROM {}", q(layer)))
                    .fetch_one(&mut **tx)
                    .await?;
            let seq: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
                    .bind(layer)
                    .fetch_optional(&mut **tx)
                    .await?
                    .flatten();
            let next = max.unwrap_or(0).max(seq.unwrap_or(0)) + 1;
            st.next_id.insert(layer.to_string(), next);
        }
        let next = st
            .next_id
            .get_mut(layer)
            .ok_or_else(|| backend("id cache"))?;
        let id = explicit.unwrap_or(*next);
        *next = (*next).max(id + 1);
        Ok(id)
    }

    /// Appends one change-log row. The first row of a change set names the
    /// set (`txn` = its own seq); the rest point to it.
    async fn log(
        tx: &mut Transaction<'_, Sqlite>,
        st: &mut TxState,
        cs: &ChangeSet,
        row: LogRow<'_>,
    ) -> Result<()> {
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO onemap_changes (txn, time, author, reason, layer, fid, op, version, before, after) \
             VALUES (coalesce(?, 0), ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(st.txn)
        .bind(&st.time)
        .bind(&cs.author)
        .bind(&cs.reason)
        .bind(row.layer)
        .bind(row.fid)
        .bind(row.op)
        .bind(row.version)
        .bind(row.before)
        .bind(row.after)
        .fetch_one(&mut **tx)
        .await?;
        if st.txn.is_none() {
            sqlx::query("UPDATE onemap_changes SET txn = seq WHERE seq = ?")
                .bind(seq)
                .execute(&mut **tx)
                .await?;
            st.txn = Some(seq);
        }
        st.last_seq = seq;
        Ok(())
    }

    async fn current(
        tx: &mut Transaction<'_, Sqlite>,
        def: &LayerDef,
        id: i64,
    ) -> Result<Option<Feature>> {
        let sql = format!("{} WHERE fid = ?", Self::select_sql(def));
        let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await?;
        row.map(|r| decode_feature(def, &r)).transpose()
    }

    /// Inserts many rows of one layer with multi-row INSERT statements: a
    /// statement round-trip per row would make the city demo take minutes.
    async fn insert_rows(
        tx: &mut Transaction<'_, Sqlite>,
        def: &LayerDef,
        rows: &[NewRow<'_>],
    ) -> Result<()> {
        let ncols = 3 + def.properties.len();
        let per_stmt = (30_000 / ncols).clamp(1, 400);
        let mut cols = String::from("fid, geom, onemap_version");
        for p in &def.properties {
            cols.push_str(", ");
            cols.push_str(&q(&p.name));
        }
        let one = format!("({})", vec!["?"; ncols].join(", "));
        for chunk in rows.chunks(per_stmt) {
            let sql = format!(
                "INSERT INTO {} ({cols}) VALUES {}",
                q(&def.name),
                vec![one.as_str(); chunk.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query.bind(r.id).bind(&r.blob[..]).bind(r.version);
                for (v, p) in r.props.iter().zip(&def.properties) {
                    query = bind_prop(query, v, p.ty);
                }
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Creates a layer's table and registers it, inside `tx`.
    async fn create_layer_tx(tx: &mut Transaction<'_, Sqlite>, def: &LayerDef) -> Result<()> {
        let invalid = |message: String| StoreError::Invalid { index: 0, message };
        if !crate::model::builtin::is_internal(&def.name) {
            LayerDef::check_name(&def.name).map_err(invalid)?;
        }
        for p in &def.properties {
            LayerDef::check_prop_name(&p.name).map_err(invalid)?;
        }
        let mut ddl = format!(
            "CREATE TABLE {} (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom {}, \
             onemap_version INTEGER NOT NULL DEFAULT 1",
            q(&def.name),
            def.geometry.gpkg_name()
        );
        for p in &def.properties {
            ddl.push_str(&format!(", {} {}", q(&p.name), p.ty.gpkg_name()));
        }
        ddl.push(')');
        sqlx::query(&ddl).execute(&mut **tx).await?;
        sqlx::query(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) \
             VALUES (?, 'features', ?, ?, ?)",
        )
        .bind(&def.name)
        .bind(&def.name)
        .bind(&def.title)
        .bind(SRS_WGS84)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO gpkg_geometry_columns (table_name, column_name, geometry_type_name, srs_id, z, m) \
             VALUES (?, 'geom', ?, ?, 0, 0)",
        )
        .bind(&def.name)
        .bind(def.geometry.gpkg_name())
        .bind(SRS_WGS84)
        .execute(&mut **tx)
        .await?;
        let json = serde_json::to_string(def).map_err(backend)?;
        sqlx::query(
            "INSERT INTO onemap_layers (name, pos, def) \
             VALUES (?, (SELECT coalesce(max(pos), 0) + 1 FROM onemap_layers), ?)",
        )
        .bind(&def.name)
        .bind(json)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn apply_ops(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        cs: &ChangeSet,
        st: &mut TxState,
    ) -> Result<Applied> {
        for def in &cs.create {
            if self.layer(&def.name).is_ok() {
                return Err(StoreError::LayerExists(def.name.clone()));
            }
            Self::create_layer_tx(tx, def).await?;
            let json = serde_json::to_string(def).map_err(backend)?;
            Self::log(
                tx,
                st,
                cs,
                LogRow {
                    layer: &def.name,
                    fid: None,
                    op: "create_layer",
                    version: None,
                    before: None,
                    after: Some(json),
                },
            )
            .await?;
        }
        let mut defs: HashMap<String, LayerDef> = HashMap::new();
        let mut ids = Vec::with_capacity(cs.ops.len());
        let mut versions = Vec::with_capacity(cs.ops.len());
        // Validate everything first: a bad op late in a bulk load should cost
        // no writes at all.
        let mut geoms: Vec<Option<Geometry>> = Vec::with_capacity(cs.ops.len());
        for (index, op) in cs.ops.iter().enumerate() {
            let invalid = |message: String| StoreError::Invalid { index, message };
            let layer = op.layer();
            if !defs.contains_key(layer) {
                let def = match cs.create.iter().find(|d| d.name == layer) {
                    Some(d) => d.clone(),
                    None => self.layer(layer)?,
                };
                defs.insert(layer.to_string(), def);
            }
            let def = &defs[layer];
            match op {
                Op::Insert {
                    geometry,
                    properties,
                    ..
                }
                | Op::Update {
                    geometry,
                    properties,
                    ..
                } => {
                    super::check_properties(def, properties).map_err(invalid)?;
                    let g = def.geometry.coerce(geometry.clone()).map_err(invalid)?;
                    geoms.push(Some(g));
                }
                Op::Delete { .. } => geoms.push(None),
            }
        }

        let mut i = 0;
        while i < cs.ops.len() {
            // Runs of plain inserts into one layer go through the bulk path.
            if let Op::Insert { layer, .. } = &cs.ops[i] {
                let def = defs[layer].clone();
                let mut rows = Vec::new();
                let mut seen = std::collections::HashSet::new();
                let mut j = i;
                while j < cs.ops.len() {
                    let Op::Insert {
                        layer: l,
                        id,
                        properties,
                        ..
                    } = &cs.ops[j]
                    else {
                        break;
                    };
                    if l != layer {
                        break;
                    }
                    if let Some(id) = id {
                        let exists: Option<i64> = sqlx::query_scalar(&format!(
                            "SELECT fid FROM {} WHERE fid = ?",
                            q(layer)
                        ))
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await?;
                        if exists.is_some() {
                            return Err(StoreError::Invalid {
                                index: j,
                                message: format!("{layer} feature {id} already exists"),
                            });
                        }
                    }
                    let fid = Self::next_id(tx, st, layer, *id).await?;
                    if !seen.insert(fid) {
                        return Err(StoreError::Invalid {
                            index: j,
                            message: format!("{layer} feature {fid} appears twice"),
                        });
                    }
                    let g = geoms[j]
                        .as_ref()
                        .ok_or_else(|| backend("missing geometry"))?;
                    st.grow(layer, g);
                    rows.push(NewRow {
                        id: fid,
                        version: 1,
                        blob: wkb::to_gpkg(g, SRS_WGS84),
                        props: properties.as_slice(),
                    });
                    ids.push(fid);
                    versions.push(1);
                    j += 1;
                }
                Self::insert_rows(tx, &def, &rows).await?;
                match cs.detail {
                    LogDetail::PerFeature => {
                        for (k, r) in rows.iter().enumerate() {
                            let (fid, props) = (&r.id, r.props);
                            let f = Feature {
                                id: *fid,
                                version: 1,
                                geometry: geoms[i + k]
                                    .clone()
                                    .unwrap_or(Geometry::GeometryCollection(Default::default())),
                                properties: props.to_vec(),
                            };
                            let after = f.to_geojson(&def).to_string();
                            Self::log(
                                tx,
                                st,
                                cs,
                                LogRow {
                                    layer,
                                    fid: Some(*fid),
                                    op: "insert",
                                    version: Some(1),
                                    before: None,
                                    after: Some(after),
                                },
                            )
                            .await?;
                        }
                    }
                    LogDetail::Summary => {
                        let first = rows.iter().map(|r| r.id).min();
                        let last = rows.iter().map(|r| r.id).max();
                        let summary = serde_json::json!({
                            "count": rows.len(), "first_fid": first, "last_fid": last,
                        })
                        .to_string();
                        Self::log(
                            tx,
                            st,
                            cs,
                            LogRow {
                                layer,
                                fid: None,
                                op: "bulk_insert",
                                version: None,
                                before: None,
                                after: Some(summary),
                            },
                        )
                        .await?;
                    }
                }
                i = j;
                continue;
            }

            let op = &cs.ops[i];
            let layer = op.layer().to_string();
            let def = defs[&layer].clone();
            let (id, expected) = match op {
                Op::Update {
                    id,
                    expected_version,
                    ..
                }
                | Op::Delete {
                    id,
                    expected_version,
                    ..
                } => (*id, *expected_version),
                Op::Insert { .. } => unreachable!("inserts are handled above"),
            };
            let before =
                Self::current(tx, &def, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound {
                        layer: layer.clone(),
                        id,
                    })?;
            if before.version != expected {
                return Err(StoreError::Conflict {
                    layer,
                    id,
                    expected,
                    actual: before.version,
                });
            }
            let before_json = before.to_geojson(&def).to_string();
            match op {
                Op::Update { properties, .. } => {
                    let g = geoms[i]
                        .clone()
                        .ok_or_else(|| backend("missing geometry"))?;
                    let mut sql = format!("UPDATE {} SET geom = ?, onemap_version = ?", q(&layer));
                    for p in &def.properties {
                        sql.push_str(&format!(", {} = ?", q(&p.name)));
                    }
                    sql.push_str(" WHERE fid = ?");
                    let blob = wkb::to_gpkg(&g, SRS_WGS84);
                    let mut query = sqlx::query(&sql).bind(blob).bind(expected + 1);
                    for (v, p) in properties.iter().zip(&def.properties) {
                        query = bind_prop(query, v, p.ty);
                    }
                    query.bind(id).execute(&mut **tx).await?;
                    st.grow(&layer, &g);
                    let after = Feature {
                        id,
                        version: expected + 1,
                        geometry: g,
                        properties: properties.clone(),
                    };
                    let after_json = after.to_geojson(&def).to_string();
                    Self::log(
                        tx,
                        st,
                        cs,
                        LogRow {
                            layer: &layer,
                            fid: Some(id),
                            op: "update",
                            version: Some(expected + 1),
                            before: Some(before_json),
                            after: Some(after_json),
                        },
                    )
                    .await?;
                    ids.push(id);
                    versions.push(expected + 1);
                }
                Op::Delete { .. } => {
                    sqlx::query(&format!("DELETE FROM {} WHERE fid = ?", q(&layer)))
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                    Self::log(
                        tx,
                        st,
                        cs,
                        LogRow {
                            layer: &layer,
                            fid: Some(id),
                            op: "delete",
                            version: Some(expected + 1),
                            before: Some(before_json),
                            after: None,
                        },
                    )
                    .await?;
                    ids.push(id);
                    versions.push(expected + 1);
                }
                Op::Insert { .. } => unreachable!("inserts are handled above"),
            }
            i += 1;
        }

        // Keep gpkg_contents' extent and last_change current.
        for (layer, r) in &st.bbox {
            grow_extent(tx, layer, r, &st.time).await?;
        }
        Ok(Applied {
            ids,
            versions,
            first_seq: st.txn.unwrap_or(st.last_seq),
            last_seq: st.last_seq,
        })
    }
}

fn change_from_row(r: &SqliteRow) -> Result<Change> {
    let parse = |s: Option<String>| -> Option<serde_json::Value> {
        s.and_then(|s| serde_json::from_str(&s).ok())
    };
    Ok(Change {
        seq: r.try_get("seq")?,
        txn: r.try_get("txn")?,
        time: from_gpkg_datetime(r.try_get("time")?),
        author: r.try_get("author")?,
        reason: r.try_get("reason")?,
        layer: r.try_get("layer")?,
        fid: r.try_get("fid")?,
        op: r.try_get("op")?,
        version: r.try_get("version")?,
        before: parse(r.try_get("before")?),
        after: parse(r.try_get("after")?),
    })
}

#[async_trait]
impl Store for GpkgStore {
    fn describe(&self) -> String {
        format!("gpkg:{}", self.path.display())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn layers(&self) -> Result<Vec<LayerDef>> {
        self.refresh_layers().await?;
        Ok(self
            .layers
            .read()
            .map_err(|_| backend("layer cache poisoned"))?
            .clone())
    }

    async fn create_layer(&self, def: &LayerDef) -> Result<()> {
        let mut cs = ChangeSet::new("onemap", "create layer");
        cs.create.push(def.clone());
        self.apply(&cs).await.map(|_| ())
    }

    async fn load_layer(&self, name: &str) -> Result<Vec<Feature>> {
        let def = self.layer_fresh(name).await?;
        let (count, lo, hi): (i64, Option<i64>, Option<i64>) = sqlx::query_as(&format!(
            "SELECT count(*), min(fid), max(fid) FROM {}",
            q(name)
        ))
        .fetch_one(&self.pool)
        .await?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(Vec::new());
        };
        // Large layers are read as fid ranges over several connections at
        // once: decoding rows is CPU-bound in the driver, and this spreads
        // it over the cores.
        // One part per core: more only adds contention (measured with 1, 2,
        // 4 and 8 parts on two cores: 2 was fastest, 8 slowest).
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as i64;
        let parts: i64 = if count > 100_000 {
            cores.clamp(1, 8)
        } else {
            1
        };
        let step = (hi - lo) / parts + 1;
        let sql = format!(
            "{} WHERE fid >= ? AND fid < ? ORDER BY fid",
            Self::select_sql(&def)
        );
        let reads = (0..parts).map(|k| {
            let (sql, def) = (&sql, &def);
            let (from, to) = (lo + k * step, lo + (k + 1) * step);
            async move {
                let mut rows = sqlx::query(sql).bind(from).bind(to).fetch(&self.pool);
                let mut out = Vec::with_capacity((count / parts + 16) as usize);
                while let Some(row) = rows.try_next().await? {
                    out.push(decode_feature(def, &row)?);
                }
                Ok::<_, StoreError>(out)
            }
        });
        let chunks = futures::future::try_join_all(reads).await?;
        let mut out = Vec::with_capacity(count.max(0) as usize);
        for c in chunks {
            out.extend(c);
        }
        Ok(out)
    }

    async fn apply(&self, cs: &ChangeSet) -> Result<Applied> {
        let _w = self.writer.lock().await;
        if cs.ops.iter().any(|op| self.layer(op.layer()).is_err())
            || cs.create.iter().any(|d| self.layer(&d.name).is_err())
        {
            // Written by another process since we looked?
            self.refresh_layers().await?;
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut st = TxState {
            next_id: HashMap::new(),
            bbox: HashMap::new(),
            txn: None,
            last_seq: 0,
            time: gpkg_now(),
        };
        // Any error drops `tx`, which rolls back.
        let applied = self.apply_ops(&mut tx, cs, &mut st).await?;
        // A layer made by this change set gets its spatial index after its
        // rows (one pass instead of a trigger per row).
        for def in &cs.create {
            ensure_rtree(&mut tx, &def.name).await?;
        }
        append_audit(&mut tx, &cs.audit).await?;
        tx.commit().await?;
        if !cs.create.is_empty() {
            self.layers
                .write()
                .map_err(|_| backend("layer cache poisoned"))?
                .extend(cs.create.iter().cloned());
        }
        Ok(applied)
    }

    async fn changes_since(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
        let rows = sqlx::query("SELECT * FROM onemap_changes WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn history(&self, layer: &str, id: i64) -> Result<Vec<Change>> {
        self.layer_fresh(layer).await?;
        let rows =
            sqlx::query("SELECT * FROM onemap_changes WHERE layer = ? AND fid = ? ORDER BY seq")
                .bind(layer)
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn history_where(&self, layer: &str, property: &str, value: &str) -> Result<Vec<Change>> {
        self.layer_fresh(layer).await?;
        let path = format!("$.properties.\"{}\"", property.replace('"', ""));
        let rows = sqlx::query(
            "SELECT * FROM onemap_changes WHERE layer = ?1 AND op IN ('insert', 'update', 'delete') \
             AND (json_extract(after, ?2) = ?3 OR json_extract(before, ?2) = ?3) ORDER BY seq",
        )
        .bind(layer)
        .bind(&path)
        .bind(value)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn last_seq(&self) -> Result<i64> {
        let s: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM onemap_changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(s.unwrap_or(0))
    }

    async fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM onemap_meta WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let _w = self.writer.lock().await;
        sqlx::query("INSERT INTO onemap_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn meta_all(&self) -> Result<Vec<(String, String)>> {
        let mut all: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM onemap_meta")
            .fetch_all(&self.pool)
            .await?;
        all.sort();
        Ok(all)
    }

    async fn last_id(&self, layer: &str) -> Result<i64> {
        self.layer_fresh(layer).await?;
        let mut conn = self.pool.acquire().await?;
        let max: Option<i64> = sqlx::query_scalar(&format!("SELECT max(fid) FROM {}", q(layer)))
            .fetch_one(&mut *conn)
            .await?;
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
            .bind(layer)
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
        Ok(max.unwrap_or(0).max(seq.unwrap_or(0)))
    }

    async fn restore_layer(
        &self,
        def: &LayerDef,
        features: &[Feature],
        last_id: i64,
    ) -> Result<()> {
        let _w = self.writer.lock().await;
        self.refresh_layers().await?;
        if self.layer(&def.name).is_ok() {
            return Err(StoreError::LayerExists(def.name.clone()));
        }
        for (index, f) in features.iter().enumerate() {
            super::check_properties(def, &f.properties).map_err(|m| StoreError::Invalid {
                index,
                message: format!("{} feature {}: {m}", def.name, f.id),
            })?;
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Self::create_layer_tx(&mut tx, def).await?;
        // Blobs are encoded a chunk at a time: a city's addresses would
        // otherwise be held twice.
        let mut extent: Option<Rect> = None;
        for chunk in features.chunks(20_000) {
            let rows: Vec<NewRow<'_>> = chunk
                .iter()
                .map(|f| {
                    if let Some(r) = f.geometry.bounding_rect() {
                        extent = Some(extent.map_or(r, |e| union(e, r)));
                    }
                    NewRow {
                        id: f.id,
                        version: f.version,
                        blob: wkb::to_gpkg(&f.geometry, SRS_WGS84),
                        props: &f.properties,
                    }
                })
                .collect();
            Self::insert_rows(&mut tx, def, &rows).await?;
        }
        // The AUTOINCREMENT counter: the inserts left it at the largest id
        // written (or left no row when there were none).
        let counter = features.iter().map(|f| f.id).fold(last_id, i64::max);
        if counter > 0 {
            let updated = sqlx::query("UPDATE sqlite_sequence SET seq = ? WHERE name = ?")
                .bind(counter)
                .bind(&def.name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)")
                    .bind(&def.name)
                    .bind(counter)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(r) = extent {
            grow_extent(&mut tx, &def.name, &r, &gpkg_now()).await?;
        }
        // The spatial index last: filled in one pass, not row by row.
        ensure_rtree(&mut tx, &def.name).await?;
        tx.commit().await?;
        self.layers
            .write()
            .map_err(|_| backend("layer cache poisoned"))?
            .push(def.clone());
        Ok(())
    }

    async fn restore_changes(&self, rows: &[Change]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM onemap_changes")
            .fetch_one(&mut *tx)
            .await?;
        super::check_restored_seqs(rows, last.unwrap_or(0))?;
        let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        // 11 columns: 400 rows stay under SQLite's 32,766 parameters.
        for chunk in rows.chunks(400) {
            let sql = format!(
                "INSERT INTO onemap_changes \
                 (seq, txn, time, author, reason, layer, fid, op, version, before, after) VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(r.seq)
                    .bind(r.txn)
                    .bind(to_gpkg_datetime(&r.time).into_owned())
                    .bind(&r.author)
                    .bind(&r.reason)
                    .bind(&r.layer)
                    .bind(r.fid)
                    .bind(&r.op)
                    .bind(r.version)
                    .bind(json(&r.before))
                    .bind(json(&r.after));
            }
            query.execute(&mut *tx).await?;
        }
        // AUTOINCREMENT moved onemap_changes' counter to the largest seq
        // inserted: the next change set continues after it.
        tx.commit().await?;
        Ok(())
    }

    async fn auth_records(&self) -> Result<Vec<AuthRecord>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT kind, id, body FROM onemap_auth ORDER BY kind, id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(kind, id, body)| AuthRecord { kind, id, body })
            .collect())
    }

    async fn write_auth(&self, w: &AuthWrite) -> Result<Vec<AuditRow>> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for r in &w.put {
            sqlx::query(
                "INSERT INTO onemap_auth (kind, id, body) VALUES (?, ?, ?) \
                 ON CONFLICT(kind, id) DO UPDATE SET body = excluded.body",
            )
            .bind(&r.kind)
            .bind(&r.id)
            .bind(&r.body)
            .execute(&mut *tx)
            .await?;
        }
        for r in &w.touch {
            sqlx::query("UPDATE onemap_auth SET body = ? WHERE kind = ? AND id = ?")
                .bind(&r.body)
                .bind(&r.kind)
                .bind(&r.id)
                .execute(&mut *tx)
                .await?;
        }
        for (kind, id) in &w.delete {
            sqlx::query("DELETE FROM onemap_auth WHERE kind = ? AND id = ?")
                .bind(kind)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let rows = append_audit(&mut tx, &w.audit).await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn audit_page(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut sql = String::from("SELECT * FROM onemap_audit WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        if let Some(b) = q.before {
            sql.push_str(&format!(" AND seq < {b}"));
        }
        for (col, v) in [
            ("actor", &q.actor),
            ("action", &q.action),
            ("outcome", &q.outcome),
        ] {
            if let Some(v) = v {
                sql.push_str(&format!(" AND {col} = ?"));
                args.push(v.clone());
            }
        }
        if let Some(v) = &q.since {
            sql.push_str(" AND time >= ?");
            args.push(v.clone());
        }
        if let Some(v) = &q.until {
            sql.push_str(" AND time <= ?");
            args.push(v.clone());
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", q.limit.max(0)));
        let mut query = sqlx::query(&sql);
        for a in &args {
            query = query.bind(a);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_since(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query("SELECT * FROM onemap_audit WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn restore_audit(&self, rows: &[AuditRow]) -> Result<()> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for r in rows {
            insert_audit(&mut tx, r).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Numbers, chains and inserts `entries` after the trail's last row.
async fn append_audit(
    tx: &mut Transaction<'_, Sqlite>,
    entries: &[AuditEntry],
) -> Result<Vec<AuditRow>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM onemap_audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let rows = super::auth::chain(last, entries);
    for r in &rows {
        insert_audit(tx, r).await?;
    }
    Ok(rows)
}

async fn insert_audit(tx: &mut Transaction<'_, Sqlite>, r: &AuditRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO onemap_audit \
         (seq, time, actor, role, action, outcome, source, target, detail, prev, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(r.seq)
    .bind(&r.entry.time)
    .bind(&r.entry.actor)
    .bind(&r.entry.role)
    .bind(&r.entry.action)
    .bind(&r.entry.outcome)
    .bind(&r.entry.source)
    .bind(&r.entry.target)
    .bind(&r.entry.detail)
    .bind(&r.prev)
    .bind(&r.hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn audit_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<AuditRow> {
    Ok(AuditRow {
        seq: r.try_get("seq")?,
        entry: AuditEntry {
            time: r.try_get("time")?,
            actor: r.try_get("actor")?,
            role: r.try_get("role")?,
            action: r.try_get("action")?,
            outcome: r.try_get("outcome")?,
            source: r.try_get("source")?,
            target: r.try_get("target")?,
            detail: r.try_get("detail")?,
        },
        prev: r.try_get("prev")?,
        hash: r.try_get("hash")?,
    })
}
