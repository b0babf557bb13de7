//! The live path: work orders in, the catalog, tiles and screens updated.
//!
//! One writer task owns every live write. It takes requests from a queue in
//! batches, checks them against the current catalog (idempotency by the
//! order's external id, status rules), writes each batch to the store as one
//! transaction, and only then makes the next catalog snapshot
//! ([`Catalog::apply`]), drops the affected tiles from the cache, broadcasts
//! the messages and answers the requests. So an acknowledged order is in the
//! store's change log, and every message a screen sees is backed by it.
//!
//! Messages are derived from the change log rows the batch wrote, the same
//! way a reconnecting client's missed messages are replayed from the log
//! (`Last-Event-ID`), so both paths say the same thing. `event` messages
//! carry the change-log sequence number as their SSE id.
//!
//! The hub is a bounded broadcast channel of pre-serialised messages: a
//! subscriber that falls behind by more than its capacity is dropped (its
//! stream ends; it reconnects and catches up from the log), so a slow screen
//! never slows the others or grows memory.
//!
//! The writer also moves the catalog's clock every [`CLOCK_TICK`]: orders
//! that pass their deadline become overdue (tiles and `stats` follow), and
//! at local midnight "today" starts over.

pub mod follow;
pub mod ingest;
pub mod replay;

use crate::index::{Catalog, NO_GRID, Patch, event_overdue, now_ms};
use crate::model::value::format_utc;
use crate::model::{Feature, GridLevel, Value, builtin};
use crate::store::{Change, ChangeSet, Op, StoreError};
use geo::{Geometry, Point, Rect};
use ingest::{IDENTITY, Incoming, PatchBody, transition_allowed};
use serde_json::{Value as J, json};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Messages a subscriber may fall behind by before it is dropped.
pub const HUB_CAPACITY: usize = 4096;
/// Requests the writer takes into one store transaction, at most.
const BATCH: usize = 256;
/// How often the writer moves the catalog's clock.
pub const CLOCK_TICK: Duration = Duration::from_secs(15);

/// One message for live subscribers, serialised once.
#[derive(Debug)]
pub struct Msg {
    /// The change-log sequence number (for `event` messages).
    pub id: Option<i64>,
    pub event: &'static str,
    pub data: String,
    /// The whole Server-Sent Events frame (`id:`, `event:`, `data:`),
    /// encoded once and shared by every subscriber.
    pub frame: bytes::Bytes,
}

impl Msg {
    pub fn new(id: Option<i64>, event: &'static str, data: String) -> Msg {
        let frame = sse_frame(id, event, &data);
        Msg {
            id,
            event,
            data,
            frame,
        }
    }
}

/// One SSE frame. `data` is one line per line of the text (JSON from
/// serde_json has none, but a frame must stay well formed whatever it is).
pub fn sse_frame(id: Option<i64>, event: &str, data: &str) -> bytes::Bytes {
    let mut b = String::with_capacity(data.len() + event.len() + 32);
    if let Some(id) = id {
        b.push_str("id: ");
        b.push_str(&id.to_string());
        b.push('\n');
    }
    b.push_str("event: ");
    b.push_str(event);
    b.push('\n');
    for line in data.split('\n') {
        b.push_str("data: ");
        b.push_str(line.strip_suffix('\r').unwrap_or(line));
        b.push('\n');
    }
    b.push('\n');
    bytes::Bytes::from(b)
}

/// A refusal, with the HTTP status it maps to.
#[derive(Debug, Clone)]
pub enum Refusal {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    /// The store may answer again (503, retry).
    Unavailable(String),
    /// A fault retrying will not cure (500).
    Failed(String),
}

/// The answer to one ingest request.
#[derive(Debug)]
pub struct Ingested {
    pub seq: i64,
    /// Per order: ext id, fid, created or unchanged, grid codes.
    pub results: Vec<J>,
    pub created: usize,
}

enum Job {
    Ingest {
        orders: Vec<Incoming>,
        author: String,
        reply: oneshot::Sender<Result<Ingested, Refusal>>,
    },
    Patch {
        ext_id: String,
        body: PatchBody,
        author: String,
        reply: oneshot::Sender<Result<J, Refusal>>,
    },
}

/// The live hub and the writer's queue.
pub struct Live {
    hub: broadcast::Sender<Arc<Msg>>,
    /// External id → feature id of work orders (built on first use).
    ext: tokio::sync::Mutex<Option<ExtIndex>>,
    jobs: mpsc::Sender<Job>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Job>>>,
    /// Set when the server shuts down: every live stream ends, so a
    /// graceful shutdown does not wait on screens that never hang up.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

impl Live {
    pub fn new() -> Live {
        Live::with_capacity(HUB_CAPACITY)
    }

    /// A hub that lets subscribers fall `capacity` messages behind.
    pub fn with_capacity(capacity: usize) -> Live {
        let (hub, _) = broadcast::channel(capacity.max(1));
        let (jobs, rx) = mpsc::channel(4096);
        Live {
            hub,
            ext: Default::default(),
            jobs,
            rx: std::sync::Mutex::new(Some(rx)),
            closing: tokio::sync::watch::channel(false).0,
        }
    }

