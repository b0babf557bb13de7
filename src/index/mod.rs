//! The in-memory catalog: every layer's features behind an R-tree, the grid
//! hierarchy, and what derives from geometry.
//!
//! Built once from the store at start ([`Catalog::load`]). Derived values are
//! computed here, from geometry, whatever the store says:
//! - for every feature of every non-grid layer, the deepest comprehensive grid
//!   that holds its representative point (the point itself, or an interior
//!   point of a line or polygon); its codes at every level follow from the
//!   code's prefixes;
//! - per grid, at every level: households (summed over address points),
//!   feature counts per layer, open work orders.
//!
//! A point on a boundary shared by two grids belongs to the one with the
//! smaller code, so every point has exactly one grid per level.
//!
//! A catalog is an immutable snapshot. Live writes make the next snapshot
//! with [`Catalog::apply`], which shares everything unchanged with the
//! previous one (layers are `Arc`s, features sit in shared chunks) and
//! updates grid membership and aggregates by the difference of each changed
//! feature, so a work order arriving costs microseconds, not a rebuild.
//!
//! Work orders are overdue when open and past their deadline at the
//! catalog's clock (`now_ms`); [`Catalog::advance_clock`] moves the clock and
//! reports the orders that became overdue.

pub mod chunked;
pub mod grids;
pub mod scope;
pub mod spatial;

pub use chunked::Chunked;

use crate::model::value::parse_instant;
use crate::model::{Feature, LayerDef, builtin};
use crate::store::Store;
use geo::{BoundingRect, Geometry, InteriorPoint, Point, Rect};
use grids::GridTree;
use rayon::prelude::*;
use rstar::{AABB, RTreeObject, primitives::GeomWithData, primitives::Rectangle};
use std::sync::Arc;

/// An R-tree entry: a feature's envelope and its position in `features`.
pub type Entry = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// No grid (outside every comprehensive grid).
pub const NO_GRID: u32 = u32::MAX;

/// One layer in memory.
#[derive(Clone)]
pub struct LayerIndex {
    pub def: LayerDef,
    /// Sorted by id (the store loads them so), so lookups are binary searches.
    pub features: Chunked<Feature>,
    pub tree: spatial::Spatial,
    pub bbox: Option<Rect>,
    /// Per feature: the node (in [`GridTree::nodes`]) of the deepest
    /// comprehensive grid holding it, or [`NO_GRID`]. Empty for `grids`.
    pub grid_of: Chunked<u32>,
}

fn entry_of(f: &Feature, i: usize) -> Option<Entry> {
    let r = f.geometry.bounding_rect()?;
    Some(GeomWithData::new(
        Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
        i as u32,
    ))
}

fn union(a: Option<Rect>, b: Option<Rect>) -> Option<Rect> {
    match (a, b) {
        (Some(a), Some(b)) => Some(rect_union(a, b)),
        (a, b) => a.or(b),
    }
}

/// The smallest rectangle holding both.
pub fn rect_union(a: Rect, b: Rect) -> Rect {
    Rect::new(
        (a.min().x.min(b.min().x), a.min().y.min(b.min().y)),
        (a.max().x.max(b.max().x), a.max().y.max(b.max().y)),
    )
}

/// What two rectangles share (None when they are apart).
pub fn rect_intersection(a: Rect, b: Rect) -> Option<Rect> {
    let (x0, y0) = (a.min().x.max(b.min().x), a.min().y.max(b.min().y));
    let (x1, y1) = (a.max().x.min(b.max().x), a.max().y.min(b.max().y));
    (x0 <= x1 && y0 <= y1).then(|| Rect::new((x0, y0), (x1, y1)))
}

