//! Validation of a proposed change of grids, and its impact.
//!
//! A proposal replaces some published grids (by code) with new states or
//! with nothing. The *world* is the published grids overlaid with the
//! proposal; validation looks only where something changed: the changed
//! grids themselves (valid rings, slivers, households of micro-grids) and
//! every parent whose children changed (children inside the parent,
//! siblings not overlapping, together covering it). The impact is every
//! point feature (addresses, cameras, risks, buildings by an inside point,
//! open work orders) whose deepest comprehensive grid differs between the
//! published world and the proposed one, with counts per grid.

use super::{Grid, topo};
use crate::index::{Catalog, LayerIndex, NO_GRID, representative_point};
use crate::model::{GridLevel, LayerDef, Value, builtin};
use geo::{
    BooleanOps, BoundingRect, ChamberlainDuquetteArea, Geometry, Intersects, MultiPolygon, Point,
    Polygon, Rect, Validation,
};
use rstar::{RTree, primitives::GeomWithData, primitives::Rectangle};
use serde_json::{Value as J, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Gaps and overlaps smaller than this (m²) are floating-point noise.
pub const AREA_TOL_M2: f64 = 1.0;
/// A part narrower than this (m) is a sliver.
pub const SLIVER_M: f64 = 2.0;
/// Households a micro-grid must hold.
pub const HOUSEHOLDS: std::ops::RangeInclusive<i64> = 30..=100;
/// Moved features listed in a report (all are counted and published).
const LIST_MOVED: usize = 1000;

/// A proposed state per code: `Some` (new or replaced) or `None` (deleted).
pub type Changes = BTreeMap<String, Option<Grid>>;

#[derive(Clone, Debug)]
pub struct Violation {
    pub kind: &'static str,
    pub grids: Vec<String>,
    pub geometry: Geometry,
    pub area_m2: f64,
    pub detail: String,
}

impl Violation {
    pub fn to_json(&self) -> J {
        json!({
            "kind": self.kind,
            "grids": self.grids,
            "geometry": geojson::Geometry::from(&self.geometry),
            "area_m2": (self.area_m2 * 10.0).round() / 10.0,
            "detail": self.detail,
        })
    }
}

/// A point feature whose grid changes.
#[derive(Clone, Debug)]
pub struct Moved {
    pub layer: &'static str,
    pub fid: i64,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Counts of one grid, as the impact table shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub addresses: i64,
    pub households: i64,
    pub cameras: i64,
    pub risks: i64,
    pub buildings: i64,
    pub events_open: i64,
}

impl Counts {
    fn add(&mut self, o: &Counts, sign: i64) {
        self.addresses += sign * o.addresses;
        self.households += sign * o.households;
        self.cameras += sign * o.cameras;
        self.risks += sign * o.risks;
        self.buildings += sign * o.buildings;
        self.events_open += sign * o.events_open;
    }

    fn to_json(self) -> J {
        json!({
            "addresses": self.addresses, "households": self.households, "cameras": self.cameras,
            "risks": self.risks, "buildings": self.buildings, "events_open": self.events_open,
        })
    }
}

/// What validation found.
pub struct Report {
    pub violations: Vec<Violation>,
    pub moved: Vec<Moved>,
    /// Counts per code (every level) before and after, where they differ.
    pub counts: BTreeMap<String, (Counts, Counts)>,
    /// Codes whose state differs from the published one.
    pub changed: BTreeSet<String>,
    /// Where anything changed (old and new geometry of changed grids).
    pub area: Option<Rect>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn impact_json(&self, world: &World) -> J {
        let mut per_layer: BTreeMap<&str, usize> = [
            builtin::ADDRESSES,
            builtin::CAMERAS,
            builtin::RISKS,
            builtin::BUILDINGS,
            builtin::EVENTS,
        ]
        .into_iter()
        .map(|l| (l, 0))
        .collect();
        for m in &self.moved {
            *per_layer.entry(m.layer).or_default() += 1;
        }
        let features: Vec<J> = self
            .moved
            .iter()
            .take(LIST_MOVED)
            .map(|m| {
                json!({"layer": m.layer, "id": m.fid, "name": world.feature_name(m.layer, m.fid), "from": m.from, "to": m.to})
            })
            .collect();
        let grids: Vec<J> = self
            .counts
            .iter()
            .map(|(code, (b, a))| {
                json!({"code": code, "name": world.name(code), "before": b.to_json(), "after": a.to_json()})
            })
            .collect();
        json!({"moved": per_layer, "features": features, "grids": grids})
    }
}

type Item = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// The published grids overlaid with a proposal.
pub struct World<'a> {
    pub cat: &'a Catalog,
    pub def: &'a LayerDef,
    gl: &'a LayerIndex,
    pub changes: &'a Changes,
    /// Proposed grids (comprehensive and dedicated), for lookups.
    list: Vec<(&'a str, &'a Grid)>,
    /// Comprehensive proposed grids by level.
    levels: [RTree<Item>; 5],
    /// Changed grids (new geometry), for the fast path of `locate`.
    changed_tree: RTree<Item>,
    pub changed: BTreeSet<String>,
}