    /// Ends every live stream (the server is shutting down).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// A subscriber's messages (see [`subscription`]), ending at shutdown.
    pub fn stream(
        &self,
        rx: broadcast::Receiver<Arc<Msg>>,
        replayed: i64,
    ) -> impl futures::Stream<Item = Arc<Msg>> + Send + use<> {
        let mut closing = self.closing.subscribe();
        let until = async move {
            let _ = closing.wait_for(|c| *c).await;
        };
        futures::StreamExt::take_until(subscription(rx, replayed), Box::pin(until))
    }

    /// Starts the writer for this state (once; needs a tokio runtime).
    pub fn start(state: &Arc<crate::app::App>) {
        let rx = match state.live.rx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(rx) = rx {
            tokio::spawn(writer(Arc::downgrade(state), rx));
        }
    }

    /// Forgets the external-id index (the catalog was reloaded).
    pub async fn forget_ext(&self) {
        *self.ext.lock().await = None;
    }

    /// Adds work orders another server created to the external-id index.
    pub async fn remember_ext(&self, orders: Vec<(String, i64)>) {
        if let Some(ext) = self.ext.lock().await.as_mut() {
            for (e, fid) in orders {
                ext.map.insert(e.into_boxed_str(), fid);
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Msg>> {
        self.hub.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.hub.receiver_count()
    }

    /// Sends a message to every subscriber.
    pub fn publish(&self, m: Msg) {
        // No subscribers is fine.
        let _ = self.hub.send(Arc::new(m));
    }

    pub async fn ingest(&self, orders: Vec<Incoming>, author: String) -> Result<Ingested, Refusal> {
        self.ask(|reply| Job::Ingest {
            orders,
            author,
            reply,
        })
        .await
    }

    pub async fn patch(
        &self,
        ext_id: String,
        body: PatchBody,
        author: String,
    ) -> Result<J, Refusal> {
        self.ask(|reply| Job::Patch {
            ext_id,
            body,
            author,
            reply,
        })
        .await
    }

    /// Queues a job for the writer and waits for its answer.
    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, Refusal>>) -> Job,
    ) -> Result<T, Refusal> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(job(reply))
            .await
            .map_err(|_| Refusal::Unavailable("the live writer is not running".into()))?;
        rx.await
            .map_err(|_| Refusal::Unavailable("the live writer stopped".into()))?
    }
}

/// A subscriber's messages from now on, skipping `event` messages at or
/// below `replayed` (already sent from the log). The stream ends when the
/// subscriber has fallen more than the hub's capacity behind: a slow client
/// is dropped instead of holding memory or slowing the others; it
/// reconnects with its Last-Event-ID and catches up from the change log.
pub fn subscription(
    rx: broadcast::Receiver<Arc<Msg>>,
    replayed: i64,
) -> impl futures::Stream<Item = Arc<Msg>> + Send {
    futures::stream::unfold(Some(rx), move |rx| async move {
        let mut rx = rx?;
        loop {
            match rx.recv().await {
                Ok(m) if m.id.is_some_and(|id| id <= replayed) => continue,
                Ok(m) => return Some((m, Some(rx))),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::info!("live subscriber {n} messages behind: dropped");
                    return None;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// The grid codes of a node at every level below the district.
pub fn grid_codes(cat: &Catalog, node: u32) -> J {
    let mut m = serde_json::Map::new();
    if node != NO_GRID {
        let code = &cat.grids.nodes[node as usize].code;
        for level in [
            GridLevel::Street,
            GridLevel::Community,
            GridLevel::Grid,
            GridLevel::Micro,
        ] {
            m.insert(
                level.to_string(),
                code.ancestor(level)
                    .map(|c| J::String(c.to_string()))
                    .unwrap_or(J::Null),
            );
        }
    }
    J::Object(m)
}

/// The `event` message for one change-log row of the events layer (None
/// for other layers and for bulk summaries).
pub fn event_message(c: &Change, cat: &Catalog) -> Option<Msg> {
    if c.layer != builtin::EVENTS {
        return None;
    }
    let fid = c.fid?;
    let (op, doc) = match (&c.after, &c.before) {
        (Some(a), _) => (
            if c.op == "insert" {
                "created"
            } else {
                "updated"
            },
            a,
        ),
        (None, Some(b)) => ("deleted", b),
        _ => return None,
    };
    let props = doc.get("properties")?;
    let coords = doc.pointer("/geometry/coordinates")?.as_array()?;
    let (lon, lat) = (coords.first()?.as_f64()?, coords.get(1)?.as_f64()?);
    let node = cat.grids.locate(Point::new(lon, lat));
    let overdue = match cat.layer(builtin::EVENTS) {
        Some(l) => {
            let f = Feature {
                id: fid,
                version: c.version.unwrap_or(0),
                geometry: Geometry::Point(Point::new(lon, lat)),
                properties: l
                    .def
                    .properties
                    .iter()
                    .map(|p| props.get(&p.name).map(value_of).unwrap_or(Value::Null))
                    .collect(),
            };
            op != "deleted" && event_overdue(&l.def, &f, cat.now_ms)
        }
        None => false,
    };
    let p = |k: &str| props.get(k).cloned().unwrap_or(J::Null);
    let data = json!({
        "op": op,
        "seq": c.seq,
        "id": p("ext_id"),
        "fid": fid,
        "lon": lon,
        "lat": lat,
        "source": p("source"),
        "category": p("category"),
        "status": p("status"),
        "title": p("title"),
        "created_at": p("created_at"),
        "deadline": p("deadline"),
        "closed_at": p("closed_at"),
        "department": p("department"),
        "overdue": overdue,
        "grids": grid_codes(cat, node),
    });
    Some(Msg::new(Some(c.seq), "event", data.to_string()))
}

/// The `event` message for an order that has just passed its deadline:
/// `op` is `overdue`; no SSE id, as nothing was written (overdue is derived
/// from the clock; a reconnecting client gets it from `/api/stats`).
fn overdue_message(cat: &Catalog, f: &Feature) -> Option<Msg> {
    let l = cat.layer(builtin::EVENTS)?;
    let Geometry::Point(p) = f.geometry else {
        return None;
    };
    let mut props = serde_json::Map::new();
    for (d, v) in l.def.properties.iter().zip(&f.properties) {
        props.insert(d.name.clone(), v.to_json());
    }
    let c = Change {
        seq: cat.seq,
        txn: cat.seq,
        time: iso(cat.now_ms),
        author: String::new(),
        reason: String::new(),
        layer: builtin::EVENTS.into(),
        fid: Some(f.id),
        op: "update".into(),
        version: Some(f.version),
        before: None,
        after: Some(
            json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [p.x(), p.y()]}, "properties": props}),
        ),
    };
    let m = event_message(&c, cat)?;
    let mut data: J = serde_json::from_str(&m.data).ok()?;
    data["op"] = json!("overdue");
    Some(Msg::new(None, "event", data.to_string()))
}

fn value_of(v: &J) -> Value {
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_f64().map(Value::Float))
            .unwrap_or(Value::Null),
        J::String(s) => Value::text(s),
        other => Value::text(other.to_string()),
    }
}

/// The aggregates of a node in `stats` messages.
fn node_stats(cat: &Catalog, n: u32) -> J {
    let node = &cat.grids.nodes[n as usize];
    let s = &cat.stats[n as usize];
    let fid = cat
        .layer(builtin::GRIDS)
        .and_then(|g| g.features.get(node.feature as usize))
        .map(|f| f.id);
    json!({
        "level": node.level.to_string(),
        "fid": fid,
        "events_open": s.events_open,
        "events_overdue": s.events_overdue,
        "today_new": s.today_new,
        "today_closed": s.today_closed,
        "closed": s.closed,
        "closed_on_time": s.closed_on_time,
    })
}

/// The `stats` message for these nodes and all their ancestors.
pub fn stats_message(cat: &Catalog, nodes: &BTreeSet<u32>) -> Msg {
    let mut all = BTreeSet::new();
    for &n in nodes {
        let mut k = n;
        while k != NO_GRID && all.insert(k) {
            k = cat.grids.nodes[k as usize].parent;
        }
    }
    let mut areas = serde_json::Map::new();
    for n in all {
        areas.insert(
            cat.grids.nodes[n as usize].code.to_string(),
            node_stats(cat, n),
        );
    }
    Msg::new(
        None,
        "stats",
        json!({
            "as_of": iso(now_ms()),
            "day": local_day(cat.now_ms),
            "seq": cat.seq,
            "areas": areas,
        })
        .to_string(),
    )
}

/// ISO 8601 UTC of ms since the epoch.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(format_utc)
        .unwrap_or_default()
}