impl LayerIndex {
    pub fn new(def: LayerDef, features: Vec<Feature>) -> LayerIndex {
        let mut features = features;
        if !features.windows(2).all(|w| w[0].id < w[1].id) {
            features.sort_by_key(|f| f.id);
        }
        let entries: Vec<Entry> = features
            .iter()
            .enumerate()
            .filter_map(|(i, f)| entry_of(f, i))
            .collect();
        let bbox = entries.iter().fold(None::<Rect>, |acc, e| {
            let env = e.geom().envelope();
            let (lo, hi) = (env.lower(), env.upper());
            Some(match acc {
                None => Rect::new((lo[0], lo[1]), (hi[0], hi[1])),
                Some(b) => Rect::new(
                    (b.min().x.min(lo[0]), b.min().y.min(lo[1])),
                    (b.max().x.max(hi[0]), b.max().y.max(hi[1])),
                ),
            })
        });
        LayerIndex {
            def,
            tree: spatial::Spatial::bulk_load(entries),
            features: Chunked::from_vec(features),
            bbox,
            grid_of: Chunked::default(),
        }
    }

    /// The position of a feature in `features`, by id.
    pub fn position(&self, id: i64) -> Option<usize> {
        self.features.binary_search_by_key(&id, |f| f.id).ok()
    }

    /// A feature by id.
    pub fn get(&self, id: i64) -> Option<&Feature> {
        self.position(id).map(|i| &self.features[i])
    }

    /// The deepest comprehensive grid node of feature `i`, or [`NO_GRID`].
    pub fn grid_node(&self, i: usize) -> u32 {
        self.grid_of.get(i).copied().unwrap_or(NO_GRID)
    }

    /// R-tree entries whose envelope meets `r` (a point feature's entry is
    /// its point, so callers can test points without touching features).
    pub fn entries_in_rect(&self, r: Rect) -> impl Iterator<Item = &Entry> + '_ {
        let env = AABB::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]);
        self.tree.locate_in_envelope_intersecting(&env)
    }

    /// Indexes of features whose envelope meets `r`.
    pub fn in_rect(&self, r: Rect) -> impl Iterator<Item = u32> + '_ {
        let env = AABB::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]);
        self.tree
            .locate_in_envelope_intersecting(&env)
            .map(|e| e.data)
    }
}

/// The point that stands for a feature when assigning it to a grid.
pub fn representative_point(g: &Geometry) -> Option<Point> {
    match g {
        Geometry::Point(p) => Some(*p),
        other => other.interior_point(),
    }
}

/// Aggregates of one grid, over everything inside it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GridStats {
    pub households: i64,
    pub addresses: u64,
    pub cameras: u64,
    pub cameras_online: u64,
    pub risks: u64,
    /// Risks by level 1–4 (red, orange, yellow, blue).
    pub risks_by_level: [u64; 4],
    pub buildings: u64,
    pub events: u64,
    pub events_open: u64,
    pub events_overdue: u64,
    /// Created since the start of the local day (UTC+8).
    pub today_new: u64,
    /// Closed since the start of the local day.
    pub today_closed: u64,
    pub closed: u64,
    /// Closed no later than their deadline.
    pub closed_on_time: u64,
}

/// The offset of local time (China Standard Time, UTC+8), ms: "today" is
/// the local day.
pub const LOCAL_OFFSET_MS: i64 = 8 * 3_600_000;

/// The start (ms since the epoch) of the local day holding `now`.
pub fn local_day_start(now: i64) -> i64 {
    let day = crate::model::value::DAY_MS;
    (now + LOCAL_OFFSET_MS).div_euclid(day) * day - LOCAL_OFFSET_MS
}

/// What time-dependent aggregates are judged at.
#[derive(Clone, Copy, Debug)]
struct Clock {
    now: i64,
    day_start: i64,
}

impl Clock {
    fn at(now: i64) -> Clock {
        Clock {
            now,
            day_start: local_day_start(now),
        }
    }
}

/// A change to one feature, as a live write or the change log describes
/// it: the feature's new state, or None when it was deleted.
#[derive(Clone, Debug)]
pub struct Patch {
    pub layer: String,
    pub id: i64,
    pub after: Option<Feature>,
}

/// Everything the server answers from.
#[derive(Clone)]
pub struct Catalog {
    /// In the store's order.
    pub layers: Vec<Arc<LayerIndex>>,
    pub grids: Arc<GridTree>,
    /// Per grid node (same indexes as `grids.nodes`).
    pub stats: Vec<GridStats>,
    /// The change-log sequence the catalog reflects.
    pub seq: i64,
    /// The instant (ms since the epoch) "overdue" is judged at.
    pub now_ms: i64,
}

