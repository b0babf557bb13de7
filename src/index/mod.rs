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

pub mod grids;

use crate::model::{Feature, LayerDef, builtin};
use crate::store::Store;
use geo::{BoundingRect, Geometry, InteriorPoint, Point, Rect};
use grids::GridTree;
use rayon::prelude::*;
use rstar::{AABB, RTree, RTreeObject, primitives::GeomWithData, primitives::Rectangle};

/// An R-tree entry: a feature's envelope and its position in `features`.
pub type Entry = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// No grid (outside every comprehensive grid).
pub const NO_GRID: u32 = u32::MAX;

/// One layer in memory.
pub struct LayerIndex {
    pub def: LayerDef,
    /// Sorted by id (the store loads them so), so lookups are binary searches.
    pub features: Vec<Feature>,
    pub tree: RTree<Entry>,
    pub bbox: Option<Rect>,
    /// Per feature: the node (in [`GridTree::nodes`]) of the deepest
    /// comprehensive grid holding it, or [`NO_GRID`]. Empty for `grids`.
    pub grid_of: Vec<u32>,
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
            .filter_map(|(i, f)| {
                let r = f.geometry.bounding_rect()?;
                Some(GeomWithData::new(
                    Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
                    i as u32,
                ))
            })
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
            tree: RTree::bulk_load(entries),
            features,
            bbox,
            grid_of: Vec::new(),
        }
    }

    /// A feature by id.
    pub fn get(&self, id: i64) -> Option<&Feature> {
        self.features
            .binary_search_by_key(&id, |f| f.id)
            .ok()
            .map(|i| &self.features[i])
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
}

/// Everything the server answers from.
pub struct Catalog {
    /// In the store's order.
    pub layers: Vec<LayerIndex>,
    pub grids: GridTree,
    /// Per grid node (same indexes as `grids.nodes`).
    pub stats: Vec<GridStats>,
    /// The change-log sequence the catalog reflects.
    pub seq: i64,
}

impl Catalog {
    /// Loads every layer from the store and derives grid membership and
    /// aggregates.
    pub async fn load(store: &dyn Store) -> anyhow::Result<Catalog> {
        let seq = store.last_seq().await?;
        let defs = store.layers().await?;
        let loads = defs.iter().map(|d| store.load_layer(&d.name));
        let features = futures::future::try_join_all(loads).await?;
        let layers: Vec<(LayerDef, Vec<Feature>)> = defs.into_iter().zip(features).collect();
        Ok(tokio::task::spawn_blocking(move || Catalog::build(layers, seq)).await?)
    }

    /// Builds the catalog from loaded layers (CPU work, parallel).
    pub fn build(layers: Vec<(LayerDef, Vec<Feature>)>, seq: i64) -> Catalog {
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
            l.grid_of = l
                .features
                .par_iter()
                .map(|f| {
                    representative_point(&f.geometry)
                        .map(|p| grids.locate(p))
                        .unwrap_or(NO_GRID)
                })
                .collect();
        }
        let stats = compute_stats(&layers, &grids);
        Catalog {
            layers,
            grids,
            stats,
            seq,
        }
    }

    pub fn layer(&self, name: &str) -> Option<&LayerIndex> {
        self.layers.iter().find(|l| l.def.name == name)
    }
}

/// Rolls every feature up its grid's ancestor chain, and computes the
/// dedicated grids' own aggregates by containment.
fn compute_stats(layers: &[LayerIndex], grids: &GridTree) -> Vec<GridStats> {
    let mut stats = vec![GridStats::default(); grids.nodes.len()];
    let mut add = |layer: &LayerIndex, i: usize, node: u32| {
        let f = &layer.features[i];
        let d = &layer.def;
        let mut n = node;
        while n != NO_GRID {
            let s = &mut stats[n as usize];
            add_feature(s, d, f);
            n = grids.nodes[n as usize].parent;
        }
    };
    for l in layers {
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
        for l in layers {
            if l.def.name == builtin::GRIDS {
                continue;
            }
            for i in l.in_rect(r) {
                let f = &l.features[i as usize];
                if let Some(p) = representative_point(&f.geometry)
                    && grids::covers(poly, &p)
                {
                    add_feature(&mut stats[n], &l.def, f);
                }
            }
        }
    }
    stats
}

fn add_feature(s: &mut GridStats, d: &LayerDef, f: &Feature) {
    let text = |name: &str| f.get(d, name).and_then(|v| v.as_str());
    match d.name.as_str() {
        builtin::ADDRESSES => {
            s.addresses += 1;
            s.households += f.get(d, "households").and_then(|v| v.as_i64()).unwrap_or(0);
        }
        builtin::CAMERAS => {
            s.cameras += 1;
            if text("status") == Some("online") {
                s.cameras_online += 1;
            }
        }
        builtin::RISKS => {
            s.risks += 1;
            if let Some(l) = f.get(d, "level").and_then(|v| v.as_i64())
                && (1..=4).contains(&l)
            {
                s.risks_by_level[(l - 1) as usize] += 1;
            }
        }
        builtin::BUILDINGS => s.buildings += 1,
        builtin::EVENTS => {
            s.events += 1;
            match text("status") {
                Some("closed") => {}
                Some("overdue") => {
                    s.events_open += 1;
                    s.events_overdue += 1;
                }
                _ => s.events_open += 1,
            }
        }
        _ => {}
    }
}