/// The local (UTC+8) date of an instant.
pub fn local_day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms + crate::index::LOCAL_OFFSET_MS)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

pub fn changed_message(layer: &str, bbox: Rect, seq: i64) -> Msg {
    Msg::new(
        None,
        "changed",
        json!({
            "layer": layer,
            "bbox": [bbox.min().x, bbox.min().y, bbox.max().x, bbox.max().y],
            "seq": seq,
        })
        .to_string(),
    )
}

fn point_rect(p: Point) -> Rect {
    Rect::new(p.0, p.0)
}

fn grow(acc: &mut Option<Rect>, r: Rect) {
    *acc = Some(acc.map_or(r, |a| crate::index::rect_union(a, r)));
}

// ---------------------------------------------------------------------------
// The writer.

/// External id → feature id, for the events layer. Built from the catalog
/// when the writer starts, kept up to date by it.
struct ExtIndex {
    map: HashMap<Box<str>, i64>,
}

impl ExtIndex {
    fn build(cat: &Catalog) -> ExtIndex {
        let mut map = HashMap::new();
        if let Some(l) = cat.layer(builtin::EVENTS)
            && let Some(k) = l.def.prop_index("ext_id")
        {
            for f in l.features.iter() {
                if let Some(Value::Text(s)) = f.properties.get(k) {
                    map.insert(s.clone(), f.id);
                }
            }
        }
        ExtIndex { map }
    }
}

