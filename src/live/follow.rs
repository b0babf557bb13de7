//! Following the change log: changes that other servers sharing the store
//! wrote reach this server's catalog, tile cache and live subscribers.
//!
//! The change log's sequence number is the truth: every
//! [`FOLLOW_EVERY`] the follower compares the store's newest seq with the
//! catalog's, and when the store is ahead it reads the rows after the
//! catalog's seq (under the write lock, so the local writer and publishes
//! are not interleaved), turns them into patches, swaps the catalog, drops
//! the tiles under the old and new geometries and sends the same `event`,
//! `changed` and `stats` messages a local write sends. Rows this server
//! wrote itself are never read again: its writers move the catalog's seq
//! past them. A server that was down catches up the same way at start
//! (it loads the store as it is). Bulk rows (an import) or a new layer
//! reload the whole catalog; plan rows make the plan book reload.

use super::{changed_message, event_message, stats_message};
use crate::app::App;
use crate::index::{Catalog, NO_GRID, Patch, representative_point};
use crate::model::{Feature, Value, builtin};
use crate::store::Change;
use geo::{BoundingRect, Rect};
use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the store is asked whether someone else wrote, when it has no
/// notifications (the GeoPackage) or its listener is down.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// The poll behind notifications: a missed one costs at most this much.
pub const FOLLOW_SAFETY: Duration = Duration::from_secs(2);
/// The shortest time between two rounds woken by notifications: an idle
/// server follows a write at once, a busy stream of them (200 orders/s
/// on another server) is taken a few rows per round instead of one round
/// per order (each round is a few queries, a catalog swap and a write
/// lock; the replication benchmark measured one round per order).
pub const FOLLOW_MIN_ROUND: Duration = Duration::from_millis(20);
/// Rows read per round trip.
const PAGE: i64 = 5000;

/// Whether the store answers, as this server last saw it: the follower
/// asks on every round, `/healthz` on every request. Served to
/// `/healthz`; state changes are logged once, not on every failed round.
#[derive(Default)]
pub struct Health(std::sync::Mutex<HealthState>);

#[derive(Clone, Debug, Default)]
pub struct HealthState {
    /// The last error, while the store is unreachable.
    pub error: Option<String>,
    /// When the store last became unreachable or reachable (UTC, ISO 8601).
    pub since: Option<String>,
    /// The store's newest change-log seq when last asked.
    pub store_seq: i64,
    /// `Some(listening)` when the store notifies changes; `None`: polling.
    pub listening: Option<bool>,
    /// Times the store became unreachable since start.
    pub outages: u64,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn get(&self) -> HealthState {
        self.lock().clone()
    }

    /// The `health` message for live subscribers (and `hello`'s `store`).
    pub fn message_data(&self) -> serde_json::Value {
        let h = self.get();
        serde_json::json!({
            "store": if h.error.is_some() { "unreachable" } else { "ok" },
            "since": h.since,
            "error": h.error,
        })
    }

    /// Records the outcome of asking the store for its newest seq.
    pub fn observe(&self, r: &Result<i64, String>, store: &str) {
        let mut h = self.lock();
        match r {
            Ok(seq) => {
                h.store_seq = *seq;
                if h.error.take().is_some() {
                    tracing::info!("store {store} answers again");
                    h.since = Some(crate::model::value::format_utc(chrono::Utc::now()));
                }
            }
            Err(e) => {
                if h.error.is_none() {
                    tracing::warn!(
                        "store {store} unreachable: {e}; serving reads from memory, refusing writes, retrying"
                    );
                    h.since = Some(crate::model::value::format_utc(chrono::Utc::now()));
                    h.outages += 1;
                }
                h.error = Some(e.clone());
            }
        }
    }

    fn set_listening(&self, l: Option<bool>) {
        self.lock().listening = l;
    }
}

