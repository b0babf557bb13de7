//! The server store: PostgreSQL with PostGIS, through sqlx's Postgres driver.
//!
//! Same contract as the GeoPackage store (and the same contract tests): one
//! table per layer (`fid bigint` primary key, `geom geometry(Geometry,4326)`
//! with a GiST index, `onemap_version`, typed property columns: text,
//! bigint, double precision, boolean; date-times and dates are ISO text as in
//! the GeoPackage, so values read back identical), plus `onemap_layers`,
//! `onemap_meta` and `onemap_changes`. The core tables come from sqlx
//! migrations (`migrations/postgis/`), run at open; `onemap_changes` has a
//! trigger that NOTIFYs `onemap_changes` with the newest seq, for followers.
//!
//! Writes are serialised twice: a mutex in the process (so a change set does
//! not hold a pooled connection while it waits) and a transaction-level
//! advisory lock in the database (so two servers on one database cannot
//! interleave). Under that lock, change-log seqs are taken as one block per
//! change set, so a set's rows are consecutive, the log's order is the commit
//! order, and a reader never sees seq n+1 committed before n.
//!
//! Feature rows travel as binary `COPY` both ways: a layer loads with one
//! `COPY (SELECT …) TO STDOUT (FORMAT binary)` decoded here (four million
//! points would otherwise go through the generic row machinery), and inserts
//! are a `COPY … FROM STDIN (FORMAT binary)` with EWKB geometries.
//! Geometries are ISO WKB from [`super::wkb`] (`ST_AsBinary`,
//! `ST_GeomFromWKB($1, 4326)`), so no geozero and no PostGIS type binding.

use super::auth::{AuditEntry, AuditQuery, AuditRow, AuthRecord, AuthWrite};
use super::{Applied, Change, ChangeSet, LogDetail, Op, Result, Store, StoreError, wkb};
use crate::model::{Feature, LayerDef, PropType, Value, value::format_utc};
use async_trait::async_trait;
use futures::TryStreamExt;
use geo::Geometry;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow, PgValueFormat};
use sqlx::{
    ConnectOptions, Connection, PgConnection, PgPool, Postgres, Row, Transaction, ValueRef,
};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::RwLock;

/// The migrations that create the core tables, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgis");

/// `pg_advisory_xact_lock` key held by every write transaction ("onemap").
const WRITE_LOCK: i64 = 0x6f6e_656d_6170;

/// SRID of every stored geometry: WGS84 lon/lat.
const SRID: u32 = 4326;

/// Change-log rows written per statement (and buffered at most).
const LOG_CHUNK: usize = 2_000;

/// COPY data sent per message while inserting.
const COPY_CHUNK: usize = 4 << 20;

/// How long a statement waits for a pooled connection.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long [`Store::ping`] waits for a connection.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The channel the change-log trigger notifies (migrations/postgis).
const CHANNEL: &str = "onemap_changes";

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A failed connection attempt: unreachable (retry later) or refused for a
/// reason retrying will not fix (authentication, no such database).
fn cannot_connect(shown: &str, e: &sqlx::Error) -> StoreError {
    let msg = format!("cannot connect to PostgreSQL at {shown}: {e}");
    if super::unreachable_error(e) {
        StoreError::Unreachable(msg)
    } else {
        StoreError::Backend(msg)
    }
}

/// Listens on [`CHANNEL`] and bumps `tx` for every notification and after
/// every (re)connection (notifications sent while disconnected are lost;
/// the follower reads the log by seq, so a wake-up is all it needs). Ends
/// when the receiver is dropped or the pool is closed.
async fn listen(pool: PgPool, tx: tokio::sync::watch::Sender<super::Wakeups>, shown: String) {
    use sqlx::postgres::PgListener;
    let mut warned = false;
    'connect: loop {
        let attempt = async {
            let mut l = PgListener::connect_with(&pool).await?;
            // A lost connection is reported at once (Ok(None)), not after
            // a reconnect that waits out the pool's timeout.
            l.eager_reconnect(false);
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            r = attempt => match r {
                Ok(l) => l,
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    if !warned {
                        tracing::warn!("LISTEN {CHANNEL} on {shown}: {e}; retrying every second");
                        warned = true;
                    }
                    tx.send_modify(|w| w.listening = false);
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    }
                    continue 'connect;
                }
            },
            _ = tx.closed() => return,
        };
        if warned {
            tracing::info!("LISTEN {CHANNEL} on {shown}: listening again");
            warned = false;
        }
        tx.send_modify(|w| {
            w.count += 1;
            w.listening = true;
        });
        loop {
            let got = tokio::select! {
                r = listener.try_recv() => r,
                _ = tx.closed() => return,
            };
            match got {
                Ok(Some(_)) => tx.send_modify(|w| w.count += 1),
                // Lost: say so now, and listen again on a new connection
                // (which wakes the follower once more: something may have
                // been missed meanwhile).
                Ok(None) => {
                    tracing::warn!("LISTEN {CHANNEL} on {shown}: connection lost; reconnecting");
                    tx.send_modify(|w| w.listening = false);
                    drop(listener);
                    continue 'connect;
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!("LISTEN {CHANNEL} on {shown}: {e}; reconnecting");
                    tx.send_modify(|w| w.listening = false);
                    drop(listener);
                    continue 'connect;
                }
            }
        }
    }
}

/// Quotes an identifier for SQL. Names are checked at layer creation, this
/// is belt and braces.
fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column type of a property.
fn pg_type(ty: PropType) -> &'static str {
    match ty {
        PropType::Bool => "boolean",
        PropType::Int => "bigint",
        PropType::Float => "double precision",
        // ISO 8601 text, as in the GeoPackage: values read back identical.
        PropType::Text | PropType::DateTime | PropType::Date => "text",
    }
}

/// A URL without its password, for messages and `describe`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let user = &authority[..at];
    let user = match user.find(':') {
        Some(colon) => format!("{}:***", &user[..colon]),
        None => user.to_string(),
    };
    format!(
        "{}{user}@{}{}",
        &url[..scheme_end + 3],
        &authority[at + 1..],
        &rest[auth_end..]
    )
}

