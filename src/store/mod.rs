//! Persistence: the `Store` trait and its implementations.
//!
//! A store holds layers (schema + features) and a change log. Every write is
//! a [`ChangeSet`]: a list of operations applied atomically (all or nothing),
//! each update or delete carrying the version the writer last saw (optimistic
//! locking), and each appending to the change log, whose sequence numbers only
//! grow. That log is what history, revert and (later) followers read.
//!
//! Callers hold an `Arc<dyn Store>` and never know which backend they talk
//! to: the GeoPackage store is the embedded default, the PostGIS store the
//! server one, with the same contract (and the same contract tests).

pub mod auth;
pub mod copy;
pub mod gpkg;
pub mod gpkg_fn;
pub mod postgis;
pub mod wkb;

use crate::model::{Feature, LayerDef, Value};
use async_trait::async_trait;
use geo::Geometry;
use serde::Serialize;

/// What can go wrong in a store, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown layer {0:?}")]
    UnknownLayer(String),
    #[error("layer {0:?} already exists")]
    LayerExists(String),
    #[error("{layer} feature {id} not found")]
    NotFound { layer: String, id: i64 },
    #[error(
        "{layer} feature {id} was changed by someone else: expected version {expected}, found {actual}"
    )]
    Conflict {
        layer: String,
        id: i64,
        expected: i64,
        actual: i64,
    },
    #[error("operation {index}: {message}")]
    Invalid { index: usize, message: String },
    #[error("store: {0}")]
    Backend(String),
    /// The store cannot be reached (database server down, connection lost,
    /// shutting down): worth retrying, unlike [`StoreError::Backend`].
    #[error("store unreachable: {0}")]
    Unreachable(String),
}

impl StoreError {
    /// Whether trying again later may succeed (the store was unreachable).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable(_))
    }
}

/// Whether a driver error means the database could not be reached (as
/// opposed to refusing a statement).
pub fn unreachable_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLite's extended codes: BUSY (5), LOCKED (6), IOERR (10) and
        // CANTOPEN (14) pass; "no such function" or a broken schema does not.
        sqlx::Error::Database(d) if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            d.code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 14))
        }
        // PostgreSQL: class 08, connection exception; 53, insufficient
        // resources (too many connections); 40001/40P01, serialization
        // failure and deadlock; 57P01–57P03, the server is shutting down,
        // crashed, or not yet accepting connections.
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("53")
                || matches!(c.as_ref(), "40001" | "40P01" | "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if unreachable_error(&e) {
            StoreError::Unreachable(e.to_string())
        } else {
            StoreError::Backend(e.to_string())
        }
    }
}

/// What a store's change notifications have said: how many wake-ups so far
/// (a notification, or a reconnect after which some may have been missed)
/// and whether the listening connection is up now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wakeups {
    pub count: u64,
    pub listening: bool,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One operation of a change set.
#[derive(Clone, Debug)]
pub enum Op {
    /// A new feature. With `id: None` the store allocates the next id (ids are
    /// never reused, even after a delete).
    Insert {
        layer: String,
        id: Option<i64>,
        geometry: Geometry,
        properties: Vec<Value>,
    },
    /// Replace a feature's geometry and properties; refused unless its
    /// current version is `expected_version`.
    Update {
        layer: String,
        id: i64,
        expected_version: i64,
        geometry: Geometry,
        properties: Vec<Value>,
    },
    Delete {
        layer: String,
        id: i64,
        expected_version: i64,
    },
}

impl Op {
    pub fn layer(&self) -> &str {
        match self {
            Op::Insert { layer, .. } | Op::Update { layer, .. } | Op::Delete { layer, .. } => layer,
        }
    }
}

/// How much a change set writes to the change log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogDetail {
    /// One log row per operation with the feature before and after: the
    /// normal case, and the one history and revert rely on.
    PerFeature,
    /// One log row per layer touched, recording the count and id range: for
    /// bulk loads (demo, import of hundreds of thousands of rows), where a
    /// copy of every feature in the log would double the store for nothing.
    Summary,
}