async fn writer(state: Weak<crate::app::App>, mut rx: mpsc::Receiver<Job>) {
    let period = state
        .upgrade()
        .map(|s| s.config.clock_tick)
        .unwrap_or(CLOCK_TICK)
        .max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut queue: VecDeque<Job> = VecDeque::new();
    loop {
        if queue.is_empty() {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(j) => queue.push_back(j),
                    None => break,
                },
                _ = tick.tick() => {
                    let Some(st) = state.upgrade() else { break };
                    let _w = st.write_lock.lock().await;
                    advance_clock(&st);
                    continue;
                }
            }
        }
        while queue.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => queue.push_back(j),
                Err(_) => break,
            }
        }
        let Some(st) = state.upgrade() else { break };
        // Plans publish under the same lock: one writer of the catalog.
        let _w = st.write_lock.lock().await;
        // What other servers wrote comes first (their orders may be the
        // ones this batch names).
        if let Err(e) = follow::catch_up_locked(&st).await {
            tracing::warn!("following the change log: {e}");
        }
        let mut ext = st.live.ext.lock().await;
        let ext = ext.get_or_insert_with(|| ExtIndex::build(&st.catalog()));
        run_batch(&st, ext, &mut queue).await;
    }
    tracing::debug!("live writer stopped");
}

fn advance_clock(st: &crate::app::App) {
    let cat = st.catalog();
    let (next, became) = cat.advance_clock(now_ms());
    let day_changed = next.day_start_ms() != cat.day_start_ms();
    st.set_catalog(next);
    let cat = st.catalog();
    if became.is_empty() && !day_changed {
        return;
    }
    let Some(l) = cat.layer(builtin::EVENTS) else {
        return;
    };
    let mut nodes = BTreeSet::new();
    let mut bbox = None;
    for id in &became {
        if let Some(i) = l.position(*id) {
            if let Some(m) = overdue_message(&cat, &l.features[i]) {
                st.live.publish(m);
            }
            if let Some(p) = crate::index::representative_point(&l.features[i].geometry) {
                st.tiles.invalidate_bbox(point_rect(p));
                grow(&mut bbox, point_rect(p));
            }
            let n = l.grid_node(i);
            if n != NO_GRID {
                nodes.insert(n);
            }
        }
    }
    if day_changed {
        // Every area's "today" changed: send the top of the tree; clients
        // refetch /api/stats when `day` changes.
        nodes.extend(
            (0..cat.grids.nodes.len() as u32)
                .filter(|&n| cat.grids.nodes[n as usize].parent == NO_GRID),
        );
    }
    if let Some(b) = bbox {
        st.live
            .publish(changed_message(builtin::EVENTS, b, cat.seq));
    }
    st.live.publish(stats_message(&cat, &nodes));
}

/// What one job will write, decided before the store sees anything.
enum Plan {
    Ingest {
        /// Per order: Some(op index) for a new order, None when unchanged
        /// (then the existing fid).
        rows: Vec<(String, Option<usize>, Option<i64>, u32)>,
    },
    Patch {
        ext_id: String,
        op: Option<usize>,
        fid: i64,
        node: u32,
        status: String,
    },
}