/// The current time, ms since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether a work order is open and past its deadline at `now`. (A stored
/// status `overdue`, from older data, counts as open and overdue.)
pub fn event_overdue(def: &LayerDef, f: &Feature, now: i64) -> bool {
    match f.get(def, "status").and_then(|v| v.as_str()) {
        Some("closed") => false,
        Some("overdue") => true,
        _ => f
            .get(def, "deadline")
            .and_then(|v| v.as_str())
            .and_then(parse_instant)
            .is_some_and(|d| d < now),
    }
}

impl Catalog {
    /// Loads every layer from the store and derives grid membership and
    /// aggregates.
    pub async fn load(store: &dyn Store) -> anyhow::Result<Catalog> {
        let seq = store.last_seq().await?;
        let mut defs = store.layers().await?;
        defs.retain(|d| !builtin::is_internal(&d.name));
        let loads = defs.iter().map(|d| store.load_layer(&d.name));
        let features = futures::future::try_join_all(loads).await?;
        let layers: Vec<(LayerDef, Vec<Feature>)> = defs.into_iter().zip(features).collect();
        Ok(tokio::task::spawn_blocking(move || Catalog::build(layers, seq)).await?)
    }

    /// Builds the catalog from loaded layers (CPU work, parallel), with
    /// the clock at the current time.
    pub fn build(layers: Vec<(LayerDef, Vec<Feature>)>, seq: i64) -> Catalog {
        Catalog::build_at(layers, seq, now_ms())
    }

    /// Builds the catalog with the clock at `now` (ms since the epoch).
    pub fn build_at(layers: Vec<(LayerDef, Vec<Feature>)>, seq: i64, now: i64) -> Catalog {
        let mut layers: Vec<LayerIndex> = layers
            .into_par_iter()
            .map(|(d, f)| LayerIndex::new(d, f))
            .collect();
        let grids = layers
            .iter()
            .find(|l| l.def.name == builtin::GRIDS)
            .map(GridTree::build)
            .unwrap_or_default();
        for l in layers.iter_mut() {
            if l.def.name == builtin::GRIDS || grids.nodes.is_empty() {
                continue;
            }
            l.grid_of = Chunked::from_vec(assign(&grids, l.features.chunks()));
        }
        let stats = compute_stats(layers.iter(), &grids, Clock::at(now));
        Catalog {
            layers: layers.into_iter().map(Arc::new).collect(),
            grids: Arc::new(grids),
            stats,
            seq,
            now_ms: now,
        }
    }

    pub fn layer(&self, name: &str) -> Option<&LayerIndex> {
        self.layers
            .iter()
            .find(|l| l.def.name == name)
            .map(|l| &**l)
    }