/// An atomic unit of change, with who made it and why (全程留痕).
#[derive(Clone, Debug)]
pub struct ChangeSet {
    pub author: String,
    pub reason: String,
    /// Layers to create first, in the same transaction (an import into a new
    /// layer leaves nothing behind when one of its features is refused).
    pub create: Vec<LayerDef>,
    pub ops: Vec<Op>,
    pub detail: LogDetail,
    /// Audit entries written in the same transaction (a publish, a revert).
    pub audit: Vec<auth::AuditEntry>,
}

impl ChangeSet {
    pub fn new(author: &str, reason: &str) -> ChangeSet {
        ChangeSet {
            author: author.to_string(),
            reason: reason.to_string(),
            create: Vec::new(),
            ops: Vec::new(),
            detail: LogDetail::PerFeature,
            audit: Vec::new(),
        }
    }
}

/// What an accepted change set did: the id and new version of each operation
/// (in order), and the range of change-log sequence numbers it wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub ids: Vec<i64>,
    pub versions: Vec<i64>,
    pub first_seq: i64,
    pub last_seq: i64,
}

/// One row of the change log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub seq: i64,
    /// The first seq of the change set this row belongs to.
    pub txn: i64,
    pub time: String,
    pub author: String,
    pub reason: String,
    pub layer: String,
    pub fid: Option<i64>,
    /// insert, update, delete, or bulk_insert (a summary row).
    pub op: String,
    pub version: Option<i64>,
    /// GeoJSON Feature text of the feature before (update, delete).
    pub before: Option<serde_json::Value>,
    /// GeoJSON Feature text after (insert, update), or the summary.
    pub after: Option<serde_json::Value>,
}

/// The persistence contract. See the module docs.
#[async_trait]
pub trait Store: Send + Sync {
    /// A short description for logs (`gpkg:data/onemap.gpkg`).
    fn describe(&self) -> String;

    /// Succeeds when the store answers.
    async fn ping(&self) -> Result<()>;

    /// Every layer's definition, in creation order.
    async fn layers(&self) -> Result<Vec<LayerDef>>;

    /// Creates an empty layer. Fails if it exists.
    async fn create_layer(&self, def: &LayerDef) -> Result<()>;

    /// Every feature of a layer, by id.
    async fn load_layer(&self, name: &str) -> Result<Vec<Feature>>;

    /// Applies a change set atomically; on any error nothing is changed.
    async fn apply(&self, cs: &ChangeSet) -> Result<Applied>;

    /// Change-log rows with `seq > after`, oldest first, at most `limit`.
    async fn changes_since(&self, after: i64, limit: i64) -> Result<Vec<Change>>;

    /// Every change-log row of one feature, oldest first.
    async fn history(&self, layer: &str, id: i64) -> Result<Vec<Change>>;

    /// Every change-log row of a layer whose feature had `property` =
    /// `value` before or after the change (a grid's history by code, across
    /// the features that held the code), oldest first.
    async fn history_where(&self, layer: &str, property: &str, value: &str) -> Result<Vec<Change>>;

    /// The newest change-log sequence number (0 when empty).
    async fn last_seq(&self) -> Result<i64>;

    /// A value from the store's key/value metadata (seed, scale, datum …).
    async fn meta(&self, key: &str) -> Result<Option<String>>;

    async fn set_meta(&self, key: &str, value: &str) -> Result<()>;

    /// Every key/value of the metadata, sorted by key.
    async fn meta_all(&self) -> Result<Vec<(String, String)>>;

    /// The largest id ever given in a layer (0 if none): the id counter,
    /// which remembers deleted features, so the next insert gets one more.
    async fn last_id(&self, layer: &str) -> Result<i64>;

    /// For copying between stores, not for normal writes: creates the layer
    /// (it must not exist) and writes `features` with their own ids and
    /// versions, in one transaction through the bulk path, then sets the
    /// layer's id counter to `last_id` (or the largest id written, if that
    /// is larger). Writes no change-log row: the log is copied separately
    /// with [`Store::restore_changes`]. Geometries are written as given
    /// (they were coerced when first stored); properties are checked
    /// against the schema.
    async fn restore_layer(&self, def: &LayerDef, features: &[Feature], last_id: i64)
    -> Result<()>;