/// Runs until the state is gone. Wakes on the store's change
/// notifications (PostGIS LISTEN) when it has them, polling every
/// [`FOLLOW_SAFETY`] behind them; otherwise, or while the listener is
/// down, polls every [`FOLLOW_EVERY`].
pub async fn follower(state: Weak<App>) {
    let mut wake = state.upgrade().and_then(|s| s.store.change_notifications());
    let mut was_down = false;
    let mut last_round = tokio::time::Instant::now();
    loop {
        let listening = wake.as_ref().map(|rx| rx.borrow().listening);
        let pause = if listening == Some(true) {
            FOLLOW_SAFETY
        } else {
            FOLLOW_EVERY
        };
        match wake.as_mut() {
            Some(rx) => {
                tokio::select! {
                    r = rx.changed() => if r.is_err() { wake = None },
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            None => tokio::time::sleep(pause).await,
        }
        tokio::time::sleep_until(last_round + FOLLOW_MIN_ROUND).await;
        last_round = tokio::time::Instant::now();
        let Some(st) = state.upgrade() else { break };
        let listening = wake.as_ref().map(|rx| rx.borrow().listening);
        st.health.set_listening(listening);
        // A lost listener or a known outage: ask the store directly, which
        // fails at once with the cause (the pool would wait out its
        // timeout), so screens hear of an outage in a moment.
        if (listening == Some(false) || st.health.get().error.is_some())
            && let Err(e) = st.store.ping().await
        {
            st.health.observe(&Err(e.to_string()), &st.store.describe());
        } else if let Err(e) = catch_up(&st).await {
            // Unreachable stores are logged by `Health`, once per outage.
            if st.health.get().error.is_none() {
                tracing::warn!("following the change log: {e}");
            }
        }
        // Screens learn that what they show is frozen (and when it is not).
        let down = st.health.get().error.is_some();
        if down != was_down {
            was_down = down;
            st.live.publish(super::Msg::new(
                None,
                "health",
                st.health.message_data().to_string(),
            ));
        }
    }
}

/// Applies every change-log row after the catalog's seq. Returns how many
/// rows were read.
pub async fn catch_up(st: &App) -> anyhow::Result<usize> {
    let newest = st.store.last_seq().await.map_err(|e| e.to_string());
    st.health.observe(&newest, &st.store.describe());
    if newest.map_err(anyhow::Error::msg)? <= st.catalog().seq {
        return Ok(0);
    }
    let _w = st.write_lock.lock().await;
    catch_up_locked(st).await
}

/// [`catch_up`] for a caller that holds the write lock.
pub async fn catch_up_locked(st: &App) -> anyhow::Result<usize> {
    if st.store.last_seq().await? <= st.catalog().seq {
        return Ok(0);
    }
    let mut total = 0;
    loop {
        let cat = st.catalog();
        let rows = st.store.changes_since(cat.seq, PAGE).await?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            break;
        };
        total += rows.len();
        // Our own change sets are in the catalog already.
        let foreign: Vec<Change> = rows
            .iter()
            .filter(|r| !st.own.contains(r.txn))
            .cloned()
            .collect();
        apply_rows(st, &cat, &foreign, last).await?;
        st.own.forget_through(last);
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    Ok(total)
}

fn feature_of(doc: &J, id: i64, version: i64, def: &crate::model::LayerDef) -> Option<Feature> {
    let mut f = Feature::from_geojson(doc, id, version, def)?;
    f.geometry = def.geometry.coerce(f.geometry).ok()?;
    Some(f)
}

fn grow(acc: &mut BTreeMap<String, Rect>, layer: &str, r: Option<Rect>) {
    if let Some(r) = r {
        acc.entry(layer.to_string())
            .and_modify(|b| *b = crate::index::rect_union(*b, r))
            .or_insert(r);
    }
}

async fn apply_rows(
    st: &App,
    cat: &Arc<Catalog>,
    rows: &[Change],
    last: i64,
) -> anyhow::Result<()> {
    let structural = rows.iter().any(|r| {
        r.op == "create_layer"
            || r.op == "bulk_insert"
            || (!builtin::is_internal(&r.layer) && cat.layer(&r.layer).is_none())
    });
    if rows.iter().any(|r| builtin::is_internal(&r.layer)) {
        st.plans.forget().await;
    }
    if structural {
        // An import or a new layer: load everything again.
        let next = Catalog::load(st.store.as_ref()).await?;
        let seq = next.seq;
        let boxes: Vec<(String, Rect)> = next
            .layers
            .iter()
            .filter_map(|l| l.bbox.map(|b| (l.def.name.clone(), b)))
            .collect();
        st.set_catalog(next);
        st.live.forget_ext().await;
        st.tiles
            .invalidate_rects(boxes.iter().map(|(_, b)| *b).collect());
        for (layer, b) in boxes {
            st.live.publish(changed_message(&layer, b, seq));
        }
        return Ok(());
    }
    let mut patches = Vec::new();
    let mut dirty: Vec<Rect> = Vec::new();
    let mut boxes: BTreeMap<String, Rect> = BTreeMap::new();
    let mut new_ext: Vec<(String, i64)> = Vec::new();
    let mut nodes = BTreeSet::new();
    let mut patches_points: Vec<geo::Point> = Vec::new();
    for r in rows {
        let Some(l) = cat.layer(&r.layer) else {
            continue;
        };
        let Some(fid) = r.fid else { continue };
        // Stats of the grids the feature leaves (and enters, below).
        if let Some(i) = l.position(fid) {
            let n = l.grid_node(i);
            if n != NO_GRID {
                nodes.insert(n);
            }
        }
        let before = l.get(fid).and_then(|f| f.geometry.bounding_rect());
        let after = match (&r.after, r.op.as_str()) {
            (Some(doc), "insert" | "update") => {
                feature_of(doc, fid, r.version.unwrap_or(1), &l.def)
            }
            _ => None,
        };
        if r.op != "delete" && after.is_none() {
            tracing::warn!(seq = r.seq, layer = %r.layer, "change-log row without a readable feature");
            continue;
        }
        let after_box = after.as_ref().and_then(|f| f.geometry.bounding_rect());
        for b in [before, after_box].into_iter().flatten() {
            dirty.push(b);
        }
        grow(&mut boxes, &r.layer, before);
        grow(&mut boxes, &r.layer, after_box);
        if r.layer == builtin::EVENTS
            && r.op == "insert"
            && let Some(e) = after
                .as_ref()
                .and_then(|f| f.get(&l.def, "ext_id"))
                .and_then(Value::as_str)
        {
            new_ext.push((e.to_string(), fid));
        }
        if let Some(p) = after
            .as_ref()
            .and_then(|f| representative_point(&f.geometry))
        {
            patches_points.push(p);
        }
        patches.push(Patch {
            layer: r.layer.clone(),
            id: fid,
            after,
        });
    }
    let next = if patches.is_empty() {
        let mut c = (**cat).clone();
        c.seq = last;
        c
    } else {
        let cat2 = cat.clone();
        tokio::task::spawn_blocking(move || cat2.apply(&patches, last)).await?
    };
    st.set_catalog(next);
    let now = st.catalog();
    for p in &patches_points {
        let n = now.grids.locate(*p);
        if n != NO_GRID {
            nodes.insert(n);
        }
    }
    // Old node numbers may not survive a change of grids.
    if boxes.contains_key(builtin::GRIDS) {
        nodes.clear();
        for p in &patches_points {
            let n = now.grids.locate(*p);
            if n != NO_GRID {
                nodes.insert(n);
            }
        }
    }
    st.live.remember_ext(new_ext).await;
    st.tiles.invalidate_rects(dirty);
    for r in rows {
        if let Some(m) = event_message(r, &now) {
            st.live.publish(m);
        }
    }
    for (layer, b) in &boxes {
        st.live.publish(changed_message(layer, *b, last));
    }
    if !nodes.is_empty() {
        st.live.publish(stats_message(&now, &nodes));
    }
    Ok(())
}