    fn layer_pos(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.def.name == name)
    }

    /// The next snapshot: these patches applied (in order), the change log
    /// at `seq`. Unchanged layers are shared with `self`. Patches to grids
    /// are applied first and re-derive memberships under the changed grids
    /// only ([`Catalog::regrid`]); a patch to a layer the catalog does not
    /// have rebuilds the whole catalog.
    pub fn apply(&self, patches: &[Patch], seq: i64) -> Catalog {
        if patches.iter().any(|p| self.layer_pos(&p.layer).is_none()) {
            return self.rebuilt_with(patches, seq);
        }
        let (grids, rest): (Vec<Patch>, Vec<Patch>) = patches
            .iter()
            .cloned()
            .partition(|p| p.layer == builtin::GRIDS);
        if grids.is_empty() {
            return self.patched(&rest, seq);
        }
        let mut next = self.patched(&grids, seq);
        next.regrid(self, &grids);
        next.patched(&rest, seq)
    }

    /// After patches to the grids layer: a new grid tree, every feature's
    /// node carried over by code, the features under the changed grids
    /// (old or new outline) located again, and the aggregates recomputed.
    /// Costs one pass over `grid_of` and the aggregates, not a reload.
    fn regrid(&mut self, old: &Catalog, patches: &[Patch]) {
        let Some(gl) = self.layer(builtin::GRIDS) else {
            return;
        };
        let tree = GridTree::build(gl);
        let map: Vec<u32> = old
            .grids
            .nodes
            .iter()
            .map(|n| {
                tree.by_code
                    .get(n.code.as_str())
                    .copied()
                    .unwrap_or(NO_GRID)
            })
            .collect();
        let identity =
            tree.nodes.len() == map.len() && map.iter().enumerate().all(|(i, &m)| m == i as u32);
        let mut dirty: Vec<Rect> = Vec::new();
        let old_grids = old.layer(builtin::GRIDS);
        for p in patches {
            if let Some(r) = old_grids
                .and_then(|l| l.get(p.id))
                .and_then(|f| f.geometry.bounding_rect())
            {
                dirty.push(r);
            }
            if let Some(r) = p.after.as_ref().and_then(|f| f.geometry.bounding_rect()) {
                dirty.push(r);
            }
        }
        for li in 0..self.layers.len() {
            let l0 = &self.layers[li];
            if l0.def.name == builtin::GRIDS {
                continue;
            }
            let mut l = (**l0).clone();
            if l.grid_of.len() != l.features.len() {
                // Never assigned (there were no grids): all of it.
                l.grid_of = Chunked::from_vec(assign(&tree, l.features.chunks()));
                self.layers[li] = Arc::new(l);
                continue;
            }
            if !identity {
                let v: Vec<u32> = l
                    .grid_of
                    .iter()
                    .map(|&n| map.get(n as usize).copied().unwrap_or(NO_GRID))
                    .collect();
                l.grid_of = Chunked::from_vec(v);
            }
            let mut again: Vec<u32> = dirty.iter().flat_map(|r| l.in_rect(*r)).collect();
            again.sort_unstable();
            again.dedup();
            for i in again {
                let node = representative_point(&l.features[i as usize].geometry)
                    .map(|p| tree.locate(p))
                    .unwrap_or(NO_GRID);
                if l.grid_of.get(i as usize) != Some(&node) {
                    l.grid_of.set(i as usize, node);
                }
            }
            self.layers[li] = Arc::new(l);
        }
        self.grids = Arc::new(tree);
        self.stats = compute_stats(
            self.layers.iter().map(|l| &**l),
            &self.grids,
            Clock::at(self.now_ms),
        );
    }

    /// Patches applied layer by layer, aggregates adjusted by difference.
    fn patched(&self, patches: &[Patch], seq: i64) -> Catalog {
        let mut next = self.clone();
        next.seq = seq;
        let clock = Clock::at(self.now_ms);
        let mut touched: Vec<(usize, LayerIndex, bool)> = Vec::new();
        for p in patches {
            let Some(li) = self.layer_pos(&p.layer) else {
                continue;
            };
            let k = match touched.iter().position(|t| t.0 == li) {
                Some(k) => k,
                None => {
                    touched.push((li, (*self.layers[li]).clone(), false));
                    touched.len() - 1
                }
            };
            let (_, l, rebuild) = &mut touched[k];
            let old = l.position(p.id);
            if let Some(i) = old {
                let f = l.features[i].clone();
                let node = l.grid_node(i);
                roll(&mut next.stats, &next.grids, &l.def, &f, node, clock, -1);
            }
            let node = match &p.after {
                Some(f) => {
                    let node = representative_point(&f.geometry)
                        .map(|pt| next.grids.locate(pt))
                        .unwrap_or(NO_GRID);
                    roll(&mut next.stats, &next.grids, &l.def, f, node, clock, 1);
                    node
                }
                None => NO_GRID,
            };
            match (old, &p.after) {
                (Some(i), Some(f)) => {
                    if f.geometry != l.features[i].geometry {
                        if let Some(e) = entry_of(&l.features[i], i) {
                            l.tree.remove(&e);
                        }
                        if let Some(e) = entry_of(f, i) {
                            l.bbox = union(l.bbox, f.geometry.bounding_rect());
                            l.tree.insert(e);
                        }
                    }
                    l.features.set(i, f.clone());
                    if i < l.grid_of.len() {
                        l.grid_of.set(i, node);
                    }
                }
                (None, Some(f)) if l.features.last().is_none_or(|x| x.id < f.id) => {
                    let i = l.features.len();
                    if let Some(e) = entry_of(f, i) {
                        l.bbox = union(l.bbox, f.geometry.bounding_rect());
                        l.tree.insert(e);
                    }
                    let aligned = l.grid_of.len() == l.features.len();
                    l.features.push(f.clone());
                    if aligned && l.def.name != builtin::GRIDS {
                        l.grid_of.push(node);
                    }
                }
                (None, None) => {}
                // A delete, or an insert below the largest id: positions
                // shift, so the layer is rebuilt once at the end.
                (_, after) => {
                    let mut v = l.features.to_vec();
                    match (old, after) {
                        (Some(i), None) => {
                            v.remove(i);
                        }
                        (None, Some(f)) => {
                            let at = v.partition_point(|x| x.id < f.id);
                            v.insert(at, f.clone());
                        }
                        _ => {}
                    }
                    let mut fresh = LayerIndex::new(l.def.clone(), v);
                    if l.def.name != builtin::GRIDS {
                        fresh.grid_of =
                            Chunked::from_vec(assign(&next.grids, fresh.features.chunks()));
                    }
                    *l = fresh;
                    *rebuild = true;
                }
            }
        }
        for (li, l, _) in touched {
            next.layers[li] = Arc::new(l);
        }
        next
    }

    /// The whole catalog rebuilt from this one's features with the patches
    /// applied (for grid edits and new layers).
    fn rebuilt_with(&self, patches: &[Patch], seq: i64) -> Catalog {
        let mut layers: Vec<(LayerDef, Vec<Feature>)> = self
            .layers
            .iter()
            .map(|l| (l.def.clone(), l.features.to_vec()))
            .collect();
        for p in patches {
            let Some((_, v)) = layers.iter_mut().find(|(d, _)| d.name == p.layer) else {
                tracing::warn!(layer = %p.layer, "patch for a layer the catalog does not have");
                continue;
            };
            let at = v.partition_point(|x| x.id < p.id);
            let present = v.get(at).is_some_and(|x| x.id == p.id);
            match (&p.after, present) {
                (Some(f), true) => v[at] = f.clone(),
                (Some(f), false) => v.insert(at, f.clone()),
                (None, true) => {
                    v.remove(at);
                }
                (None, false) => {}
            }
        }
        Catalog::build_at(layers, seq, self.now_ms)
    }

    /// The next snapshot with the clock at `now`, and the work orders (ids)
    /// that became overdue between the two clocks.
    pub fn advance_clock(&self, now: i64) -> (Catalog, Vec<i64>) {
        let mut next = self.clone();
        next.now_ms = now;
        let mut became = Vec::new();
        let Some(li) = self.layer_pos(builtin::EVENTS) else {
            return (next, became);
        };
        let (old, new) = (Clock::at(self.now_ms), Clock::at(now));
        let l = &self.layers[li];
        for (i, f) in l.features.iter().enumerate() {
            if !event_overdue(&l.def, f, self.now_ms) && event_overdue(&l.def, f, now) {
                if old.day_start == new.day_start {
                    let node = l.grid_node(i);
                    roll(&mut next.stats, &next.grids, &l.def, f, node, old, -1);
                    roll(&mut next.stats, &next.grids, &l.def, f, node, new, 1);
                }
                became.push(f.id);
            }
        }
        if old.day_start != new.day_start {
            // A new local day: "today" starts over everywhere.
            next.stats = compute_stats(next.layers.iter().map(|l| &**l), &next.grids, new);
        }
        (next, became)
    }

    /// The start of the local day the catalog's clock is in.
    pub fn day_start_ms(&self) -> i64 {
        local_day_start(self.now_ms)
    }
}