    /// For copying between stores, not for normal writes: appends
    /// change-log rows verbatim (seq, txn, time, author …) in one
    /// transaction. Refused with [`StoreError::Invalid`] unless the seqs
    /// grow strictly and the first is greater than [`Store::last_seq`];
    /// afterwards the store's own next seq continues after the largest.
    async fn restore_changes(&self, rows: &[Change]) -> Result<()>;

    /// Wake-ups for followers: the value changes whenever the change log
    /// may have grown (any process's write). `None` when the store cannot
    /// tell: followers then poll [`Store::last_seq`]. Each call starts its
    /// own listener, which stops when the receiver is dropped.
    fn change_notifications(&self) -> Option<tokio::sync::watch::Receiver<Wakeups>> {
        None
    }

    /// Every account record (users, tokens, sessions).
    async fn auth_records(&self) -> Result<Vec<auth::AuthRecord>>;

    /// Writes and deletes account records and appends audit entries, in one
    /// transaction; answers the audit rows as stored (numbered, chained).
    async fn write_auth(&self, w: &auth::AuthWrite) -> Result<Vec<auth::AuditRow>>;

    /// A page of the audit trail, newest first.
    async fn audit_page(&self, q: &auth::AuditQuery) -> Result<Vec<auth::AuditRow>>;

    /// Audit rows after `after`, oldest first (verify, copy).
    async fn audit_since(&self, after: i64, limit: i64) -> Result<Vec<auth::AuditRow>>;

    /// Writes audit rows verbatim (`onemap copy`, into an empty trail).
    async fn restore_audit(&self, rows: &[auth::AuditRow]) -> Result<()>;
}

/// The change sets this process wrote (their first seq), so that a
/// follower of the change log tells its own rows from other servers'.
#[derive(Default, Debug)]
pub struct OwnWrites(std::sync::Mutex<std::collections::BTreeSet<i64>>);

impl OwnWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<i64>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn contains(&self, txn: i64) -> bool {
        self.lock().contains(&txn)
    }

    /// Forgets change sets at or below `seq` (already followed past).
    pub fn forget_through(&self, seq: i64) {
        let mut g = self.lock();
        *g = g.split_off(&(seq + 1));
    }
}

/// A store that records the change sets applied through it in
/// [`OwnWrites`]; everything else passes through.
pub struct Tracked {
    inner: std::sync::Arc<dyn Store>,
    own: std::sync::Arc<OwnWrites>,
}

impl Tracked {
    pub fn new(inner: std::sync::Arc<dyn Store>, own: std::sync::Arc<OwnWrites>) -> Tracked {
        Tracked { inner, own }
    }
}