fn item(r: Rect, i: usize) -> Item {
    GeomWithData::new(
        Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
        i,
    )
}

impl<'a> World<'a> {
    pub fn new(cat: &'a Catalog, changes: &'a Changes) -> Option<World<'a>> {
        let gl = cat.layer(builtin::GRIDS)?;
        let def = &gl.def;
        let mut changed = BTreeSet::new();
        for (code, state) in changes {
            let published = cat
                .grids
                .get(code)
                .map(|(_, n)| &gl.features[n.feature as usize]);
            let same = match (published, state) {
                (Some(f), Some(g)) => Grid::from_feature(f) == *g,
                (None, None) => true,
                _ => false,
            };
            if !same {
                changed.insert(code.clone());
            }
        }
        let list: Vec<(&str, &Grid)> = changes
            .iter()
            .filter_map(|(c, s)| s.as_ref().map(|g| (c.as_str(), g)))
            .collect();
        let mut per_level: [Vec<Item>; 5] = Default::default();
        let mut ch = Vec::new();
        for (i, (code, g)) in list.iter().enumerate() {
            let Some(r) = g.geometry.bounding_rect() else {
                continue;
            };
            if changed.contains(*code) {
                ch.push(item(r, i));
            }
            if g.dedicated(def) {
                continue;
            }
            if let Some(l) = GridLevel::from_code_len(code.len()) {
                per_level[l.index()].push(item(r, i));
            }
        }
        Some(World {
            cat,
            def,
            gl,
            changes,
            list,
            levels: per_level.map(RTree::bulk_load),
            changed_tree: RTree::bulk_load(ch),
            changed,
        })
    }

    /// The published grid of a code.
    pub fn published(&self, code: &str) -> Option<Grid> {
        self.cat
            .grids
            .get(code)
            .map(|(_, n)| Grid::from_feature(&self.gl.features[n.feature as usize]))
    }

    /// A grid in the proposed world.
    pub fn grid(&self, code: &str) -> Option<Grid> {
        match self.changes.get(code) {
            Some(s) => s.clone(),
            None => self.published(code),
        }
    }

    pub fn name(&self, code: &str) -> Option<String> {
        self.grid(code)
            .and_then(|g| g.text(self.def, "name").map(str::to_string))
    }

    fn feature_name(&self, layer: &str, fid: i64) -> Option<String> {
        let l = self.cat.layer(layer)?;
        let f = l.get(fid)?;
        ["name", "title", "address"]
            .iter()
            .find_map(|k| f.get(&l.def, k).and_then(Value::as_str))
            .map(str::to_string)
    }

    /// The children of a code in the proposed world.
    pub fn children(&self, code: &str) -> Vec<(String, Grid)> {
        let mut out: Vec<(String, Grid)> = Vec::new();
        if let Some((_, n)) = self.cat.grids.get(code) {
            for &c in &n.children {
                let cc = self.cat.grids.nodes[c as usize].code.as_str();
                if !self.changes.contains_key(cc)
                    && let Some(g) = self.published(cc)
                {
                    out.push((cc.to_string(), g));
                }
            }
        }
        for (c, g) in &self.list {
            if g.text(self.def, "parent") == Some(code) {
                out.push((c.to_string(), (*g).clone()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn parent_of(&self, code: &str, g: &Grid) -> Option<String> {
        g.text(self.def, "parent")
            .map(str::to_string)
            .filter(|p| !p.is_empty())
            .or_else(|| {
                crate::model::GridCode::parse(code)
                    .ok()
                    .and_then(|c| c.parent())
                    .map(|p| p.to_string())
            })
    }

    /// The deepest comprehensive grid holding `p` in the proposed world,
    /// given its published one.
    pub fn locate(&self, p: Point, old: Option<&str>) -> Option<String> {
        let affected = old.is_some_and(|c| {
            GridLevel::ALL
                .iter()
                .map(|l| l.code_len())
                .filter(|&n| n <= c.len())
                .any(|n| self.changed.contains(&c[..n]))
        });
        let in_changed = || {
            self.changed_tree
                .locate_all_at_point(&[p.x(), p.y()])
                .any(|e| self.list[e.data].1.geometry.intersects(&p))
        };
        if !affected && !in_changed() {
            return old.map(str::to_string);
        }
        for level in GridLevel::ALL.iter().rev() {
            let mut best: Option<&str> = None;
            let n = self.cat.grids.locate_at(*level, p);
            if n != NO_GRID {
                let c = self.cat.grids.nodes[n as usize].code.as_str();
                if !self.changes.contains_key(c) {
                    best = Some(c);
                }
            }
            for e in self.levels[level.index()].locate_all_at_point(&[p.x(), p.y()]) {
                let (c, g) = self.list[e.data];
                if g.geometry.intersects(&p) && best.is_none_or(|b| c < b) {
                    best = Some(c);
                }
            }
            if let Some(b) = best {
                return Some(b.to_string());
            }
        }
        None
    }
}

fn area_m2(g: &MultiPolygon) -> f64 {
    g.chamberlain_duquette_unsigned_area()
}

fn perimeter_m(p: &Polygon) -> f64 {
    std::iter::once(p.exterior())
        .chain(p.interiors())
        .flat_map(|r| r.lines())
        .map(|l| topo::dist_m(l.start, l.end))
        .sum()
}

fn pieces(mp: MultiPolygon) -> Vec<MultiPolygon> {
    mp.0.into_iter()
        .map(|p| MultiPolygon(vec![p]))
        .filter(|p| area_m2(p) > AREA_TOL_M2)
        .collect()
}

fn union(a: Option<Rect>, b: Option<Rect>) -> Option<Rect> {
    match (a, b) {
        (Some(a), Some(b)) => Some(crate::index::rect_union(a, b)),
        (a, b) => a.or(b),
    }
}

/// Validates a proposal and computes its impact.
pub fn validate(world: &World) -> Report {
    let def = world.def;
    let mut violations = Vec::new();
    let mut area: Option<Rect> = None;
    // Parents whose children must be checked.
    let mut parents: BTreeSet<String> = BTreeSet::new();
    for code in &world.changed {
        crate::work::checkpoint();
        if let Some(old) = world.published(code) {
            area = union(area, old.geometry.bounding_rect());
            if let Some(p) = world.parent_of(code, &old) {
                parents.insert(p);
            }
        }
        if let Some(Some(g)) = world.changes.get(code) {
            area = union(area, g.geometry.bounding_rect());
            if let Some(p) = world.parent_of(code, g) {
                parents.insert(p);
            }
            parents.insert(code.clone());
            check_shape(code, g, &mut violations);
        }
    }
    for p in &parents {
        crate::work::checkpoint();
        let Some(pg) = world.grid(p) else { continue };
        let kids = world.children(p);
        if kids.is_empty() {
            continue;
        }
        let parent_changed = world.changed.contains(p);
        let touched = |c: &str| parent_changed || world.changed.contains(c);
        // Inside the parent.
        for (c, g) in &kids {
            if !touched(c) {
                continue;
            }
            let out = g.geometry.difference(&pg.geometry);
            for piece in pieces(out) {
                let a = area_m2(&piece);
                violations.push(Violation {
                    kind: "outside_parent",
                    grids: vec![c.clone(), p.clone()],
                    detail: format!("{a:.0} m² of {c} lie outside its parent {p}"),
                    geometry: Geometry::MultiPolygon(piece),
                    area_m2: a,
                });
            }
        }
        // Siblings do not overlap (dedicated grids may overlay).
        let comp: Vec<&(String, Grid)> = kids.iter().filter(|(_, g)| !g.dedicated(def)).collect();
        let boxes: Vec<Option<Rect>> = comp
            .iter()
            .map(|(_, g)| g.geometry.bounding_rect())
            .collect();
        for i in 0..comp.len() {
            for j in i + 1..comp.len() {
                crate::work::checkpoint();
                if !touched(&comp[i].0) && !touched(&comp[j].0) {
                    continue;
                }
                let (Some(a), Some(b)) = (boxes[i], boxes[j]) else {
                    continue;
                };
                if crate::index::rect_intersection(a, b).is_none() {
                    continue;
                }
                let shared = comp[i].1.geometry.intersection(&comp[j].1.geometry);
                for piece in pieces(shared) {
                    let a = area_m2(&piece);
                    violations.push(Violation {
                        kind: "overlap",
                        grids: vec![comp[i].0.clone(), comp[j].0.clone()],
                        detail: format!("{} and {} overlap by {a:.0} m²", comp[i].0, comp[j].0),
                        geometry: Geometry::MultiPolygon(piece),
                        area_m2: a,
                    });
                }
            }
        }
        // Together they cover the parent.
        if !comp.is_empty() {
            let all = geo::unary_union(comp.iter().map(|(_, g)| &g.geometry));
            let gap = pg.geometry.difference(&all);
            for piece in pieces(gap) {
                let a = area_m2(&piece);
                violations.push(Violation {
                    kind: "gap",
                    grids: std::iter::once(p.clone())
                        .chain(
                            comp.iter()
                                .filter(|(_, g)| g.geometry.intersects(&piece))
                                .map(|(c, _)| c.clone()),
                        )
                        .collect(),
                    detail: format!("{a:.0} m² of {p} belong to none of its grids"),
                    geometry: Geometry::MultiPolygon(piece),
                    area_m2: a,
                });
            }
        }
    }
    let (moved, counts) = impact(world, area);
    // Micro-grids hold 30–100 households.
    for code in &world.changed {
        crate::work::checkpoint();
        let Some(Some(g)) = world.changes.get(code) else {
            continue;
        };
        if code.len() != GridLevel::Micro.code_len() || g.dedicated(def) {
            continue;
        }
        let after = counts.get(code).map(|c| c.1.households).unwrap_or_else(|| {
            world
                .cat
                .grids
                .get(code)
                .map(|(n, _)| world.cat.stats[n as usize].households)
                .unwrap_or(0)
        });
        if !HOUSEHOLDS.contains(&after) {
            violations.push(Violation {
                kind: "households",
                grids: vec![code.clone()],
                detail: format!(
                    "micro-grid {code} would hold {after} households (30–100 required)"
                ),
                area_m2: area_m2(&g.geometry),
                geometry: Geometry::MultiPolygon(g.geometry.clone()),
            });
        }
    }
    Report {
        violations,
        moved,
        counts,
        changed: world.changed.clone(),
        area,
    }
}

/// Invalid rings and slivers of one grid.
fn check_shape(code: &str, g: &Grid, out: &mut Vec<Violation>) {
    if g.geometry.0.is_empty() {
        out.push(Violation {
            kind: "invalid_ring",
            grids: vec![code.to_string()],
            detail: format!("{code} has no area"),
            geometry: Geometry::MultiPolygon(g.geometry.clone()),
            area_m2: 0.0,
        });
        return;
    }
    let errors = g.geometry.validation_errors();
    if !errors.is_empty() {
        let detail = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        out.push(Violation {
            kind: "invalid_ring",
            grids: vec![code.to_string()],
            detail: format!("{code}: {detail}"),
            area_m2: area_m2(&g.geometry),
            geometry: Geometry::MultiPolygon(g.geometry.clone()),
        });
        return;
    }
    for p in &g.geometry.0 {
        let a = p.chamberlain_duquette_unsigned_area();
        let per = perimeter_m(p);
        let width = if per > 0.0 { 2.0 * a / per } else { 0.0 };
        if width < SLIVER_M {
            out.push(Violation {
                kind: "sliver",
                grids: vec![code.to_string()],
                detail: format!("a part of {code} is about {width:.2} m wide ({a:.0} m²)"),
                geometry: Geometry::Polygon(p.clone()),
                area_m2: a,
            });
        }
    }
}

/// Point features in `area` whose grid changes, and counts per code.
fn impact(world: &World, area: Option<Rect>) -> (Vec<Moved>, BTreeMap<String, (Counts, Counts)>) {
    let mut moved = Vec::new();
    let mut region: HashMap<String, (Counts, Counts)> = HashMap::new();
    let Some(area) = area else {
        return (moved, BTreeMap::new());
    };
    let cat = world.cat;
    for layer in [
        builtin::ADDRESSES,
        builtin::CAMERAS,
        builtin::RISKS,
        builtin::BUILDINGS,
        builtin::EVENTS,
    ] {
        let Some(l) = cat.layer(layer) else { continue };
        let status = l.def.prop_index("status");
        let households = l.def.prop_index("households");
        for i in l.in_rect(area) {
            crate::work::checkpoint();
            let f = &l.features[i as usize];
            if layer == builtin::EVENTS
                && status
                    .and_then(|k| f.properties.get(k))
                    .and_then(Value::as_str)
                    == Some("closed")
            {
                continue;
            }
            let Some(p) = representative_point(&f.geometry) else {
                continue;
            };
            let node = l.grid_node(i as usize);
            let old = (node != NO_GRID).then(|| cat.grids.nodes[node as usize].code.as_str());
            let new = world.locate(p, old);
            if old.is_none() && new.is_none() {
                continue;
            }
            let mut c = Counts::default();
            match layer {
                builtin::ADDRESSES => {
                    c.addresses = 1;
                    c.households = households
                        .and_then(|k| f.properties.get(k))
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                }
                builtin::CAMERAS => c.cameras = 1,
                builtin::RISKS => c.risks = 1,
                builtin::BUILDINGS => c.buildings = 1,
                _ => c.events_open = 1,
            }
            let prefixes = |code: &str| -> Vec<String> {
                GridLevel::ALL
                    .iter()
                    .map(|l| l.code_len())
                    .filter(|&n| n <= code.len())
                    .map(|n| code[..n].to_string())
                    .collect()
            };
            if let Some(o) = old {
                for k in prefixes(o) {
                    region.entry(k).or_default().0.add(&c, 1);
                }
            }
            if let Some(n) = &new {
                for k in prefixes(n) {
                    region.entry(k).or_default().1.add(&c, 1);
                }
            }
            if old != new.as_deref() {
                moved.push(Moved {
                    layer,
                    fid: f.id,
                    from: old.map(str::to_string),
                    to: new,
                });
            }
        }
    }
    // Before: the published totals; after: those plus what moved.
    let mut counts = BTreeMap::new();
    for (code, (rb, ra)) in region {
        if rb == ra && !world.changed.contains(&code) {
            continue;
        }
        let before = match world.cat.grids.get(&code) {
            Some((n, _)) => {
                let s = &world.cat.stats[n as usize];
                Counts {
                    addresses: s.addresses as i64,
                    households: s.households,
                    cameras: s.cameras as i64,
                    risks: s.risks as i64,
                    buildings: s.buildings as i64,
                    events_open: s.events_open as i64,
                }
            }
            _ => Counts::default(),
        };
        let mut after = before;
        after.add(&rb, -1);
        after.add(&ra, 1);
        if before != after || world.changed.contains(&code) {
            counts.insert(code, (before, after));
        }
    }
    (moved, counts)
}

/// The rectangle of a point, for tile invalidation.
pub fn point_box(p: Point) -> Rect {
    Rect::new(p.0, p.0)
}