/// The PostGIS store. Cheap to share behind an `Arc`.
pub struct PostgisStore {
    /// The URL without password (`postgres://onemap@db:5432/onemap`).
    shown: String,
    pool: PgPool,
    /// For [`Store::ping`]'s own connection.
    opts: PgConnectOptions,
    /// Layer definitions, in creation order. Reloaded from `onemap_layers`
    /// when a name is missing, so a second server sees layers made by the
    /// first.
    layers: RwLock<Vec<LayerDef>>,
    /// One writer per process (the advisory lock orders processes).
    writer: tokio::sync::Mutex<()>,
}

impl PostgisStore {
    /// Connects, enables PostGIS if needed, creates or migrates the core
    /// tables and reads the layer definitions.
    pub async fn open(url: &str) -> Result<PostgisStore> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| backend(format!("invalid PostgreSQL URL {}: {e}", redact_url(url))))?;
        let shown = redact_url(url);
        // One plain connection first: it fails at once when the server is
        // down (the pool would retry a refused connection until its acquire
        // timeout) and runs the setup.
        let mut conn = opts
            .connect()
            .await
            .map_err(|e| cannot_connect(&shown, &e))?;
        ensure_postgis(&mut conn, &shown).await?;
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| backend(format!("cannot create onemap's tables in {shown}: {e}")))?;
        let _ = conn.close().await;

        // A request waits at most ACQUIRE_TIMEOUT for a connection: while
        // the database is down, writes fail fast with 503 instead of
        // hanging (the pool keeps retrying to connect meanwhile).
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts.clone())
            .await
            .map_err(|e| cannot_connect(&shown, &e))?;
        let layers = read_layers(&pool).await?;
        Ok(PostgisStore {
            shown,
            pool,
            opts,
            layers: RwLock::new(layers),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn cached(&self, name: &str) -> Result<Option<LayerDef>> {
        Ok(self
            .layers
            .read()
            .map_err(|_| backend("layer cache poisoned"))?
            .iter()
            .find(|l| l.name == name)
            .cloned())
    }

    /// Reloads the layer definitions from the database.
    async fn refresh(&self) -> Result<Vec<LayerDef>> {
        let layers = read_layers(&self.pool).await?;
        *self
            .layers
            .write()
            .map_err(|_| backend("layer cache poisoned"))? = layers.clone();
        Ok(layers)
    }

    /// A layer's definition: from the cache, or from the database when
    /// another server created it since we looked.
    async fn layer(&self, name: &str) -> Result<LayerDef> {
        if let Some(def) = self.cached(name)? {
            return Ok(def);
        }
        self.refresh()
            .await?
            .into_iter()
            .find(|l| l.name == name)
            .ok_or_else(|| StoreError::UnknownLayer(name.to_string()))
    }
}

async fn read_layers(pool: &PgPool) -> Result<Vec<LayerDef>> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT def FROM onemap_layers ORDER BY pos")
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|(json,)| {
            serde_json::from_str(&json)
                .map_err(|e| backend(format!("corrupt layer definition: {e}")))
        })
        .collect()
}

/// Makes sure the PostGIS extension is there, creating it if we may, and
/// explains what to do when it cannot be.
async fn ensure_postgis(conn: &mut PgConnection, shown: &str) -> Result<()> {
    let have: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
            .fetch_optional(&mut *conn)
            .await?;
    if have.is_some() {
        return Ok(());
    }
    let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS postgis")
        .execute(&mut *conn)
        .await
    else {
        return Ok(());
    };
    let available: Option<String> = sqlx::query_scalar(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Err(backend(if available.is_none() {
        format!(
            "the PostgreSQL server at {shown} does not have PostGIS installed ({e}): install it \
             on the server (Debian: apt-get install postgresql-15-postgis-3), then run \
             CREATE EXTENSION postgis; in the database"
        )
    } else {
        format!(
            "PostGIS is not enabled in {shown} and could not be enabled ({e}): run \
             CREATE EXTENSION postgis; in the database as a superuser"
        )
    }))
}

// ---------------------------------------------------------------------------
// Values: one cell model for binds, COPY in and COPY out.

/// A property value checked against its column type.
enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'a str),
}

/// A value as its column stores it (an Int in a Float column is a float).
/// `check_properties` has run, so a mismatch is a bug, reported not panicked.
fn cell(v: &Value, ty: PropType) -> Result<Cell<'_>> {
    Ok(match (ty, v) {
        (_, Value::Null) => Cell::Null,
        (PropType::Bool, Value::Bool(b)) => Cell::Bool(*b),
        (PropType::Int, Value::Int(i)) => Cell::Int(*i),
        (PropType::Float, Value::Float(f)) => Cell::Float(*f),
        (PropType::Float, Value::Int(i)) => Cell::Float(*i as f64),
        (PropType::Text | PropType::DateTime | PropType::Date, Value::Text(s)) => Cell::Text(s),
        (ty, v) => return Err(backend(format!("{v:?} in a {} column", ty.name()))),
    })
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

fn bind_cell<'q>(q: PgQuery<'q>, c: Cell<'q>, ty: PropType) -> PgQuery<'q> {
    match (c, ty) {
        (Cell::Null, PropType::Bool) => q.bind(Option::<bool>::None),
        (Cell::Null, PropType::Int) => q.bind(Option::<i64>::None),
        (Cell::Null, PropType::Float) => q.bind(Option::<f64>::None),
        (Cell::Null, _) => q.bind(Option::<&str>::None),
        (Cell::Bool(b), _) => q.bind(b),
        (Cell::Int(i), _) => q.bind(i),
        (Cell::Float(f), _) => q.bind(f),
        (Cell::Text(s), _) => q.bind(s),
    }
}