async fn run_batch(st: &Arc<crate::app::App>, ext: &mut ExtIndex, queue: &mut VecDeque<Job>) {
    let cat = st.catalog();
    let Some(layer) = cat.layer(builtin::EVENTS) else {
        for job in queue.drain(..) {
            refuse(
                job,
                Refusal::Unavailable("this store has no events layer".into()),
            );
        }
        return;
    };
    let def = layer.def.clone();
    let now = now_ms();
    let now_s = iso(now);
    let mut cs = ChangeSet::new("api", "live work orders");
    let mut taken: Vec<(Job, Plan)> = Vec::new();
    // Ext ids this batch creates: a later job about one of them waits for
    // the next batch (its fid is not known before the store assigns it).
    let mut creating: BTreeSet<String> = BTreeSet::new();
    let mut batch_author: Option<String> = None;
    let mut patched: BTreeSet<String> = BTreeSet::new();
    while let Some(job) = queue.pop_front() {
        let (touches, job_author): (Vec<&str>, &str) = match &job {
            Job::Ingest { orders, author, .. } => {
                (orders.iter().map(|o| o.ext_id.as_str()).collect(), author)
            }
            Job::Patch { ext_id, author, .. } => (vec![ext_id.as_str()], author),
        };
        // One transaction has one author in the change log: a request from
        // someone else waits for the next batch.
        let other_author = batch_author.as_deref().is_some_and(|a| a != job_author);
        if other_author
            || touches
                .iter()
                .any(|e| creating.contains(*e) || patched.contains(*e))
        {
            queue.push_front(job);
            break;
        }
        batch_author.get_or_insert_with(|| job_author.to_string());
        match job {
            Job::Ingest {
                orders,
                author,
                reply,
            } => {
                let mut rows = Vec::with_capacity(orders.len());
                let mut ops = Vec::new();
                let mut fault = None;
                for o in &orders {
                    let node = cat.grids.locate(o.point);
                    if node == NO_GRID {
                        fault = Some(Refusal::BadRequest(format!(
                            "order {:?}: ({}, {}) lies outside every grid of the district",
                            o.ext_id,
                            o.point.x(),
                            o.point.y()
                        )));
                        break;
                    }
                    if let Some(&fid) = ext.map.get(o.ext_id.as_str())
                        && let Some(f) = layer.get(fid)
                    {
                        if same_order(&def, f, o) {
                            rows.push((o.ext_id.clone(), None, Some(fid), node));
                            continue;
                        }
                        fault = Some(Refusal::Conflict(format!(
                            "order {:?} exists with different content (location, source, category, title, times or department); \
                             change its status with PATCH /api/events/{}",
                            o.ext_id, o.ext_id
                        )));
                        break;
                    }
                    let code = cat.grids.nodes[node as usize].code.to_string();
                    ops.push(Op::Insert {
                        layer: builtin::EVENTS.into(),
                        id: None,
                        geometry: Geometry::Point(o.point),
                        properties: o.properties(&def, &now_s, Some(&code)),
                    });
                    rows.push((o.ext_id.clone(), Some(ops.len() - 1), None, node));
                }
                if let Some(f) = fault {
                    let _ = reply.send(Err(f));
                    continue;
                }
                let base = cs.ops.len();
                for (e, op, _, _) in rows.iter_mut() {
                    if let Some(k) = op {
                        *k += base;
                        creating.insert(e.clone());
                    }
                }
                cs.ops.extend(ops);
                taken.push((
                    Job::Ingest {
                        orders,
                        author,
                        reply,
                    },
                    Plan::Ingest { rows },
                ));
            }
            Job::Patch {
                ext_id,
                body,
                author,
                reply,
            } => {
                let Some((fid, f)) = ext
                    .map
                    .get(ext_id.as_str())
                    .and_then(|&fid| layer.get(fid).map(|f| (fid, f)))
                else {
                    let _ = reply.send(Err(Refusal::NotFound(format!(
                        "no work order with id {ext_id:?}"
                    ))));
                    continue;
                };
                let cur = f
                    .get(&def, "status")
                    .and_then(Value::as_str)
                    .unwrap_or("new")
                    .to_string();
                let mut props = f.properties.clone();
                let mut changed = false;
                if let Some(s) = &body.status
                    && *s != cur
                {
                    if !transition_allowed(&cur, s) {
                        let _ = reply.send(Err(Refusal::Conflict(format!(
                            "work order {ext_id:?} cannot go from {cur} to {s}: statuses only move forward (new → dispatched → processing → closed)"
                        ))));
                        continue;
                    }
                    set(&def, &mut props, "status", Value::text(s));
                    if s == "closed" {
                        set(
                            &def,
                            &mut props,
                            "closed_at",
                            body.closed_at().unwrap_or(Value::text(&now_s)),
                        );
                    }
                    changed = true;
                }
                if let Some(d) = &body.department
                    && f.get(&def, "department").and_then(Value::as_str) != Some(d.as_str())
                {
                    set(&def, &mut props, "department", Value::text(d));
                    changed = true;
                }
                let node = crate::index::representative_point(&f.geometry)
                    .map(|p| cat.grids.locate(p))
                    .unwrap_or(NO_GRID);
                let status = props
                    .get(def.prop_index("status").unwrap_or(usize::MAX))
                    .and_then(Value::as_str)
                    .unwrap_or("new")
                    .to_string();
                let op = if changed {
                    cs.ops.push(Op::Update {
                        layer: builtin::EVENTS.into(),
                        id: fid,
                        expected_version: f.version,
                        geometry: f.geometry.clone(),
                        properties: props,
                    });
                    patched.insert(ext_id.clone());
                    Some(cs.ops.len() - 1)
                } else {
                    None
                };
                taken.push((
                    Job::Patch {
                        ext_id: ext_id.clone(),
                        body,
                        author,
                        reply,
                    },
                    Plan::Patch {
                        ext_id,
                        op,
                        fid,
                        node,
                        status,
                    },
                ));
            }
        }
        if cs.ops.len() >= 4 * BATCH {
            break;
        }
    }
    if taken.is_empty() {
        return;
    }
    if let Some(a) = batch_author {
        cs.author = a;
    }
    // Write, then derive everything from what was written.
    let t0 = std::time::Instant::now();
    let (seq, ids, changes, through) = if cs.ops.is_empty() {
        (cat.seq, Vec::new(), Vec::new(), cat.seq)
    } else {
        let applied = match st.store.apply(&cs).await {
            Ok(a) => a,
            Err(e) => {
                let r = match e {
                    StoreError::Conflict { .. } => Refusal::Conflict(e.to_string()),
                    StoreError::Unreachable(_) => {
                        Refusal::Unavailable(format!("the store refused the write: {e}"))
                    }
                    other => Refusal::Failed(format!("the store refused the write: {other}")),
                };
                for (job, _) in taken {
                    refuse(job, r.clone());
                }
                return;
            }
        };
        let changes = match st
            .store
            .changes_since(
                applied.first_seq - 1,
                applied.last_seq - applied.first_seq + 1,
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reading back the change log: {e}");
                Vec::new()
            }
        };
        // The catalog's seq moves only over a contiguous log: rows another
        // server wrote in between are the follower's (it skips ours).
        let through = if applied.first_seq == cat.seq + 1 {
            applied.last_seq
        } else {
            cat.seq
        };
        (applied.last_seq, applied.ids.clone(), changes, through)
    };
    // The next snapshot.
    let mut patches = Vec::with_capacity(cs.ops.len());
    for (k, op) in cs.ops.iter().enumerate() {
        let id = ids.get(k).copied().unwrap_or(0);
        let version = match op {
            Op::Insert { .. } => 1,
            Op::Update {
                expected_version, ..
            } => expected_version + 1,
            Op::Delete { .. } => 0,
        };
        if let Op::Insert { properties, .. } | Op::Update { properties, .. } = op {
            let geometry = match op {
                Op::Insert { geometry, .. } | Op::Update { geometry, .. } => geometry.clone(),
                Op::Delete { .. } => continue,
            };
            patches.push(Patch {
                layer: builtin::EVENTS.into(),
                id,
                after: Some(Feature {
                    id,
                    version,
                    geometry,
                    properties: properties.clone(),
                }),
            });
        }
    }
    let t_store = t0.elapsed();
    let next = if patches.is_empty() {
        None
    } else {
        let n = cat.apply(&patches, through);
        st.set_catalog(n);
        Some(st.catalog())
    };
    let cat = next.unwrap_or(cat);
    // Tiles: exactly the changed points.
    let mut bbox = None;
    let mut nodes = BTreeSet::new();
    let mut dirty = Vec::with_capacity(patches.len());
    for p in &patches {
        if let Some(f) = &p.after
            && let Geometry::Point(pt) = f.geometry
        {
            dirty.push(point_rect(pt));
            grow(&mut bbox, point_rect(pt));
            let n = cat.grids.locate(pt);
            if n != NO_GRID {
                nodes.insert(n);
            }
        }
    }
    let t_apply = t0.elapsed();
    st.tiles.invalidate_rects(dirty);
    for c in &changes {
        if let Some(m) = event_message(c, &cat) {
            st.live.publish(m);
        }
    }
    if let Some(b) = bbox {
        st.live.publish(changed_message(builtin::EVENTS, b, seq));
        st.live.publish(stats_message(&cat, &nodes));
    }
    let t_all = t0.elapsed();
    if t_all > Duration::from_millis(50) {
        tracing::warn!(
            "slow live batch: {} ops in {:?} (store {:?}, snapshot {:?}, messages {:?})",
            cs.ops.len(),
            t_all,
            t_store,
            t_apply - t_store,
            t_all - t_apply
        );
    }
    // Answers.
    for (job, plan) in taken {
        match (job, plan) {
            (Job::Ingest { reply, .. }, Plan::Ingest { rows }) => {
                let mut created = 0;
                let results = rows
                    .into_iter()
                    .map(|(e, op, fid, node)| {
                        let (fid, result) = match op {
                            Some(k) => {
                                created += 1;
                                ext.map.insert(e.clone().into_boxed_str(), ids[k]);
                                (ids[k], "created")
                            }
                            None => (fid.unwrap_or(0), "unchanged"),
                        };
                        json!({"id": e, "fid": fid, "result": result, "grids": grid_codes(&cat, node)})
                    })
                    .collect();
                let _ = reply.send(Ok(Ingested {
                    seq,
                    results,
                    created,
                }));
            }
            (
                Job::Patch { reply, .. },
                Plan::Patch {
                    ext_id,
                    op,
                    fid,
                    node,
                    status,
                },
            ) => {
                let _ = reply.send(Ok(json!({
                    "id": ext_id,
                    "fid": fid,
                    "status": status,
                    "changed": op.is_some(),
                    "seq": seq,
                    "grids": grid_codes(&cat, node),
                })));
            }
            (job, _) => refuse(job, Refusal::Unavailable("internal mismatch".into())),
        }
    }
}