#[async_trait]
impl Store for Tracked {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn layers(&self) -> Result<Vec<LayerDef>> {
        self.inner.layers().await
    }
    async fn create_layer(&self, def: &LayerDef) -> Result<()> {
        // As a change set through `apply`, so it is recorded as ours.
        let mut cs = ChangeSet::new("onemap", "create layer");
        cs.create.push(def.clone());
        self.apply(&cs).await.map(|_| ())
    }
    async fn load_layer(&self, name: &str) -> Result<Vec<Feature>> {
        self.inner.load_layer(name).await
    }
    async fn apply(&self, cs: &ChangeSet) -> Result<Applied> {
        let a = self.inner.apply(cs).await?;
        self.own.lock().insert(a.first_seq);
        Ok(a)
    }
    async fn changes_since(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
        self.inner.changes_since(after, limit).await
    }
    async fn history(&self, layer: &str, id: i64) -> Result<Vec<Change>> {
        self.inner.history(layer, id).await
    }
    async fn history_where(&self, layer: &str, property: &str, value: &str) -> Result<Vec<Change>> {
        self.inner.history_where(layer, property, value).await
    }
    async fn last_seq(&self) -> Result<i64> {
        self.inner.last_seq().await
    }
    async fn meta(&self, key: &str) -> Result<Option<String>> {
        self.inner.meta(key).await
    }
    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.inner.set_meta(key, value).await
    }
    async fn meta_all(&self) -> Result<Vec<(String, String)>> {
        self.inner.meta_all().await
    }
    async fn last_id(&self, layer: &str) -> Result<i64> {
        self.inner.last_id(layer).await
    }
    async fn restore_layer(
        &self,
        def: &LayerDef,
        features: &[Feature],
        last_id: i64,
    ) -> Result<()> {
        self.inner.restore_layer(def, features, last_id).await
    }
    async fn restore_changes(&self, rows: &[Change]) -> Result<()> {
        // Copied rows are not this process's writes: not recorded.
        self.inner.restore_changes(rows).await
    }
    fn change_notifications(&self) -> Option<tokio::sync::watch::Receiver<Wakeups>> {
        self.inner.change_notifications()
    }
    async fn auth_records(&self) -> Result<Vec<auth::AuthRecord>> {
        self.inner.auth_records().await
    }
    async fn write_auth(&self, w: &auth::AuthWrite) -> Result<Vec<auth::AuditRow>> {
        self.inner.write_auth(w).await
    }
    async fn audit_page(&self, q: &auth::AuditQuery) -> Result<Vec<auth::AuditRow>> {
        self.inner.audit_page(q).await
    }
    async fn audit_since(&self, after: i64, limit: i64) -> Result<Vec<auth::AuditRow>> {
        self.inner.audit_since(after, limit).await
    }
    async fn restore_audit(&self, rows: &[auth::AuditRow]) -> Result<()> {
        self.inner.restore_audit(rows).await
    }
}

/// Checks rows for [`Store::restore_changes`]: seqs strictly growing, the
/// first past the store's `last_seq`.
pub(crate) fn check_restored_seqs(rows: &[Change], last_seq: i64) -> Result<()> {
    let mut prev = last_seq;
    for (index, r) in rows.iter().enumerate() {
        if r.seq <= prev {
            return Err(StoreError::Invalid {
                index,
                message: if index == 0 {
                    format!(
                        "change-log row seq {} does not follow the store's last seq {last_seq}: \
                         rows can only be appended after the existing log",
                        r.seq
                    )
                } else {
                    format!(
                        "change-log row seq {} does not follow seq {prev}: rows must be in \
                         seq order",
                        r.seq
                    )
                },
            });
        }
        prev = r.seq;
    }
    Ok(())
}

/// Checks an operation's properties against the schema: one value per
/// property, each of the declared type (or NULL).
pub fn check_properties(def: &LayerDef, props: &[Value]) -> Result<(), String> {
    use crate::model::PropType;
    if props.len() != def.properties.len() {
        return Err(format!(
            "{} properties given, layer {} has {}",
            props.len(),
            def.name,
            def.properties.len()
        ));
    }
    for (d, v) in def.properties.iter().zip(props) {
        let ok = matches!(
            (d.ty, v),
            (_, Value::Null)
                | (PropType::Bool, Value::Bool(_))
                | (PropType::Int, Value::Int(_))
                | (PropType::Float, Value::Float(_) | Value::Int(_))
                | (
                    PropType::Text | PropType::DateTime | PropType::Date,
                    Value::Text(_)
                )
        );
        if !ok {
            return Err(format!(
                "property {} must be {}, got {:?}",
                d.name,
                d.ty.name(),
                v
            ));
        }
    }
    Ok(())
}

/// Opens a store from a location: a `postgres://` or `postgresql://` URL
/// (PostGIS; onemap's tables are created on first use), or a `.gpkg` path
/// (created if absent).
pub async fn open(location: &str) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if copy::is_postgres(location) {
        let s = postgis::PostgisStore::open(location).await?;
        return Ok(std::sync::Arc::new(s));
    }
    let s = gpkg::GpkgStore::open(std::path::Path::new(location)).await?;
    Ok(std::sync::Arc::new(s))
}