/// Decodes a binary-format cell of the type the select list casts to.
fn decode_cell(b: Option<&[u8]>, ty: PropType) -> std::result::Result<Value, String> {
    let Some(b) = b else {
        return Ok(Value::Null);
    };
    let eight = || -> std::result::Result<[u8; 8], String> {
        b.try_into()
            .map_err(|_| format!("{} bytes for a {}", b.len(), ty.name()))
    };
    Ok(match ty {
        PropType::Bool => match b {
            [v] => Value::Bool(*v != 0),
            _ => return Err(format!("{} bytes for a bool", b.len())),
        },
        PropType::Int => Value::Int(i64::from_be_bytes(eight()?)),
        PropType::Float => Value::Float(f64::from_be_bytes(eight()?)),
        PropType::Text | PropType::DateTime | PropType::Date => {
            Value::text(std::str::from_utf8(b).map_err(|e| e.to_string())?)
        }
    })
}

fn decode_i64(b: Option<&[u8]>, what: &str) -> Result<i64> {
    match decode_cell(b, PropType::Int).map_err(backend)? {
        Value::Int(i) => Ok(i),
        _ => Err(backend(format!("{what} is NULL"))),
    }
}

/// `fid, onemap_version, ST_AsBinary(geom)` and the properties, each cast
/// to the type `decode_cell` reads (a column changed in another tool still
/// decodes, or fails in SQL with PostgreSQL's message).
fn select_list(def: &LayerDef) -> String {
    let mut sql = String::from("fid::bigint, onemap_version::bigint, ST_AsBinary(geom)");
    for p in &def.properties {
        sql.push_str(&format!(", {}::{}", q(&p.name), pg_type(p.ty)));
    }
    sql
}