fn set(def: &crate::model::LayerDef, props: &mut [Value], name: &str, v: Value) {
    if let Some(k) = def.prop_index(name)
        && let Some(slot) = props.get_mut(k)
    {
        *slot = v;
    }
}

/// Whether a resent order is the one stored: same place and the same
/// identity properties wherever the resend gives them.
fn same_order(def: &crate::model::LayerDef, f: &Feature, o: &Incoming) -> bool {
    if f.geometry != Geometry::Point(o.point) {
        return false;
    }
    IDENTITY.iter().all(|k| match o.get(k) {
        None => true,
        Some(v) => f.get(def, k) == Some(v),
    })
}

fn refuse(job: Job, r: Refusal) {
    match job {
        Job::Ingest { reply, .. } => {
            let _ = reply.send(Err(r));
        }
        Job::Patch { reply, .. } => {
            let _ = reply.send(Err(r));
        }
    }
}

// ---------------------------------------------------------------------------
// Stats.

/// `GET /api/stats`: per area of a level (optionally under a parent), open
/// work orders by category and source, today's new and closed, overdue,
/// on-time closure, risks by level, camera online rate; plus the top grids
/// and the overdue list.
pub fn stats(
    cat: &Catalog,
    level: GridLevel,
    parent: Option<u32>,
    scope: Option<&crate::index::scope::Scope>,
) -> J {
    let nodes = &cat.grids.nodes;
    let scoped = |n: u32| scope.is_none_or(|s| s.node(n));
    let under = |mut n: u32, p: u32| {
        while n != NO_GRID {
            if n == p {
                return true;
            }
            n = nodes[n as usize].parent;
        }
        false
    };
    let areas: Vec<u32> = (0..nodes.len() as u32)
        .filter(|&n| {
            let node = &nodes[n as usize];
            node.level == level
                && !node.dedicated
                && parent.is_none_or(|p| under(n, p))
                && scoped(n)
        })
        .collect();
    let pos: HashMap<u32, usize> = areas.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    #[derive(Default, Clone)]
    struct Extra {
        open_by_category: std::collections::BTreeMap<String, u64>,
        open_by_source: std::collections::BTreeMap<String, u64>,
        today_by_category: std::collections::BTreeMap<String, u64>,
        today_by_source: std::collections::BTreeMap<String, u64>,
    }
    let mut extra = vec![Extra::default(); areas.len()];
    let mut total_extra = Extra::default();
    let mut overdue: Vec<(String, J)> = Vec::new();
    let day_start = cat.day_start_ms();
    if let Some(l) = cat.layer(builtin::EVENTS) {
        let d = &l.def;
        let k = |n: &str| d.prop_index(n);
        let (ks, kc, kst, kt) = (k("source"), k("category"), k("status"), k("created_at"));
        let text = |f: &Feature, k: Option<usize>| -> Option<String> {
            k.and_then(|k| f.properties.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        for (i, f) in l.features.iter().enumerate() {
            let mut n = l.grid_node(i);
            let in_parent = parent.is_none_or(|p| under(n, p)) && scoped(n);
            if !in_parent {
                continue;
            }
            while n != NO_GRID && nodes[n as usize].level != level {
                n = nodes[n as usize].parent;
            }
            let slot = pos.get(&n).copied();
            let open = text(f, kst).as_deref() != Some("closed");
            let today = text(f, kt)
                .and_then(|t| crate::model::value::parse_instant(&t))
                .is_some_and(|t| t >= day_start);
            if !open && !today {
                continue;
            }
            let (src, cat_) = (
                text(f, ks).unwrap_or_default(),
                text(f, kc).unwrap_or_default(),
            );
            let bump = |e: &mut Extra| {
                if open {
                    *e.open_by_category.entry(cat_.clone()).or_default() += 1;
                    *e.open_by_source.entry(src.clone()).or_default() += 1;
                }
                if today {
                    *e.today_by_category.entry(cat_.clone()).or_default() += 1;
                    *e.today_by_source.entry(src.clone()).or_default() += 1;
                }
            };
            bump(&mut total_extra);
            if let Some(s) = slot {
                bump(&mut extra[s]);
            }
            if open && event_overdue(d, f, cat.now_ms) {
                let deadline = f
                    .get(d, "deadline")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                overdue.push((
                    deadline.clone(),
                    json!({
                        "id": f.get(d, "ext_id").map(Value::to_json),
                        "fid": f.id,
                        "title": f.get(d, "title").map(Value::to_json),
                        "category": cat_,
                        "source": src,
                        "deadline": deadline,
                        "grid": grid_codes(cat, l.grid_node(i)).get("grid").cloned(),
                    }),
                ));
            }
        }
    }
    overdue.sort_by(|a, b| a.0.cmp(&b.0));
    let agg = |n: &[u32], e: &Extra| -> J {
        let s = sum_stats(n.iter().map(|&n| &cat.stats[n as usize]));
        let rate = |a: u64, b: u64| {
            if b == 0 {
                J::Null
            } else {
                json!(a as f64 / b as f64)
            }
        };
        json!({
            "events_open": s.events_open,
            "events_overdue": s.events_overdue,
            "today_new": s.today_new,
            "today_closed": s.today_closed,
            "closed": s.closed,
            "closed_on_time": s.closed_on_time,
            "on_time_rate": rate(s.closed_on_time, s.closed),
            "open_by_category": e.open_by_category,
            "open_by_source": e.open_by_source,
            "today_by_category": e.today_by_category,
            "today_by_source": e.today_by_source,
            "risks": s.risks,
            "risks_by_level": s.risks_by_level,
            "cameras": s.cameras,
            "cameras_online": s.cameras_online,
            "camera_online_rate": rate(s.cameras_online, s.cameras),
        })
    };
    let grid_fid = |n: u32| {
        cat.layer(builtin::GRIDS)
            .and_then(|g| g.features.get(nodes[n as usize].feature as usize))
            .map(|f| f.id)
    };
    let list: Vec<J> = areas
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let node = &nodes[n as usize];
            let mut a = agg(&[n], &extra[i]);
            a["code"] = json!(node.code.to_string());
            a["name"] = json!(node.name);
            a["level"] = json!(node.level.to_string());
            a["fid"] = json!(grid_fid(n));
            a
        })
        .collect();
    let total_nodes: Vec<u32> = match (parent, scope) {
        (Some(p), _) => vec![p],
        // A scoped principal's totals: its own grids.
        (None, Some(s)) => s
            .codes()
            .iter()
            .filter_map(|c| cat.grids.get(c).map(|(n, _)| n))
            .collect(),
        (None, None) => (0..nodes.len() as u32)
            .filter(|&n| nodes[n as usize].parent == NO_GRID && !nodes[n as usize].dedicated)
            .collect(),
    };
    let mut top: Vec<u32> = (0..nodes.len() as u32)
        .filter(|&n| {
            let node = &nodes[n as usize];
            node.level == GridLevel::Grid
                && !node.dedicated
                && parent.is_none_or(|p| under(n, p))
                && scoped(n)
        })
        .collect();
    top.sort_by_key(|&n| {
        std::cmp::Reverse((
            cat.stats[n as usize].events_open,
            cat.stats[n as usize].events_overdue,
        ))
    });
    let top: Vec<J> = top
        .into_iter()
        .take(10)
        .map(|n| {
            let node = &nodes[n as usize];
            json!({
                "code": node.code.to_string(),
                "name": node.name,
                "fid": grid_fid(n),
                "events_open": cat.stats[n as usize].events_open,
                "events_overdue": cat.stats[n as usize].events_overdue,
            })
        })
        .collect();
    json!({
        "as_of": iso(now_ms()),
        "day": local_day(cat.now_ms),
        "seq": cat.seq,
        "level": level.to_string(),
        "parent": parent.map(|p| nodes[p as usize].code.to_string()),
        "total": agg(&total_nodes, &total_extra),
        "areas": list,
        "top_grids": top,
        "overdue_list": overdue.into_iter().take(20).map(|(_, j)| j).collect::<Vec<_>>(),
    })
}