/// The deepest comprehensive grid of every feature, chunk by chunk in
/// parallel.
fn assign(grids: &GridTree, chunks: &[Arc<Vec<Feature>>]) -> Vec<u32> {
    chunks
        .par_iter()
        .flat_map_iter(|c| {
            c.iter()
                .map(|f| {
                    representative_point(&f.geometry)
                        .map(|p| grids.locate(p))
                        .unwrap_or(NO_GRID)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Adds (`sign` 1) or removes (-1) one feature's contribution to the
/// aggregates of its grid, the grid's ancestors and the dedicated grids over
/// it.
fn roll(
    stats: &mut [GridStats],
    grids: &GridTree,
    d: &LayerDef,
    f: &Feature,
    node: u32,
    clock: Clock,
    sign: i64,
) {
    if d.name == builtin::GRIDS {
        return;
    }
    let mut n = node;
    while n != NO_GRID {
        add_feature(&mut stats[n as usize], d, f, clock, sign);
        n = grids.nodes[n as usize].parent;
    }
    if let Some(p) = representative_point(&f.geometry) {
        for n in grids.dedicated_at(p) {
            add_feature(&mut stats[n as usize], d, f, clock, sign);
        }
    }
}

/// Rolls every feature up its grid's ancestor chain, and computes the
/// dedicated grids' own aggregates by containment.
fn compute_stats<'a>(
    layers: impl Iterator<Item = &'a LayerIndex> + Clone,
    grids: &GridTree,
    clock: Clock,
) -> Vec<GridStats> {
    let mut stats = vec![GridStats::default(); grids.nodes.len()];
    let mut add = |layer: &LayerIndex, i: usize, node: u32| {
        let f = &layer.features[i];
        let d = &layer.def;
        let mut n = node;
        while n != NO_GRID {
            let s = &mut stats[n as usize];
            add_feature(s, d, f, clock, 1);
            n = grids.nodes[n as usize].parent;
        }
    };
    for l in layers.clone() {
        for (i, &g) in l.grid_of.iter().enumerate() {
            if g != NO_GRID {
                add(l, i, g);
            }
        }
    }
    // Dedicated grids overlay comprehensive ones: count what lies inside.
    for (n, node) in grids.nodes.iter().enumerate() {
        if !node.dedicated {
            continue;
        }
        let poly = &node.geometry;
        let Some(r) = poly.bounding_rect() else {
            continue;
        };
        for l in layers.clone() {
            if l.def.name == builtin::GRIDS {
                continue;
            }
            for i in l.in_rect(r) {
                let f = &l.features[i as usize];
                if let Some(p) = representative_point(&f.geometry)
                    && grids::covers(poly, &p)
                {
                    add_feature(&mut stats[n], &l.def, f, clock, 1);
                }
            }
        }
    }
    stats
}

fn add_feature(s: &mut GridStats, d: &LayerDef, f: &Feature, clock: Clock, sign: i64) {
    let text = |name: &str| f.get(d, name).and_then(|v| v.as_str());
    let inc = |x: &mut u64| *x = x.wrapping_add_signed(sign);
    match d.name.as_str() {
        builtin::ADDRESSES => {
            inc(&mut s.addresses);
            s.households += sign * f.get(d, "households").and_then(|v| v.as_i64()).unwrap_or(0);
        }
        builtin::CAMERAS => {
            inc(&mut s.cameras);
            if text("status") == Some("online") {
                inc(&mut s.cameras_online);
            }
        }
        builtin::RISKS => {
            inc(&mut s.risks);
            if let Some(l) = f.get(d, "level").and_then(|v| v.as_i64())
                && (1..=4).contains(&l)
            {
                inc(&mut s.risks_by_level[(l - 1) as usize]);
            }
        }
        builtin::BUILDINGS => inc(&mut s.buildings),
        builtin::EVENTS => {
            inc(&mut s.events);
            let time = |name: &str| text(name).and_then(parse_instant);
            if time("created_at").is_some_and(|t| t >= clock.day_start) {
                inc(&mut s.today_new);
            }
            if text("status") == Some("closed") {
                inc(&mut s.closed);
                let closed_at = time("closed_at");
                if closed_at.is_some_and(|t| t >= clock.day_start) {
                    inc(&mut s.today_closed);
                }
                if let (Some(c), Some(d)) = (closed_at, time("deadline"))
                    && c <= d
                {
                    inc(&mut s.closed_on_time);
                }
            } else {
                inc(&mut s.events_open);
                if event_overdue(d, f, clock.now) {
                    inc(&mut s.events_overdue);
                }
            }
        }
        _ => {}
    }
}