/// A feature from the cells of one `select_list` row.
fn feature_from_cells(def: &LayerDef, cells: &[Option<&[u8]>]) -> Result<Feature> {
    if cells.len() != 3 + def.properties.len() {
        return Err(backend(format!(
            "{}: {} columns read, {} expected",
            def.name,
            cells.len(),
            3 + def.properties.len()
        )));
    }
    let id = decode_i64(cells[0], "fid")?;
    let version = decode_i64(cells[1], "onemap_version")?;
    let geometry = match cells[2] {
        Some(b) => {
            wkb::from_wkb(b).map_err(|e| backend(format!("{} feature {id}: {e}", def.name)))?
        }
        None => Geometry::GeometryCollection(Default::default()),
    };
    let mut properties = Vec::with_capacity(def.properties.len());
    for (p, c) in def.properties.iter().zip(&cells[3..]) {
        properties.push(decode_cell(*c, p.ty).map_err(|e| {
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

fn feature_from_row(def: &LayerDef, row: &PgRow) -> Result<Feature> {
    let mut cells = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            cells.push(None);
        } else if raw.format() == PgValueFormat::Binary {
            cells.push(Some(raw.as_bytes().map_err(backend)?));
        } else {
            return Err(backend("a text-format row where binary was expected"));
        }
    }
    feature_from_cells(def, &cells)
}

// ---------------------------------------------------------------------------
// Binary COPY.

const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Writes PostgreSQL's binary COPY format.
struct CopyWriter {
    buf: Vec<u8>,
}

impl CopyWriter {
    fn new() -> CopyWriter {
        let mut buf = Vec::with_capacity(COPY_CHUNK + 64 * 1024);
        buf.extend_from_slice(COPY_SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyWriter { buf }
    }

    fn tuple(&mut self, fields: usize) -> Result<()> {
        let n = i16::try_from(fields).map_err(|_| backend("too many columns"))?;
        self.buf.extend_from_slice(&n.to_be_bytes());
        Ok(())
    }

    fn field(&mut self, bytes: &[u8]) -> Result<()> {
        let n = i32::try_from(bytes.len()).map_err(|_| backend("value over 2 GiB"))?;
        self.buf.extend_from_slice(&n.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn cell(&mut self, c: Cell<'_>) -> Result<()> {
        match c {
            Cell::Null => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
            Cell::Bool(b) => self.field(&[u8::from(b)])?,
            Cell::Int(i) => self.field(&i.to_be_bytes())?,
            Cell::Float(f) => self.field(&f.to_be_bytes())?,
            Cell::Text(s) => self.field(s.as_bytes())?,
        }
        Ok(())
    }

    /// A geometry as EWKB with SRID 4326 (what `geometry_recv` reads; the
    /// column's typmod wants the SRID on the value).
    fn geometry(&mut self, g: &Geometry) -> Result<()> {
        let w = wkb::to_wkb(g);
        let (Some(&order), Some(ty)) = (w.first(), w.get(1..5)) else {
            return Err(backend("empty WKB"));
        };
        let ty = u32::from_le_bytes([ty[0], ty[1], ty[2], ty[3]]) | 0x2000_0000;
        let n = i32::try_from(w.len() + 4).map_err(|_| backend("geometry over 2 GiB"))?;
        self.buf.extend_from_slice(&n.to_be_bytes());
        self.buf.push(order);
        self.buf.extend_from_slice(&ty.to_le_bytes());
        self.buf.extend_from_slice(&SRID.to_le_bytes());
        self.buf.extend_from_slice(&w[5..]);
        Ok(())
    }

    /// One feature row: fid, geom, onemap_version, the properties.
    fn row(&mut self, def: &LayerDef, r: &NewRow<'_>) -> Result<()> {
        let NewRow {
            id,
            version,
            geometry: g,
            props,
        } = *r;
        self.tuple(3 + def.properties.len())?;
        self.cell(Cell::Int(id))?;
        self.geometry(g)?;
        self.cell(Cell::Int(version))?;
        for (p, v) in def.properties.iter().zip(props) {
            self.cell(cell(v, p.ty)?)?;
        }
        Ok(())
    }

    fn finish(&mut self) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
    }
}

/// Reads PostgreSQL's binary COPY format incrementally: `feed` takes what
/// has arrived and decodes every complete tuple in it.
struct CopyReader {
    header_done: bool,
    done: bool,
}

fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl CopyReader {
    /// Decodes the complete tuples at the start of `data` into `out`;
    /// returns how many bytes it consumed.
    fn feed(&mut self, data: &[u8], def: &LayerDef, out: &mut Vec<Feature>) -> Result<usize> {
        let mut pos = 0;
        if !self.header_done {
            let fixed = COPY_SIGNATURE.len() + 8;
            if data.len() < fixed {
                return Ok(0);
            }
            if &data[..COPY_SIGNATURE.len()] != COPY_SIGNATURE {
                return Err(backend("COPY data without the binary signature"));
            }
            let ext = be_i32(data, COPY_SIGNATURE.len() + 4).unwrap_or(0).max(0) as usize;
            if data.len() < fixed + ext {
                return Ok(0);
            }
            pos = fixed + ext;
            self.header_done = true;
        }
        let mut cells: Vec<Option<&[u8]>> = Vec::with_capacity(3 + def.properties.len());
        while !self.done {
            let Some(n) = be_i16(data, pos) else { break };
            if n == -1 {
                self.done = true;
                pos += 2;
                break;
            }
            // Walk the field lengths first: decode only a complete tuple.
            cells.clear();
            let mut at = pos + 2;
            let mut complete = true;
            for _ in 0..n.max(0) {
                let Some(len) = be_i32(data, at) else {
                    complete = false;
                    break;
                };
                at += 4;
                if len < 0 {
                    cells.push(None);
                    continue;
                }
                let end = at + len as usize;
                if end > data.len() {
                    complete = false;
                    break;
                }
                cells.push(Some(&data[at..end]));
                at = end;
            }
            if !complete {
                break;
            }
            out.push(feature_from_cells(def, &cells)?);
            pos = at;
        }
        Ok(pos)
    }
}

// ---------------------------------------------------------------------------
// Writing.

/// One change-log row to write.
struct LogRow {
    layer: String,
    fid: Option<i64>,
    op: &'static str,
    version: Option<i64>,
    before: Option<String>,
    after: Option<String>,
}

/// One feature row to insert.
#[derive(Clone, Copy)]
struct NewRow<'a> {
    id: i64,
    version: i64,
    geometry: &'a Geometry,
    props: &'a [Value],
}

/// State of one `apply` call: next ids per layer, buffered log rows.
struct TxState {
    next_id: HashMap<String, i64>,
    /// Layers created by this change set: their GiST index is built after
    /// their rows are in (one sorted build instead of an insert per row).
    created: Vec<String>,
    log: Vec<LogRow>,
    txn: Option<i64>,
    last_seq: i64,
    time: String,
}

impl PostgisStore {
    /// Allocates the next id of a layer: one past the largest ever used.
    async fn next_id(
        tx: &mut Transaction<'_, Postgres>,
        st: &mut TxState,
        layer: &str,
        explicit: Option<i64>,
    ) -> Result<i64> {
        if !st.next_id.contains_key(layer) {
            let (max, last): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
                "SELECT (SELECT max(fid) FROM {}), \
                 (SELECT last_fid FROM onemap_layers WHERE name = $1)",
                q(layer)
            ))
            .bind(layer)
            .fetch_one(&mut **tx)
            .await?;
            let next = max.unwrap_or(0).max(last.unwrap_or(0)) + 1;
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

    /// Queues one change-log row; a full buffer is written out.
    async fn log(
        tx: &mut Transaction<'_, Postgres>,
        st: &mut TxState,
        cs: &ChangeSet,
        row: LogRow,
    ) -> Result<()> {
        st.log.push(row);
        if st.log.len() >= LOG_CHUNK {
            Self::flush_log(tx, st, cs).await?;
        }
        Ok(())
    }

    /// Writes the buffered log rows under seqs taken as one block (we hold
    /// the write lock, so nobody else takes seqs meanwhile and the block is
    /// consecutive). The first row of a change set names the set.
    async fn flush_log(
        tx: &mut Transaction<'_, Postgres>,
        st: &mut TxState,
        cs: &ChangeSet,
    ) -> Result<()> {
        if st.log.is_empty() {
            return Ok(());
        }
        let n = st.log.len() as i64;
        let last: i64 = sqlx::query_scalar(
            "SELECT setval(s, nextval(s) + $1 - 1) \
             FROM (SELECT pg_get_serial_sequence('onemap_changes', 'seq') AS s) AS q",
        )
        .bind(n)
        .fetch_one(&mut **tx)
        .await?;
        let first = last - n + 1;
        let txn = *st.txn.get_or_insert(first);
        let rows = std::mem::take(&mut st.log);
        let seqs: Vec<i64> = (first..=last).collect();
        let mut layers = Vec::with_capacity(rows.len());
        let mut fids = Vec::with_capacity(rows.len());
        let mut ops = Vec::with_capacity(rows.len());
        let mut versions = Vec::with_capacity(rows.len());
        let mut befores = Vec::with_capacity(rows.len());
        let mut afters = Vec::with_capacity(rows.len());
        for r in rows {
            layers.push(r.layer);
            fids.push(r.fid);
            ops.push(r.op);
            versions.push(r.version);
            befores.push(r.before);
            afters.push(r.after);
        }
        sqlx::query(
            "INSERT INTO onemap_changes \
             (seq, txn, time, author, reason, layer, fid, op, version, before, after) \
             SELECT u.seq, $2, $3, $4, $5, u.layer, u.fid, u.op, u.version, \
                    u.before::json, u.after::json \
             FROM unnest($1::bigint[], $6::text[], $7::bigint[], $8::text[], $9::bigint[], \
                         $10::text[], $11::text[]) \
                  AS u(seq, layer, fid, op, version, before, after) \
             ORDER BY u.seq",
        )
        .bind(&seqs)
        .bind(txn)
        .bind(&st.time)
        .bind(&cs.author)
        .bind(&cs.reason)
        .bind(&layers)
        .bind(&fids)
        .bind(&ops)
        .bind(&versions)
        .bind(&befores)
        .bind(&afters)
        .execute(&mut **tx)
        .await?;
        st.last_seq = last;
        Ok(())
    }

    /// The current row of a feature, locked until the transaction ends.
    async fn current(
        tx: &mut Transaction<'_, Postgres>,
        def: &LayerDef,
        id: i64,
    ) -> Result<Option<Feature>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE fid = $1 FOR UPDATE",
            select_list(def),
            q(&def.name)
        );
        let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await?;
        row.map(|r| feature_from_row(def, &r)).transpose()
    }

    /// Inserts rows of one layer with one binary COPY (a statement
    /// round-trip per row would make the city demo take minutes).
    async fn insert_rows(
        tx: &mut Transaction<'_, Postgres>,
        def: &LayerDef,
        rows: &[NewRow<'_>],
    ) -> Result<()> {
        let mut cols = String::from("fid, geom, onemap_version");
        for p in &def.properties {
            cols.push_str(", ");
            cols.push_str(&q(&p.name));
        }
        let sql = format!("COPY {} ({cols}) FROM STDIN (FORMAT binary)", q(&def.name));
        let mut copy = tx.copy_in_raw(&sql).await?;
        let mut w = CopyWriter::new();
        let mut failed = None;
        for r in rows {
            if let Err(e) = w.row(def, r) {
                failed = Some(e);
                break;
            }
            if w.buf.len() >= COPY_CHUNK {
                copy.send(&w.buf[..]).await?;
                w.buf.clear();
            }
        }
        if let Some(e) = failed {
            copy.abort(e.to_string()).await?;
            return Err(e);
        }
        w.finish();
        copy.send(&w.buf[..]).await?;
        copy.finish().await?;
        Ok(())
    }

    /// Creates a layer's table and registers it, inside `tx`.
    async fn create_layer_tx(tx: &mut Transaction<'_, Postgres>, def: &LayerDef) -> Result<()> {
        let invalid = |message: String| StoreError::Invalid { index: 0, message };
        if !crate::model::builtin::is_internal(&def.name) {
            LayerDef::check_name(&def.name).map_err(invalid)?;
        }
        for p in &def.properties {
            LayerDef::check_prop_name(&p.name).map_err(invalid)?;
        }
        let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM onemap_layers WHERE name = $1")
            .bind(&def.name)
            .fetch_optional(&mut **tx)
            .await?;
        if known.is_some() {
            return Err(StoreError::LayerExists(def.name.clone()));
        }
        let taken: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(q(&def.name))
            .fetch_one(&mut **tx)
            .await?;
        if taken.is_some() {
            return Err(invalid(format!(
                "the database already has a table or view named {:?}",
                def.name
            )));
        }
        let mut ddl = format!(
            "CREATE TABLE {} (fid bigint PRIMARY KEY, geom geometry(Geometry, {SRID}), \
             onemap_version bigint NOT NULL DEFAULT 1",
            q(&def.name)
        );
        for p in &def.properties {
            ddl.push_str(&format!(", {} {}", q(&p.name), pg_type(p.ty)));
        }
        ddl.push(')');
        sqlx::query(&ddl).execute(&mut **tx).await?;
        let json = serde_json::to_string(def).map_err(backend)?;
        sqlx::query(
            "INSERT INTO onemap_layers (name, pos, def) \
             VALUES ($1, (SELECT coalesce(max(pos), 0) + 1 FROM onemap_layers), $2)",
        )
        .bind(&def.name)
        .bind(json)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn apply_ops(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        cs: &ChangeSet,
        st: &mut TxState,
    ) -> Result<Applied> {
        for def in &cs.create {
            if self.cached(&def.name)?.is_some() {
                return Err(StoreError::LayerExists(def.name.clone()));
            }
            Self::create_layer_tx(tx, def).await?;
            st.created.push(def.name.clone());
            let json = serde_json::to_string(def).map_err(backend)?;
            Self::log(
                tx,
                st,
                cs,
                LogRow {
                    layer: def.name.clone(),
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
                    None => self.layer(layer).await?,
                };
                defs.insert(layer.to_string(), def);
            }
            let def = defs
                .get(layer)
                .ok_or_else(|| StoreError::UnknownLayer(layer.to_string()))?;
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
        let def_of = |layer: &str| -> Result<LayerDef> {
            defs.get(layer)
                .cloned()
                .ok_or_else(|| StoreError::UnknownLayer(layer.to_string()))
        };

        let mut i = 0;
        while i < cs.ops.len() {
            // Runs of plain inserts into one layer go through the bulk path.
            if let Op::Insert { layer, .. } = &cs.ops[i] {
                let def = def_of(layer)?;
                let mut j = i;
                while j < cs.ops.len()
                    && matches!(&cs.ops[j], Op::Insert { layer: l, .. } if l == layer)
                {
                    j += 1;
                }
                // Explicit ids must be free: one query for the whole run.
                let explicit: Vec<i64> = cs.ops[i..j]
                    .iter()
                    .filter_map(|op| match op {
                        Op::Insert { id, .. } => *id,
                        _ => None,
                    })
                    .collect();
                let existing: HashSet<i64> = if explicit.is_empty() {
                    HashSet::new()
                } else {
                    sqlx::query_scalar::<_, i64>(&format!(
                        "SELECT fid FROM {} WHERE fid = ANY($1)",
                        q(layer)
                    ))
                    .bind(&explicit)
                    .fetch_all(&mut **tx)
                    .await?
                    .into_iter()
                    .collect()
                };
                let mut rows: Vec<NewRow<'_>> = Vec::with_capacity(j - i);
                let mut seen = HashSet::new();
                for (k, op) in cs.ops[i..j].iter().enumerate() {
                    let index = i + k;
                    let Op::Insert { id, properties, .. } = op else {
                        break;
                    };
                    if let Some(id) = id.filter(|id| existing.contains(id)) {
                        return Err(StoreError::Invalid {
                            index,
                            message: format!("{layer} feature {id} already exists"),
                        });
                    }
                    let fid = Self::next_id(tx, st, layer, *id).await?;
                    if !seen.insert(fid) {
                        return Err(StoreError::Invalid {
                            index,
                            message: format!("{layer} feature {fid} appears twice"),
                        });
                    }
                    let g = geoms[index]
                        .as_ref()
                        .ok_or_else(|| backend("missing geometry"))?;
                    rows.push(NewRow {
                        id: fid,
                        version: 1,
                        geometry: g,
                        props: properties,
                    });
                    ids.push(fid);
                    versions.push(1);
                }
                Self::insert_rows(tx, &def, &rows).await?;
                match cs.detail {
                    LogDetail::PerFeature => {
                        for &NewRow {
                            id: fid,
                            geometry: g,
                            props,
                            ..
                        } in &rows
                        {
                            let f = Feature {
                                id: fid,
                                version: 1,
                                geometry: g.clone(),
                                properties: props.to_vec(),
                            };
                            let after = f.to_geojson(&def).to_string();
                            Self::log(
                                tx,
                                st,
                                cs,
                                LogRow {
                                    layer: layer.clone(),
                                    fid: Some(fid),
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
                                layer: layer.clone(),
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
            let def = def_of(&layer)?;
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
                Op::Insert { .. } => return Err(backend("inserts are handled above")),
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
                    let mut sql = format!(
                        "UPDATE {} SET geom = ST_GeomFromWKB($1, {SRID}), onemap_version = $2",
                        q(&layer)
                    );
                    for (k, p) in def.properties.iter().enumerate() {
                        sql.push_str(&format!(", {} = ${}", q(&p.name), k + 3));
                    }
                    sql.push_str(&format!(" WHERE fid = ${}", def.properties.len() + 3));
                    let mut query = sqlx::query(&sql).bind(wkb::to_wkb(&g)).bind(expected + 1);
                    for (p, v) in def.properties.iter().zip(properties) {
                        query = bind_cell(query, cell(v, p.ty)?, p.ty);
                    }
                    query.bind(id).execute(&mut **tx).await?;
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
                            layer,
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
                    sqlx::query(&format!("DELETE FROM {} WHERE fid = $1", q(&layer)))
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                    Self::log(
                        tx,
                        st,
                        cs,
                        LogRow {
                            layer,
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
                Op::Insert { .. } => return Err(backend("inserts are handled above")),
            }
            i += 1;
        }

        Self::flush_log(tx, st, cs).await?;
        // Remember the largest id given, so that deleting the newest feature
        // does not free its id.
        for (layer, next) in &st.next_id {
            sqlx::query(
                "UPDATE onemap_layers SET last_fid = greatest(last_fid, $1) WHERE name = $2",
            )
            .bind(next - 1)
            .bind(layer)
            .execute(&mut **tx)
            .await?;
        }
        for layer in &st.created {
            sqlx::query(&format!("CREATE INDEX ON {} USING gist (geom)", q(layer)))
                .execute(&mut **tx)
                .await?;
        }
        Ok(Applied {
            ids,
            versions,
            first_seq: st.txn.unwrap_or(st.last_seq),
            last_seq: st.last_seq,
        })
    }
}

/// The change-log columns, JSON as text (parsed here as the GeoPackage
/// store parses its TEXT columns).
const CHANGE_COLUMNS: &str = "seq, txn, time, author, reason, layer, fid, op, version, \
                              before::text AS before, after::text AS after";

fn change_from_row(r: &PgRow) -> Result<Change> {
    let parse = |s: Option<String>| -> Option<serde_json::Value> {
        s.and_then(|s| serde_json::from_str(&s).ok())
    };
    Ok(Change {
        seq: r.try_get("seq")?,
        txn: r.try_get("txn")?,
        time: r.try_get("time")?,
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
impl Store for PostgisStore {
    fn describe(&self) -> String {
        format!("postgis:{}", self.shown)
    }

    /// A connection of its own, not the pool's: while the database is down
    /// the pool keeps retrying until its acquire timeout and then says
    /// only "timed out", where a connection attempt fails at once with the
    /// cause (refused, unknown host, shutting down).
    async fn ping(&self) -> Result<()> {
        match tokio::time::timeout(PING_TIMEOUT, self.opts.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                Ok(())
            }
            Ok(Err(e)) => Err(cannot_connect(&self.shown, &e)),
            Err(_) => Err(StoreError::Unreachable(format!(
                "no answer from PostgreSQL at {} within {} s",
                self.shown,
                PING_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn layers(&self) -> Result<Vec<LayerDef>> {
        self.refresh().await
    }

    fn change_notifications(&self) -> Option<tokio::sync::watch::Receiver<super::Wakeups>> {
        // The listener is a task: without a runtime, followers poll.
        tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = tokio::sync::watch::channel(super::Wakeups::default());
        tokio::spawn(listen(self.pool.clone(), tx, self.shown.clone()));
        Some(rx)
    }

    async fn create_layer(&self, def: &LayerDef) -> Result<()> {
        let mut cs = ChangeSet::new("onemap", "create layer");
        cs.create.push(def.clone());
        self.apply(&cs).await.map(|_| ())
    }

    async fn load_layer(&self, name: &str) -> Result<Vec<Feature>> {
        let def = self.layer(name).await?;
        // No ORDER BY: a sequential scan streams fastest, and rows are
        // mostly in id order already; the sort below fixes the rest.
        let sql = format!(
            "COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)",
            select_list(&def),
            q(name)
        );
        let mut conn = self.pool.acquire().await?;
        let mut stream = conn.copy_out_raw(&sql).await?;
        let mut out = Vec::new();
        let mut reader = CopyReader {
            header_done: false,
            done: false,
        };
        // Bytes of an incomplete tuple carried over to the next message.
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.try_next().await? {
            if pending.is_empty() {
                let used = reader.feed(&chunk, &def, &mut out)?;
                pending.extend_from_slice(&chunk[used..]);
            } else {
                pending.extend_from_slice(&chunk);
                let used = reader.feed(&pending, &def, &mut out)?;
                pending.drain(..used);
            }
        }
        if !reader.done || !pending.is_empty() {
            return Err(backend(format!("{name}: COPY data ended early")));
        }
        if !out.is_sorted_by_key(|f| f.id) {
            out.sort_unstable_by_key(|f| f.id);
        }
        Ok(out)
    }

    async fn apply(&self, cs: &ChangeSet) -> Result<Applied> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        let mut st = TxState {
            next_id: HashMap::new(),
            created: Vec::new(),
            log: Vec::new(),
            txn: None,
            last_seq: 0,
            time: format_utc(chrono::Utc::now()),
        };
        // Any error drops `tx`, which rolls back.
        let applied = self.apply_ops(&mut tx, cs, &mut st).await?;
        append_audit(&mut tx, &cs.audit).await?;
        tx.commit().await?;
        if !cs.create.is_empty() {
            let mut layers = self
                .layers
                .write()
                .map_err(|_| backend("layer cache poisoned"))?;
            for def in &cs.create {
                if !layers.iter().any(|l| l.name == def.name) {
                    layers.push(def.clone());
                }
            }
        }
        Ok(applied)
    }

    async fn changes_since(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
        // A negative limit means none, as in SQLite.
        let limit = (limit >= 0).then_some(limit);
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM onemap_changes WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn history(&self, layer: &str, id: i64) -> Result<Vec<Change>> {
        self.layer(layer).await?;
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM onemap_changes WHERE layer = $1 AND fid = $2 ORDER BY seq"
        ))
        .bind(layer)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn history_where(&self, layer: &str, property: &str, value: &str) -> Result<Vec<Change>> {
        self.layer(layer).await?;
        // Equal to the JSON string `value` (as the GeoPackage's json_extract
        // comparison: a number 5 does not match "5").
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM onemap_changes \
             WHERE layer = $1 AND op IN ('insert', 'update', 'delete') \
             AND ((after::jsonb -> 'properties' -> $2) = to_jsonb($3::text) \
               OR (before::jsonb -> 'properties' -> $2) = to_jsonb($3::text)) \
             ORDER BY seq"
        ))
        .bind(layer)
        .bind(property.replace('"', ""))
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
            sqlx::query_scalar("SELECT value FROM onemap_meta WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let _w = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO onemap_meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn meta_all(&self) -> Result<Vec<(String, String)>> {
        // Sorted here, not by ORDER BY: the database's collation may not be
        // byte order, and the GeoPackage's is.
        let mut all: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM onemap_meta")
            .fetch_all(&self.pool)
            .await?;
        all.sort();
        Ok(all)
    }

    async fn last_id(&self, layer: &str) -> Result<i64> {
        self.layer(layer).await?;
        let (max, last): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
            "SELECT (SELECT max(fid) FROM {})::bigint, \
             (SELECT last_fid FROM onemap_layers WHERE name = $1)",
            q(layer)
        ))
        .bind(layer)
        .fetch_one(&self.pool)
        .await?;
        Ok(max.unwrap_or(0).max(last.unwrap_or(0)))
    }

    async fn restore_layer(
        &self,
        def: &LayerDef,
        features: &[Feature],
        last_id: i64,
    ) -> Result<()> {
        for (index, f) in features.iter().enumerate() {
            super::check_properties(def, &f.properties).map_err(|m| StoreError::Invalid {
                index,
                message: format!("{} feature {}: {m}", def.name, f.id),
            })?;
        }
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        // Refuses a layer that exists (by its row in onemap_layers).
        Self::create_layer_tx(&mut tx, def).await?;
        // One COPY per chunk: the row list stays small next to a city's
        // features.
        for chunk in features.chunks(100_000) {
            let rows: Vec<NewRow<'_>> = chunk
                .iter()
                .map(|f| NewRow {
                    id: f.id,
                    version: f.version,
                    geometry: &f.geometry,
                    props: &f.properties,
                })
                .collect();
            Self::insert_rows(&mut tx, def, &rows).await?;
        }
        let counter = features.iter().map(|f| f.id).fold(last_id, i64::max);
        sqlx::query("UPDATE onemap_layers SET last_fid = $1 WHERE name = $2")
            .bind(counter)
            .bind(&def.name)
            .execute(&mut *tx)
            .await?;
        // The GiST index after the rows: one sorted build.
        sqlx::query(&format!(
            "CREATE INDEX ON {} USING gist (geom)",
            q(&def.name)
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut layers = self
            .layers
            .write()
            .map_err(|_| backend("layer cache poisoned"))?;
        if !layers.iter().any(|l| l.name == def.name) {
            layers.push(def.clone());
        }
        Ok(())
    }

    async fn restore_changes(&self, rows: &[Change]) -> Result<()> {
        let Some(newest) = rows.last().map(|r| r.seq) else {
            return Ok(());
        };
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM onemap_changes")
            .fetch_one(&mut *tx)
            .await?;
        super::check_restored_seqs(rows, last.unwrap_or(0))?;
        let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        for chunk in rows.chunks(LOG_CHUNK) {
            let mut seq = Vec::with_capacity(chunk.len());
            let mut txn = Vec::with_capacity(chunk.len());
            let mut time = Vec::with_capacity(chunk.len());
            let mut author = Vec::with_capacity(chunk.len());
            let mut reason = Vec::with_capacity(chunk.len());
            let mut layer = Vec::with_capacity(chunk.len());
            let mut fid = Vec::with_capacity(chunk.len());
            let mut op = Vec::with_capacity(chunk.len());
            let mut version = Vec::with_capacity(chunk.len());
            let mut before = Vec::with_capacity(chunk.len());
            let mut after = Vec::with_capacity(chunk.len());
            for r in chunk {
                seq.push(r.seq);
                txn.push(r.txn);
                time.push(r.time.as_str());
                author.push(r.author.as_str());
                reason.push(r.reason.as_str());
                layer.push(r.layer.as_str());
                fid.push(r.fid);
                op.push(r.op.as_str());
                version.push(r.version);
                before.push(json(&r.before));
                after.push(json(&r.after));
            }
            sqlx::query(
                "INSERT INTO onemap_changes \
                 (seq, txn, time, author, reason, layer, fid, op, version, before, after) \
                 SELECT u.seq, u.txn, u.time, u.author, u.reason, u.layer, u.fid, u.op, \
                        u.version, u.before::json, u.after::json \
                 FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                             $6::text[], $7::bigint[], $8::text[], $9::bigint[], $10::text[], \
                             $11::text[]) \
                      AS u(seq, txn, time, author, reason, layer, fid, op, version, before, after) \
                 ORDER BY u.seq",
            )
            .bind(&seq)
            .bind(&txn)
            .bind(&time)
            .bind(&author)
            .bind(&reason)
            .bind(&layer)
            .bind(&fid)
            .bind(&op)
            .bind(&version)
            .bind(&before)
            .bind(&after)
            .execute(&mut *tx)
            .await?;
        }
        // The rows carried their own seqs: move the sequence past them so
        // the next change set continues after the newest.
        sqlx::query("SELECT setval(pg_get_serial_sequence('onemap_changes', 'seq'), $1)")
            .bind(newest)
            .execute(&mut *tx)
            .await?;
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        for r in &w.put {
            sqlx::query(
                "INSERT INTO onemap_auth (kind, id, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
            )
            .bind(&r.kind)
            .bind(&r.id)
            .bind(&r.body)
            .execute(&mut *tx)
            .await?;
        }
        for r in &w.touch {
            sqlx::query("UPDATE onemap_auth SET body = $1 WHERE kind = $2 AND id = $3")
                .bind(&r.body)
                .bind(&r.kind)
                .bind(&r.id)
                .execute(&mut *tx)
                .await?;
        }
        for (kind, id) in &w.delete {
            sqlx::query("DELETE FROM onemap_auth WHERE kind = $1 AND id = $2")
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
        let mut sql = String::from("SELECT * FROM onemap_audit WHERE true");
        let mut args: Vec<String> = Vec::new();
        if let Some(b) = q.before {
            sql.push_str(&format!(" AND seq < {b}"));
        }
        let mut cond = |sql: &mut String, expr: &str, v: &Option<String>| {
            if let Some(v) = v {
                args.push(v.clone());
                sql.push_str(&format!(" AND {expr} ${}", args.len()));
            }
        };
        cond(&mut sql, "actor =", &q.actor);
        cond(&mut sql, "action =", &q.action);
        cond(&mut sql, "outcome =", &q.outcome);
        cond(&mut sql, "time >=", &q.since);
        cond(&mut sql, "time <=", &q.until);
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", q.limit.max(0)));
        let mut query = sqlx::query(&sql);
        for a in &args {
            query = query.bind(a);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_since(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query("SELECT * FROM onemap_audit WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn restore_audit(&self, rows: &[AuditRow]) -> Result<()> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        for r in rows {
            insert_audit(&mut tx, r).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Numbers, chains and inserts `entries` after the trail's last row (the
/// caller holds the write lock, so no other writer numbers rows meanwhile).
async fn append_audit(
    tx: &mut Transaction<'_, Postgres>,
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

async fn insert_audit(tx: &mut Transaction<'_, Postgres>, r: &AuditRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO onemap_audit \
         (seq, time, actor, role, action, outcome, source, target, detail, prev, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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

fn audit_from_row(r: &PgRow) -> Result<AuditRow> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/onemap"),
            "postgres://u:***@db:5432/onemap"
        );
        assert_eq!(
            redact_url("postgresql://u@db/onemap?sslmode=require"),
            "postgresql://u@db/onemap?sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        assert_eq!(
            redact_url("postgres://u:p@ss@db/x"),
            "postgres://u:***@db/x"
        );
    }

    #[test]
    fn copy_round_trips_through_the_reader() {
        let def = LayerDef {
            name: "t".into(),
            title: "t".into(),
            geometry: crate::model::GeomKind::Point,
            properties: vec![
                crate::model::PropDef::new("a", PropType::Text),
                crate::model::PropDef::new("b", PropType::Int),
                crate::model::PropDef::new("c", PropType::Float),
                crate::model::PropDef::new("d", PropType::Bool),
            ],
            minzoom: 0,
            maxzoom: 22,
            declared_crs: "wgs84".into(),
        };
        // What PostgreSQL sends: ISO WKB from ST_AsBinary, not EWKB.
        let mut w = CopyWriter::new();
        let g = Geometry::Point(geo::point!(x: 112.9, y: 28.2));
        for id in 1..=3i64 {
            w.tuple(7).unwrap();
            w.cell(Cell::Int(id)).unwrap();
            w.cell(Cell::Int(1)).unwrap();
            w.field(&wkb::to_wkb(&g)).unwrap();
            w.cell(Cell::Text("东湖")).unwrap();
            w.cell(if id == 2 { Cell::Null } else { Cell::Int(id) })
                .unwrap();
            w.cell(Cell::Float(0.5)).unwrap();
            w.cell(Cell::Bool(true)).unwrap();
        }
        w.finish();
        // Fed in awkward pieces, it decodes the same.
        for piece in [1usize, 7, 64, w.buf.len()] {
            let mut reader = CopyReader {
                header_done: false,
                done: false,
            };
            let mut out = Vec::new();
            let mut pending = Vec::new();
            for chunk in w.buf.chunks(piece) {
                pending.extend_from_slice(chunk);
                let used = reader.feed(&pending, &def, &mut out).unwrap();
                pending.drain(..used);
            }
            assert!(reader.done && pending.is_empty());
            assert_eq!(out.len(), 3);
            assert_eq!(out[1].properties[1], Value::Null);
            assert_eq!(out[2].properties[0], Value::text("东湖"));
            assert_eq!(out[2].properties[3], Value::Bool(true));
            assert_eq!(out[0].geometry, g);
        }
    }
}