fn sum_stats<'a>(it: impl Iterator<Item = &'a crate::index::GridStats>) -> crate::index::GridStats {
    let mut t = crate::index::GridStats::default();
    for s in it {
        t.households += s.households;
        t.addresses += s.addresses;
        t.cameras += s.cameras;
        t.cameras_online += s.cameras_online;
        t.risks += s.risks;
        for k in 0..4 {
            t.risks_by_level[k] += s.risks_by_level[k];
        }
        t.buildings += s.buildings;
        t.events += s.events;
        t.events_open += s.events_open;
        t.events_overdue += s.events_overdue;
        t.today_new += s.today_new;
        t.today_closed += s.today_closed;
        t.closed += s.closed;
        t.closed_on_time += s.closed_on_time;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn msg(id: i64) -> Msg {
        Msg::new(Some(id), "event", id.to_string())
    }

    #[tokio::test]
    async fn a_subscriber_that_keeps_up_gets_everything_once() {
        let live = Live::with_capacity(8);
        let rx = live.subscribe();
        for i in 1..=6 {
            live.publish(msg(i));
        }
        // 1..=3 were replayed from the log already.
        let got: Vec<i64> = subscription(rx, 3)
            .take(3)
            .map(|m| m.id.unwrap_or(0))
            .collect()
            .await;
        assert_eq!(got, [4, 5, 6]);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_dropped_and_memory_stays_bounded() {
        let live = Live::with_capacity(8);
        let slow = live.subscribe();
        let mut fast = Box::pin(subscription(live.subscribe(), i64::MIN));
        for i in 1..=100 {
            live.publish(msg(i));
            // The fast one reads as messages come.
            assert_eq!(fast.next().await.and_then(|m| m.id), Some(i));
        }
        // The slow one never read: its stream ends instead of buffering 100.
        let rest: Vec<Arc<Msg>> = subscription(slow, i64::MIN).collect().await;
        assert!(
            rest.is_empty(),
            "a lagging subscriber got {} messages",
            rest.len()
        );
        assert!(live.hub.len() <= 8);
    }
}

/// Replays one client address may run at once; more are told to retry
/// (a reconnect storm from one address must not read the log N times).
pub const REPLAYS_PER_CLIENT: usize = 2;

/// The replays in progress per client address.
#[derive(Default)]
pub struct Replays(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One replay in progress; counted until dropped.
pub struct ReplaySlot {
    state: Arc<crate::app::App>,
    ip: std::net::IpAddr,
}

impl Replays {
    pub fn take(st: &Arc<crate::app::App>, ip: std::net::IpAddr) -> Option<ReplaySlot> {
        let mut m = match st.replays.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let n = m.entry(ip).or_default();
        if *n >= REPLAYS_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ReplaySlot {
            state: st.clone(),
            ip,
        })
    }
}

impl Drop for ReplaySlot {
    fn drop(&mut self) {
        let mut m = match self.state.replays.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}
