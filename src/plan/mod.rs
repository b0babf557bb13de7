//! Grid edit plans (DESIGN §8): a draft copy of the grids under one or more
//! scope grids, edited by operations, validated, then published as one
//! store transaction.
//!
//! Plans live in the store like layers (`onemap_plans`, one row per plan;
//! `onemap_plan_grids`, one row per draft grid), so both stores keep them,
//! QGIS can look at drafts, and every operation is a change set in the
//! change log with its author. An operation works on a copy of the draft
//! (`Work`, grids by code) and is committed as the difference between the
//! two, together with the plan row's updated operation list, in one
//! change set. Undo reads that change set back from the log and commits
//! its inverse the same way.
//!
//! One lock (the book's) orders everything done to plans; publishing also
//! takes the server's write lock, shared with the live writer, so the
//! catalog is replaced in one place at a time.

pub mod check;
pub mod publish;
pub mod topo;

use crate::index::Catalog;
use crate::model::{
    Feature, GeomKind, GridCode, GridLevel, LayerDef, PropDef, PropType, Value, builtin,
};
use crate::store::{ChangeSet, Op, Store, StoreError};
use geo::{Area, BoundingRect, Coord, Geometry, LineString, MultiPolygon};
use serde::{Deserialize, Serialize};
use serde_json::{Value as J, json};
use std::collections::{BTreeMap, BTreeSet};

/// How close (metres) a vertex or edge must be to a point to be "at" it.
pub const SNAP_M: f64 = 0.05;
/// Most grids one `replace_geometry` may carry.
const MAX_REPLACE: usize = 10_000;

/// What a plan request can fail with.
#[derive(Debug)]
pub enum PlanError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    /// Publish or revert refused: why, as JSON (`violations`, `conflicts`).
    Refused(String, J),
    Store(String),
    /// Validation did not finish: the pool was full or the budget spent.
    Work(crate::work::WorkError),
}

impl From<crate::work::WorkError> for PlanError {
    fn from(e: crate::work::WorkError) -> Self {
        PlanError::Work(e)
    }
}

impl From<StoreError> for PlanError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => PlanError::Conflict(e.to_string()),
            StoreError::Invalid { .. } => PlanError::BadRequest(e.to_string()),
            other => PlanError::Store(other.to_string()),
        }
    }
}

pub type Result<T, E = PlanError> = std::result::Result<T, E>;

fn bad<T>(m: impl Into<String>) -> Result<T> {
    Err(PlanError::BadRequest(m.into()))
}

/// A grid's geometry and its properties (in the `grids` layer's order).
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub geometry: MultiPolygon,
    pub props: Vec<Value>,
}

impl Grid {
    pub fn text<'a>(&'a self, def: &LayerDef, name: &str) -> Option<&'a str> {
        def.prop_index(name)
            .and_then(|i| self.props.get(i))
            .and_then(Value::as_str)
    }

    pub fn int(&self, def: &LayerDef, name: &str) -> Option<i64> {
        def.prop_index(name)
            .and_then(|i| self.props.get(i))
            .and_then(Value::as_i64)
    }

    pub fn set(&mut self, def: &LayerDef, name: &str, v: Value) {
        if let Some(i) = def.prop_index(name)
            && i < self.props.len()
        {
            self.props[i] = v;
        }
    }

    pub fn dedicated(&self, def: &LayerDef) -> bool {
        self.text(def, "kind") == Some("dedicated")
    }

    pub fn from_feature(f: &Feature) -> Grid {
        Grid {
            geometry: to_multi(&f.geometry),
            props: f.properties.clone(),
        }
    }

    /// As a GeoJSON Feature with the code as id.
    pub fn to_geojson(&self, def: &LayerDef, code: &str, extra: &[(&str, J)]) -> J {
        let mut props = serde_json::Map::new();
        for (d, v) in def.properties.iter().zip(&self.props) {
            props.insert(d.name.clone(), v.to_json());
        }
        for (k, v) in extra {
            props.insert(k.to_string(), v.clone());
        }
        json!({
            "type": "Feature",
            "id": code,
            "geometry": geojson::Geometry::from(&Geometry::MultiPolygon(self.geometry.clone())),
            "properties": props,
        })
    }
}

/// Any areal geometry as a MultiPolygon (others give an empty one).
pub fn to_multi(g: &Geometry) -> MultiPolygon {
    match g {
        Geometry::Polygon(p) => MultiPolygon(vec![p.clone()]),
        Geometry::MultiPolygon(m) => m.clone(),
        Geometry::GeometryCollection(c) => {
            MultiPolygon(c.iter().flat_map(|g| to_multi(g).0).collect())
        }
        _ => MultiPolygon(vec![]),
    }
}

/// A draft grid as stored.
#[derive(Clone, Debug)]
pub struct DraftGrid {
    pub fid: i64,
    pub version: i64,
    pub grid: Grid,
}

/// One operation in a plan's list.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpRecord {
    pub n: u32,
    pub kind: String,
    pub summary: String,
    pub author: String,
    pub time: String,
    #[serde(default)]
    pub undone: bool,
    /// For an undo: the operation it undid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<u32>,
}

/// A plan and its draft.
#[derive(Clone, Debug)]
pub struct Plan {
    pub id: i64,
    pub version: i64,
    pub title: String,
    pub author: String,
    pub scope: Vec<String>,
    /// `draft`, `published` or `discarded`.
    pub status: String,
    pub created_at: String,
    /// The change-log seq when the plan was made.
    pub base_seq: i64,
    /// The published grids copied into the draft: code → (fid, version).
    pub base: BTreeMap<String, (i64, i64)>,
    pub ops: Vec<OpRecord>,
    pub published_at: Option<String>,
    pub published_seq: Option<i64>,
    pub published_by: Option<String>,
    pub reason: Option<String>,
    pub grids: BTreeMap<String, DraftGrid>,
    pub bbox: Option<geo::Rect>,
}

impl Plan {
    pub fn is_draft(&self) -> bool {
        self.status == "draft"
    }

    /// The draft grids by code (what operations edit).
    pub fn work(&self) -> Work {
        self.grids
            .iter()
            .map(|(c, d)| (c.clone(), d.grid.clone()))
            .collect()
    }

    pub fn summary(&self) -> J {
        json!({
            "id": self.id,
            "title": self.title,
            "author": self.author,
            "scope": self.scope,
            "status": self.status,
            "created_at": self.created_at,
            "grids": self.grids.len(),
            "ops": self.ops.iter().filter(|o| o.undoes.is_none() && !o.undone).count(),
        })
    }

    /// The plan as `GET /api/plans/{id}` answers it.
    pub fn to_json(&self, cat: &Catalog) -> J {
        let Some(gl) = cat.layer(builtin::GRIDS) else {
            return self.summary();
        };
        let def = &gl.def;
        let features: Vec<J> = self
            .grids
            .iter()
            .map(|(code, d)| {
                let state = match self.base.get(code).and_then(|(fid, _)| gl.get(*fid)) {
                    None => "new",
                    Some(f) if Grid::from_feature(f) == d.grid => "unchanged",
                    Some(_) => "changed",
                };
                d.grid.to_geojson(def, code, &[("state", json!(state))])
            })
            .collect();
        json!({
            "id": self.id,
            "title": self.title,
            "author": self.author,
            "scope": self.scope,
            "status": self.status,
            "created_at": self.created_at,
            "base_seq": self.base_seq,
            "published_at": self.published_at,
            "published_seq": self.published_seq,
            "published_by": self.published_by,
            "reason": self.reason,
            "ops": self.ops,
            "can_undo": self.is_draft() && self.last_undoable().is_some(),
            "grids": {"type": "FeatureCollection", "features": features},
        })
    }

    /// The draft as a proposal: every draft grid, and the copied grids it
    /// no longer has as deletions.
    pub fn changes(&self) -> check::Changes {
        let mut c: check::Changes = self
            .grids
            .iter()
            .map(|(k, d)| (k.clone(), Some(d.grid.clone())))
            .collect();
        for k in self.base.keys() {
            c.entry(k.clone()).or_insert(None);
        }
        c
    }

    fn last_undoable(&self) -> Option<&OpRecord> {
        self.ops
            .iter()
            .rev()
            .find(|o| o.undoes.is_none() && !o.undone)
    }
}

/// Draft grids by code: what an operation edits.
pub type Work = BTreeMap<String, Grid>;

/// The plans, loaded from the store on first use.
#[derive(Default)]
pub struct Plans {
    book: tokio::sync::Mutex<Book>,
}

#[derive(Default)]
pub struct Book {
    loaded: bool,
    pub plans: BTreeMap<i64, Plan>,
}

/// The layer of plans.
pub fn plans_def() -> LayerDef {
    let t = |n: &str| PropDef::new(n, PropType::Text);
    LayerDef {
        name: builtin::PLANS.into(),
        title: "网格调整方案 Grid edit plans".into(),
        geometry: GeomKind::Polygon,
        properties: vec![
            t("title"),
            t("author"),
            t("scope"),
            t("status"),
            PropDef::new("created_at", PropType::DateTime),
            PropDef::new("base_seq", PropType::Int),
            t("base"),
            t("ops"),
            PropDef::new("published_at", PropType::DateTime),
            PropDef::new("published_seq", PropType::Int),
            t("published_by"),
            t("reason"),
        ],
        minzoom: 0,
        maxzoom: 22,
        declared_crs: "EPSG:4326".into(),
    }
}

/// The layer of draft grids: `plan`, then the grids layer's properties.
pub fn plan_grids_def(grids: &LayerDef) -> LayerDef {
    let mut properties = vec![PropDef::new("plan", PropType::Int)];
    properties.extend(grids.properties.iter().cloned());
    LayerDef {
        name: builtin::PLAN_GRIDS.into(),
        title: "方案草稿网格 Draft grids of plans".into(),
        geometry: GeomKind::MultiPolygon,
        properties,
        minzoom: 0,
        maxzoom: 22,
        declared_crs: "EPSG:4326".into(),
    }
}

fn now_iso() -> String {
    crate::live::iso(crate::index::now_ms())
}

fn text(v: &str) -> Value {
    Value::text(v)
}

fn opt_text(v: &Option<String>) -> Value {
    v.as_deref().map(text).unwrap_or(Value::Null)
}

impl Plan {
    fn row(&self) -> (Geometry, Vec<Value>) {
        let geom = match self.bbox {
            Some(r) => Geometry::Polygon(r.to_polygon()),
            None => Geometry::Polygon(geo::Polygon::new(LineString(vec![]), vec![])),
        };
        let props = vec![
            text(&self.title),
            text(&self.author),
            text(&self.scope.join(",")),
            text(&self.status),
            text(&self.created_at),
            Value::Int(self.base_seq),
            text(&serde_json::to_string(&self.base).unwrap_or_default()),
            text(&serde_json::to_string(&self.ops).unwrap_or_default()),
            opt_text(&self.published_at),
            self.published_seq.map(Value::Int).unwrap_or(Value::Null),
            opt_text(&self.published_by),
            opt_text(&self.reason),
        ];
        (geom, props)
    }

    fn from_row(f: &Feature, def: &LayerDef) -> Plan {
        let s = |k: &str| f.get(def, k).and_then(Value::as_str).map(str::to_string);
        Plan {
            id: f.id,
            version: f.version,
            title: s("title").unwrap_or_default(),
            author: s("author").unwrap_or_default(),
            scope: s("scope")
                .map(|v| {
                    v.split(',')
                        .filter(|c| !c.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            status: s("status").unwrap_or_else(|| "draft".into()),
            created_at: s("created_at").unwrap_or_default(),
            base_seq: f.get(def, "base_seq").and_then(Value::as_i64).unwrap_or(0),
            base: s("base")
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or_default(),
            ops: s("ops")
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or_default(),
            published_at: s("published_at"),
            published_seq: f.get(def, "published_seq").and_then(Value::as_i64),
            published_by: s("published_by"),
            reason: s("reason"),
            grids: BTreeMap::new(),
            bbox: f.geometry.bounding_rect(),
        }
    }
}

/// The operations of `POST /api/plans/{id}/ops`.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpBody {
    MoveVertex {
        from: [f64; 2],
        to: [f64; 2],
    },
    MoveEdge {
        edge: [[f64; 2]; 2],
        by: [f64; 2],
    },
    ReplaceGeometry {
        grids: Vec<Replacement>,
    },
    Split {
        code: String,
        line: Vec<[f64; 2]>,
    },
    Merge {
        codes: Vec<String>,
    },
    Reassign {
        code: String,
        parent: String,
    },
    Attributes {
        code: String,
        set: serde_json::Map<String, J>,
    },
    Undo {},
    /// OGC API Part 4 POST (create) or PUT: a whole GeoJSON Feature.
    #[serde(skip)]
    Put {
        code: String,
        feature: J,
        create: bool,
    },
    /// OGC API Part 4 PATCH: a JSON merge patch of a Feature.
    #[serde(skip)]
    Patch {
        code: String,
        patch: J,
    },
    /// OGC API Part 4 DELETE.
    #[serde(skip)]
    Remove {
        code: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replacement {
    pub code: String,
    pub geometry: J,
}

impl OpBody {
    pub fn kind(&self) -> &'static str {
        match self {
            OpBody::MoveVertex { .. } => "move_vertex",
            OpBody::MoveEdge { .. } => "move_edge",
            OpBody::ReplaceGeometry { .. } => "replace_geometry",
            OpBody::Split { .. } => "split",
            OpBody::Merge { .. } => "merge",
            OpBody::Reassign { .. } => "reassign",
            OpBody::Attributes { .. } => "attributes",
            OpBody::Undo {} => "undo",
            OpBody::Put { create: true, .. } => "ogc_create",
            OpBody::Put { .. } => "ogc_replace",
            OpBody::Patch { .. } => "ogc_update",
            OpBody::Remove { .. } => "ogc_delete",
        }
    }
}

/// What an operation did, beyond the difference it makes.
#[derive(Default, Debug)]
pub struct Outcome {
    pub summary: String,
    pub created: Vec<String>,
    pub deleted: Vec<String>,
}

/// `[lon, lat]` checked.
pub fn coord(p: [f64; 2], what: &str) -> Result<Coord> {
    let [x, y] = p;
    if !x.is_finite()
        || !y.is_finite()
        || !(-180.0..=180.0).contains(&x)
        || !(-90.0..=90.0).contains(&y)
    {
        return bad(format!("{what} [{x}, {y}] is not a longitude/latitude"));
    }
    Ok(Coord { x, y })
}

/// A polygon or multipolygon from GeoJSON, valid (OGC rules), or why not.
pub fn parse_area(g: &J, what: &str) -> Result<MultiPolygon> {
    let geom = crate::import::geometry_from_json(g)
        .map_err(|e| PlanError::BadRequest(format!("{what}: {e}")))?;
    let mp = match &geom {
        Geometry::Polygon(_) | Geometry::MultiPolygon(_) => to_multi(&geom),
        other => {
            return bad(format!(
                "{what}: a grid must be a Polygon or MultiPolygon, not a {}",
                GeomKind::of(other).label()
            ));
        }
    };
    let n = geo::CoordsIter::coords_count(&mp);
    if n > crate::query::MAX_AREA_VERTICES {
        return bad(format!(
            "{what}: {n} vertices; at most {}",
            crate::query::MAX_AREA_VERTICES
        ));
    }
    for c in geo::CoordsIter::coords_iter(&mp) {
        coord([c.x, c.y], what)?;
    }
    if mp.0.is_empty() {
        return bad(format!("{what}: empty geometry"));
    }
    // O(n log n) for large outlines (geo's check compares every pair).
    if let Err(e) = crate::query::valid::check_area(&mp) {
        let e = e.trim_start_matches("area is not a valid polygon: ");
        return bad(format!("{what}: invalid polygon: {e}"));
    }
    Ok(mp)
}

/// The next free code under `parent`, given codes in use.
pub fn next_code(parent: &str, level: GridLevel, used: &BTreeSet<String>) -> Result<String> {
    let digits = level.code_len() - parent.len();
    let max = used
        .iter()
        .filter(|c| c.len() == level.code_len() && c.starts_with(parent))
        .filter_map(|c| c[parent.len()..].parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let next = max + 1;
    if next >= 10u64.pow(digits as u32) {
        return bad(format!("no free {} code left under {parent}", level.name()));
    }
    Ok(format!("{parent}{next:0digits$}"))
}

/// Every code in use or once used under the plan's reach: draft, published
/// and the plan's base (a deleted grid's code is not handed out again in
/// the same plan).
fn used_codes(work: &Work, cat: &Catalog, plan: &Plan) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = work.keys().cloned().collect();
    s.extend(plan.base.keys().cloned());
    s.extend(cat.grids.by_code.keys().cloned());
    s
}

/// Moves `code` and everything below it to `new_code` (codes are prefixes
/// of their descendants', so the subtree is re-coded by prefix).
fn recode(work: &mut Work, def: &LayerDef, code: &str, new_code: &str, new_parent: &str) {
    let moving: Vec<String> = work
        .keys()
        .filter(|c| c.as_str() == code || (c.starts_with(code) && c.len() > code.len()))
        .cloned()
        .collect();
    for c in moving {
        let Some(mut g) = work.remove(&c) else {
            continue;
        };
        let nc = format!("{new_code}{}", &c[code.len()..]);
        g.set(def, "code", text(&nc));
        if c == code {
            g.set(def, "parent", text(new_parent));
        } else if let Some(p) = g.text(def, "parent").map(str::to_string)
            && p.starts_with(code)
        {
            g.set(
                def,
                "parent",
                text(&format!("{new_code}{}", &p[code.len()..])),
            );
        }
        work.insert(nc, g);
    }
}

fn children_of(work: &Work, def: &LayerDef, code: &str) -> Vec<String> {
    work.iter()
        .filter(|(_, g)| g.text(def, "parent") == Some(code))
        .map(|(c, _)| c.clone())
        .collect()
}

fn level_of(code: &str) -> Result<GridLevel> {
    GridCode::parse(code)
        .map(|c| c.level())
        .map_err(PlanError::BadRequest)
}

/// Applies one operation (not undo) to a copy of the draft.
pub fn apply_op(
    work: &mut Work,
    def: &LayerDef,
    cat: &Catalog,
    plan: &Plan,
    op: &OpBody,
) -> Result<Outcome> {
    let get = |work: &Work, code: &str| -> Result<Grid> {
        work.get(code)
            .cloned()
            .ok_or_else(|| PlanError::BadRequest(format!("grid {code} is not in this plan")))
    };
    match op {
        OpBody::MoveVertex { from, to } => {
            let (from, to) = (coord(*from, "from")?, coord(*to, "to")?);
            let mut n = 0;
            for g in work.values_mut() {
                if topo::move_point(&mut g.geometry, from, to, SNAP_M) {
                    n += 1;
                }
            }
            if n == 0 {
                return bad(format!(
                    "no draft grid has a vertex or an edge at [{}, {}]",
                    from.x, from.y
                ));
            }
            Ok(Outcome {
                summary: format!(
                    "moved [{:.6}, {:.6}] → [{:.6}, {:.6}] in {n} grids",
                    from.x, from.y, to.x, to.y
                ),
                ..Default::default()
            })
        }
        OpBody::MoveEdge { edge, by } => {
            let a = coord(edge[0], "edge start")?;
            let b = coord(edge[1], "edge end")?;
            let d = coord(*by, "by")?;
            let has_edge = work.values().any(|g| {
                g.geometry.0.iter().any(|p| {
                    std::iter::once(p.exterior()).chain(p.interiors()).any(|r| {
                        r.lines()
                            .any(|l| (l.start == a && l.end == b) || (l.start == b && l.end == a))
                    })
                })
            });
            if !has_edge {
                return bad("no draft grid has that edge (both vertices, adjacent)");
            }
            let (a2, b2) = (a + d, b + d);
            let mut n = 0;
            for g in work.values_mut() {
                let ma = topo::move_point(&mut g.geometry, a, a2, 0.0);
                let mb = topo::move_point(&mut g.geometry, b, b2, 0.0);
                if ma || mb {
                    n += 1;
                }
            }
            Ok(Outcome {
                summary: format!("moved an edge by [{:.6}, {:.6}] in {n} grids", d.x, d.y),
                ..Default::default()
            })
        }
        OpBody::ReplaceGeometry { grids } => {
            if grids.is_empty() {
                return bad("replace_geometry needs at least one grid");
            }
            if grids.len() > MAX_REPLACE {
                return bad(format!("at most {MAX_REPLACE} grids at once"));
            }
            let mut seen = BTreeSet::new();
            for r in grids {
                if !seen.insert(r.code.as_str()) {
                    return bad(format!("grid {} appears twice", r.code));
                }
                let mut g = get(work, &r.code)?;
                g.geometry = parse_area(&r.geometry, &format!("grid {}", r.code))?;
                work.insert(r.code.clone(), g);
            }
            Ok(Outcome {
                summary: format!("replaced the geometry of {} grids", grids.len()),
                ..Default::default()
            })
        }
        OpBody::Split { code, line } => {
            if line.len() > 10_000 {
                return bad(format!(
                    "a split line has at most 10000 points, not {}",
                    line.len()
                ));
            }
            let g = get(work, code)?;
            let pts = line
                .iter()
                .map(|p| coord(*p, "line point"))
                .collect::<Result<Vec<_>>>()?;
            let s = topo::split(&g.geometry, &LineString(pts)).map_err(PlanError::BadRequest)?;
            let (mut keep, mut other) = (s.a, s.b);
            if other.unsigned_area() > keep.unsigned_area() {
                std::mem::swap(&mut keep, &mut other);
            }
            let level = level_of(code)?;
            let parent = g
                .text(def, "parent")
                .map(str::to_string)
                .or_else(|| {
                    GridCode::parse(code)
                        .ok()
                        .and_then(|c| c.parent())
                        .map(|p| p.to_string())
                })
                .ok_or_else(|| PlanError::BadRequest(format!("grid {code} has no parent")))?;
            let new_code = next_code(&parent, level, &used_codes(work, cat, plan))?;
            let mut a = g.clone();
            a.geometry = keep;
            let mut b = g.clone();
            b.geometry = other;
            b.set(def, "code", text(&new_code));
            let name = g.text(def, "name").unwrap_or("").to_string();
            b.set(def, "name", text(&format!("{name}（拆分）")));
            b.set(def, "households", Value::Null);
            b.set(def, "population", Value::Null);
            // The neighbours get the new boundary vertices too.
            for (c, n) in work.iter_mut() {
                if c != code {
                    for x in s.crossings {
                        topo::insert_vertex(&mut n.geometry, x, SNAP_M);
                    }
                }
            }
            let b_geom = b.geometry.clone();
            work.insert(code.clone(), a);
            work.insert(new_code.clone(), b);
            // Children follow the half holding their inside point.
            let mut moved = 0;
            for child in children_of(work, def, code) {
                let inside = work
                    .get(&child)
                    .and_then(|g| geo::InteriorPoint::interior_point(&g.geometry))
                    .is_some_and(|p| geo::Intersects::intersects(&b_geom, &p));
                if inside {
                    let Some(cl) = level.child() else { continue };
                    let nc = next_code(&new_code, cl, &used_codes(work, cat, plan))?;
                    recode(work, def, &child, &nc, &new_code);
                    moved += 1;
                }
            }
            Ok(Outcome {
                summary: format!(
                    "split {code} into {code} and {new_code}{}",
                    if moved > 0 {
                        format!(" ({moved} children moved)")
                    } else {
                        String::new()
                    }
                ),
                created: vec![new_code],
                ..Default::default()
            })
        }
        OpBody::Merge { codes } => {
            if codes.len() < 2 {
                return bad("merge needs two or more grids");
            }
            let mut uniq = BTreeSet::new();
            let mut grids = Vec::new();
            for c in codes {
                if !uniq.insert(c.as_str()) {
                    return bad(format!("grid {c} appears twice"));
                }
                grids.push(get(work, c)?);
            }
            let parent = grids[0].text(def, "parent").map(str::to_string);
            for (c, g) in codes.iter().zip(&grids).skip(1) {
                if g.text(def, "parent").map(str::to_string) != parent {
                    return bad(format!("{c} and {} have different parents", codes[0]));
                }
                if level_of(c)? != level_of(&codes[0])? {
                    return bad(format!("{c} and {} are of different levels", codes[0]));
                }
            }
            let geoms: Vec<MultiPolygon> = grids.iter().map(|g| g.geometry.clone()).collect();
            let merged = topo::merge(&geoms).map_err(|e| {
                PlanError::BadRequest(format!("cannot merge {}: {e}", codes.join(", ")))
            })?;
            let mut first = grids[0].clone();
            first.geometry = merged;
            let pop: Option<i64> = grids.iter().map(|g| g.int(def, "population")).sum();
            first.set(
                def,
                "population",
                pop.map(Value::Int).unwrap_or(Value::Null),
            );
            work.insert(codes[0].clone(), first);
            let level = level_of(&codes[0])?;
            let mut created = Vec::new();
            for c in &codes[1..] {
                for child in children_of(work, def, c) {
                    let Some(cl) = level.child() else { continue };
                    let nc = next_code(&codes[0], cl, &used_codes(work, cat, plan))?;
                    recode(work, def, &child, &nc, &codes[0]);
                    created.push(nc);
                }
                work.remove(c);
            }
            Ok(Outcome {
                summary: format!("merged {} into {}", codes[1..].join(", "), codes[0]),
                created,
                deleted: codes[1..].to_vec(),
            })
        }
        OpBody::Reassign { code, parent } => {
            let _ = get(work, code)?;
            if !work.contains_key(parent) {
                return bad(format!(
                    "the new parent {parent} is not in this plan (add it to the scope)"
                ));
            }
            let level = level_of(code)?;
            if level.parent() != Some(level_of(parent)?) {
                return bad(format!("{parent} is not of the level above {code}"));
            }
            if work.get(code).and_then(|g| g.text(def, "parent")) == Some(parent.as_str()) {
                return bad(format!("{code} is already under {parent}"));
            }
            let nc = next_code(parent, level, &used_codes(work, cat, plan))?;
            recode(work, def, code, &nc, parent);
            Ok(Outcome {
                summary: format!("moved {code} under {parent} as {nc}"),
                created: vec![nc],
                deleted: vec![code.clone()],
            })
        }
        OpBody::Attributes { code, set } => {
            let mut g = get(work, code)?;
            if set.is_empty() {
                return bad("attributes: nothing to set");
            }
            for (k, v) in set {
                let val = match (k.as_str(), v) {
                    ("name" | "staff" | "phone", J::String(s)) if s.chars().count() <= 200 => {
                        text(s)
                    }
                    ("staff" | "phone", J::Null) => Value::Null,
                    ("population", J::Number(n)) if n.as_i64().is_some_and(|n| n >= 0) => {
                        Value::Int(n.as_i64().unwrap_or(0))
                    }
                    ("population", J::Null) => Value::Null,
                    ("kind", J::String(s)) if s == "comprehensive" || s == "dedicated" => text(s),
                    ("name" | "staff" | "phone" | "population" | "kind", _) => {
                        return bad(format!("attributes: bad value for {k}: {v}"));
                    }
                    _ => {
                        return bad(format!(
                            "attributes: {k} cannot be set (name, staff, phone, population, kind can; code, parent and level follow from split, merge and reassign; households are counted)"
                        ));
                    }
                };
                g.set(def, k, val);
            }
            work.insert(code.clone(), g);
            Ok(Outcome {
                summary: format!(
                    "changed {} of {code}",
                    set.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                ..Default::default()
            })
        }
        OpBody::Put {
            code,
            feature,
            create,
        } => {
            let mut g = if *create {
                if work.contains_key(code) || cat.grids.get(code).is_some() {
                    return Err(PlanError::Conflict(format!("grid {code} exists")));
                }
                let parent = GridCode::parse(code)
                    .ok()
                    .and_then(|c| c.parent())
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let mut g = Grid {
                    geometry: MultiPolygon(vec![]),
                    props: vec![Value::Null; def.properties.len()],
                };
                g.set(def, "code", text(code));
                g.set(def, "parent", text(&parent));
                g.set(def, "level", text(level_of(code)?.name()));
                g.set(def, "kind", text("comprehensive"));
                g
            } else {
                let mut g = get(work, code)?;
                for k in SETTABLE {
                    g.set(def, k, Value::Null);
                }
                if def.prop_index("kind").is_some() {
                    g.set(def, "kind", text("comprehensive"));
                }
                g
            };
            let geom = feature
                .get("geometry")
                .filter(|v| !v.is_null())
                .ok_or_else(|| PlanError::BadRequest("the feature needs a geometry".into()))?;
            g.geometry = parse_area(geom, &format!("grid {code}"))?;
            let props = feature
                .get("properties")
                .and_then(J::as_object)
                .cloned()
                .unwrap_or_default();
            set_props(&mut g, def, code, &props)?;
            if g.text(def, "name").is_none_or(str::is_empty) {
                return bad(format!("grid {code}: a name is required"));
            }
            work.insert(code.clone(), g);
            Ok(Outcome {
                summary: format!(
                    "{} {code} (OGC API)",
                    if *create { "created" } else { "replaced" }
                ),
                created: if *create { vec![code.clone()] } else { vec![] },
                ..Default::default()
            })
        }
        OpBody::Patch { code, patch } => {
            let mut g = get(work, code)?;
            if let Some(geom) = patch.get("geometry") {
                if geom.is_null() {
                    return bad("a grid cannot lose its geometry");
                }
                g.geometry = parse_area(geom, &format!("grid {code}"))?;
            }
            match patch.get("properties") {
                Some(J::Object(props)) => set_props(&mut g, def, code, props)?,
                Some(J::Null) | None => {}
                Some(_) => return bad("properties must be an object"),
            }
            work.insert(code.clone(), g);
            Ok(Outcome {
                summary: format!("updated {code} (OGC API)"),
                ..Default::default()
            })
        }
        OpBody::Remove { code } => {
            get(work, code)?;
            let kids = children_of(work, def, code);
            if !kids.is_empty() {
                return Err(PlanError::Conflict(format!(
                    "grid {code} has {} grids under it in this plan: merge, move or delete them first",
                    kids.len()
                )));
            }
            work.remove(code);
            Ok(Outcome {
                summary: format!("deleted {code} (OGC API)"),
                deleted: vec![code.clone()],
                ..Default::default()
            })
        }
        OpBody::Undo {} => bad("undo is not an edit"),
    }
}

/// Attributes a planner (or QGIS) may set; the rest follow from the code
/// or are counted.
const SETTABLE: [&str; 4] = ["name", "staff", "phone", "population"];

/// Sets properties from a GeoJSON properties object (OGC API writes):
/// settable ones by type; `code`, `parent`, `level` must agree with the
/// item; `households` (counted) and `state` (ours) are ignored.
fn set_props(
    g: &mut Grid,
    def: &LayerDef,
    code: &str,
    props: &serde_json::Map<String, J>,
) -> Result<()> {
    for (k, v) in props {
        match (k.as_str(), v) {
            ("name" | "staff" | "phone", J::String(s)) if s.chars().count() <= 200 => {
                g.set(def, k, text(s))
            }
            ("name" | "staff" | "phone" | "population", J::Null) => g.set(def, k, Value::Null),
            ("population", J::Number(n)) if n.as_i64().is_some_and(|n| n >= 0) => {
                g.set(def, k, Value::Int(n.as_i64().unwrap_or(0)))
            }
            ("kind", J::String(s)) if s == "comprehensive" || s == "dedicated" => {
                g.set(def, k, text(s))
            }
            ("code" | "parent" | "level", J::String(s)) if g.text(def, k) == Some(s.as_str()) => {}
            ("code", _) => return bad(format!("code {v} does not match the item {code}")),
            ("parent" | "level", _) => {
                return bad(format!(
                    "{k} cannot change here: use the reassign operation of /api/plans/{{id}}/ops"
                ));
            }
            ("households" | "state" | "plan", _) => {}
            (k, v) if def.prop_index(k).is_some() => return bad(format!("bad value for {k}: {v}")),
            (k, _) => return bad(format!("unknown property {k:?}")),
        }
    }
    Ok(())
}

/// The code of a grid created through OGC API: `properties.code` if given
/// (free, under a draft parent), else the next free code under
/// `properties.parent`.
pub fn new_item_code(plan: &Plan, cat: &Catalog, feature: &J) -> Result<String> {
    let props = feature.get("properties").and_then(J::as_object);
    let get = |k: &str| {
        props
            .and_then(|p| p.get(k))
            .and_then(J::as_str)
            .map(str::to_string)
    };
    let work = plan.work();
    match (get("code"), get("parent")) {
        (Some(code), parent) => {
            let c = GridCode::parse(&code).map_err(PlanError::BadRequest)?;
            let p = c
                .parent()
                .map(|p| p.to_string())
                .ok_or_else(|| PlanError::BadRequest("a district cannot be created".into()))?;
            if parent.is_some_and(|x| x != p) {
                return bad(format!("code {code} does not lie under parent {p}"));
            }
            if !work.contains_key(&p) {
                return bad(format!("the parent {p} is not in this plan"));
            }
            Ok(code)
        }
        (None, Some(parent)) => {
            if !work.contains_key(&parent) {
                return bad(format!("the parent {parent} is not in this plan"));
            }
            let level = level_of(&parent)?
                .child()
                .ok_or_else(|| PlanError::BadRequest("micro-grids have no children".into()))?;
            next_code(&parent, level, &used_codes(&work, cat, plan))
        }
        (None, None) => bad("a new grid needs properties.parent (or properties.code)"),
    }
}

impl Plans {
    /// Drops the book: the next use reads the plans from the store again
    /// (another server changed them).
    pub async fn forget(&self) {
        let mut b = self.book.lock().await;
        b.loaded = false;
        b.plans.clear();
    }

    /// The book, loaded from the store the first time.
    pub async fn book(&self, store: &dyn Store) -> Result<tokio::sync::MutexGuard<'_, Book>> {
        let mut b = self.book.lock().await;
        if !b.loaded {
            b.plans = load(store).await?;
            b.loaded = true;
        }
        Ok(b)
    }
}

async fn load(store: &dyn Store) -> Result<BTreeMap<i64, Plan>> {
    let defs = store.layers().await?;
    let (Some(pd), Some(gd)) = (
        defs.iter().find(|d| d.name == builtin::PLANS),
        defs.iter().find(|d| d.name == builtin::PLAN_GRIDS),
    ) else {
        return Ok(BTreeMap::new());
    };
    let mut plans: BTreeMap<i64, Plan> = store
        .load_layer(builtin::PLANS)
        .await?
        .iter()
        .map(|f| (f.id, Plan::from_row(f, pd)))
        .collect();
    let code_at = gd.prop_index("code");
    for f in store.load_layer(builtin::PLAN_GRIDS).await? {
        let Some(pid) = f.properties.first().and_then(Value::as_i64) else {
            continue;
        };
        let Some(p) = plans.get_mut(&pid) else {
            continue;
        };
        let Some(code) = code_at
            .and_then(|i| f.properties.get(i))
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        p.grids.insert(
            code,
            DraftGrid {
                fid: f.id,
                version: f.version,
                grid: Grid {
                    geometry: to_multi(&f.geometry),
                    props: f.properties[1..].to_vec(),
                },
            },
        );
    }
    Ok(plans)
}

/// Creates the plan layers when the store lacks them.
async fn ensure_layers(store: &dyn Store, grids: &LayerDef) -> Result<()> {
    let defs = store.layers().await?;
    let have = |n: &str| defs.iter().any(|d| d.name == n);
    let mut cs = ChangeSet::new("onemap", "plan layers");
    if !have(builtin::PLANS) {
        cs.create.push(plans_def());
    }
    if !have(builtin::PLAN_GRIDS) {
        cs.create.push(plan_grids_def(grids));
    }
    if !cs.create.is_empty() {
        store.apply(&cs).await?;
    }
    Ok(())
}

/// The body of `POST /api/plans`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPlan {
    pub title: String,
    pub scope: Vec<String>,
    /// Set from the signed-in principal (what a client sends is ignored).
    #[serde(default)]
    pub author: String,
}

fn check_person(author: &str, what: &str) -> Result<()> {
    if author.trim().is_empty() || author.chars().count() > 100 {
        return bad(format!("{what} is required (at most 100 characters)"));
    }
    Ok(())
}

impl Book {
    pub fn get(&self, id: i64) -> Result<&Plan> {
        self.plans
            .get(&id)
            .ok_or_else(|| PlanError::NotFound(format!("no plan {id}")))
    }

    /// `POST /api/plans`.
    pub async fn create(&mut self, store: &dyn Store, cat: &Catalog, body: NewPlan) -> Result<i64> {
        check_person(&body.author, "author")?;
        if body.title.trim().is_empty() || body.title.chars().count() > 200 {
            return bad("title is required (at most 200 characters)");
        }
        if body.scope.is_empty() || body.scope.len() > 100 {
            return bad("scope: one to 100 grid codes");
        }
        let Some(gl) = cat.layer(builtin::GRIDS) else {
            return bad("this store has no grids layer");
        };
        let mut scope: Vec<String> = body.scope.clone();
        scope.sort();
        scope.dedup();
        for c in &scope {
            GridCode::parse(c).map_err(PlanError::BadRequest)?;
            if cat.grids.get(c).is_none() {
                return Err(PlanError::NotFound(format!("no grid {c}")));
            }
        }
        for a in &scope {
            for b in &scope {
                if a != b && b.starts_with(a.as_str()) {
                    return bad(format!("scope grids must not nest: {b} lies under {a}"));
                }
            }
        }
        // The scope grids and everything below them.
        let mut nodes: Vec<u32> = scope
            .iter()
            .filter_map(|c| cat.grids.get(c).map(|(n, _)| n))
            .collect();
        let mut k = 0;
        while k < nodes.len() {
            nodes.extend(cat.grids.nodes[nodes[k] as usize].children.iter().copied());
            k += 1;
        }
        ensure_layers(store, &gl.def).await?;
        // Plans are never deleted (a discarded one stays listed), so the
        // next id is one past the largest.
        let id = self.plans.keys().next_back().copied().unwrap_or(0) + 1;
        let mut plan = Plan {
            id,
            version: 1,
            title: body.title.trim().to_string(),
            author: body.author.trim().to_string(),
            scope,
            status: "draft".into(),
            created_at: now_iso(),
            base_seq: cat.seq,
            base: BTreeMap::new(),
            ops: Vec::new(),
            published_at: None,
            published_seq: None,
            published_by: None,
            reason: None,
            grids: BTreeMap::new(),
            bbox: None,
        };
        let mut work = Work::new();
        for n in nodes {
            let node = &cat.grids.nodes[n as usize];
            let f = &gl.features[node.feature as usize];
            plan.base.insert(node.code.to_string(), (f.id, f.version));
            work.insert(node.code.to_string(), Grid::from_feature(f));
            plan.bbox = match (plan.bbox, f.geometry.bounding_rect()) {
                (Some(a), Some(b)) => Some(crate::index::rect_union(a, b)),
                (a, b) => a.or(b),
            };
        }
        let (geometry, properties) = plan.row();
        let mut cs = ChangeSet::new(
            &plan.author,
            &format!("plan {id}: created ({})", plan.title),
        );
        cs.ops.push(Op::Insert {
            layer: builtin::PLANS.into(),
            id: Some(id),
            geometry,
            properties,
        });
        let first = cs.ops.len();
        let codes: Vec<String> = work.keys().cloned().collect();
        for (code, g) in &work {
            let mut props = vec![Value::Int(id)];
            props.extend(g.props.iter().cloned());
            cs.ops.push(Op::Insert {
                layer: builtin::PLAN_GRIDS.into(),
                id: None,
                geometry: Geometry::MultiPolygon(g.geometry.clone()),
                properties: props,
            });
            let _ = code;
        }
        let applied = store.apply(&cs).await?;
        for (k, code) in codes.into_iter().enumerate() {
            let Some(g) = work.remove(&code) else {
                continue;
            };
            plan.grids.insert(
                code,
                DraftGrid {
                    fid: applied.ids[first + k],
                    version: 1,
                    grid: g,
                },
            );
        }
        self.plans.insert(id, plan);
        Ok(id)
    }

    /// `POST /api/plans/{id}/ops`: one operation, committed or refused whole.
    pub async fn operate(
        &mut self,
        store: &dyn Store,
        cat: &Catalog,
        id: i64,
        op: OpBody,
        author: &str,
    ) -> Result<(OpRecord, Outcome, BTreeSet<String>)> {
        let plan = self.get(id)?;
        if !plan.is_draft() {
            return Err(PlanError::Conflict(format!(
                "plan {id} is {}: it can no longer change",
                plan.status
            )));
        }
        let Some(gl) = cat.layer(builtin::GRIDS) else {
            return bad("this store has no grids layer");
        };
        let def = gl.def.clone();
        let mut work = plan.work();
        let (outcome, undoes) = match &op {
            OpBody::Undo {} => {
                let Some(last) = plan.last_undoable().cloned() else {
                    return bad("nothing to undo");
                };
                undo_into(store, plan, &last, &mut work, &def).await?;
                (
                    Outcome {
                        summary: format!("undid {} ({})", last.n, last.kind),
                        ..Default::default()
                    },
                    Some(last.n),
                )
            }
            other => (apply_op(&mut work, &def, cat, plan, other)?, None),
        };
        let n = plan.ops.iter().map(|o| o.n).max().unwrap_or(0) + 1;
        let rec = OpRecord {
            n,
            kind: op.kind().into(),
            summary: outcome.summary.clone(),
            author: author.to_string(),
            time: now_iso(),
            undone: false,
            undoes,
        };
        let changed = self.commit(store, id, work, rec.clone()).await?;
        Ok((rec, outcome, changed))
    }

    /// Writes the difference between the draft and `work`, with the plan
    /// row carrying `rec`, as one change set; then updates the book.
    async fn commit(
        &mut self,
        store: &dyn Store,
        id: i64,
        work: Work,
        rec: OpRecord,
    ) -> Result<BTreeSet<String>> {
        let plan = self.get(id)?;
        let mut next = plan.clone();
        if let Some(u) = rec.undoes
            && let Some(o) = next.ops.iter_mut().find(|o| o.n == u)
        {
            o.undone = true;
        }
        next.ops.push(rec.clone());
        let (geometry, properties) = next.row();
        let mut cs = ChangeSet::new(
            &rec.author,
            &format!("plan {id} op {}: {}", rec.n, rec.kind),
        );
        cs.ops.push(Op::Update {
            layer: builtin::PLANS.into(),
            id,
            expected_version: plan.version,
            geometry,
            properties,
        });
        let mut changed = BTreeSet::new();
        // (code, op index) of writes whose result the book needs.
        let mut writes: Vec<(String, usize)> = Vec::new();
        for (code, d) in &plan.grids {
            match work.get(code) {
                None => {
                    cs.ops.push(Op::Delete {
                        layer: builtin::PLAN_GRIDS.into(),
                        id: d.fid,
                        expected_version: d.version,
                    });
                    changed.insert(code.clone());
                }
                Some(g) if *g != d.grid => {
                    let mut props = vec![Value::Int(id)];
                    props.extend(g.props.iter().cloned());
                    cs.ops.push(Op::Update {
                        layer: builtin::PLAN_GRIDS.into(),
                        id: d.fid,
                        expected_version: d.version,
                        geometry: Geometry::MultiPolygon(g.geometry.clone()),
                        properties: props,
                    });
                    writes.push((code.clone(), cs.ops.len() - 1));
                    changed.insert(code.clone());
                }
                Some(_) => {}
            }
        }
        for (code, g) in &work {
            if !plan.grids.contains_key(code) {
                let mut props = vec![Value::Int(id)];
                props.extend(g.props.iter().cloned());
                cs.ops.push(Op::Insert {
                    layer: builtin::PLAN_GRIDS.into(),
                    id: None,
                    geometry: Geometry::MultiPolygon(g.geometry.clone()),
                    properties: props,
                });
                writes.push((code.clone(), cs.ops.len() - 1));
                changed.insert(code.clone());
            }
        }
        if changed.is_empty() && rec.undoes.is_none() {
            return bad("the operation changes nothing");
        }
        let applied = store.apply(&cs).await?;
        next.version = applied.versions[0];
        for code in &changed {
            if !work.contains_key(code) {
                next.grids.remove(code);
            }
        }
        for (code, k) in writes {
            let Some(g) = work.get(&code) else { continue };
            next.grids.insert(
                code,
                DraftGrid {
                    fid: applied.ids[k],
                    version: applied.versions[k],
                    grid: g.clone(),
                },
            );
        }
        self.plans.insert(id, next);
        Ok(changed)
    }

    /// `POST /api/plans/{id}/publish`.
    pub async fn publish(
        &mut self,
        st: &crate::app::App,
        id: i64,
        author: &str,
        reason: &str,
    ) -> Result<J> {
        check_person(author, "author")?;
        if reason.trim().is_empty() || reason.chars().count() > 500 {
            return bad("reason is required (at most 500 characters)");
        }
        let plan = self.get(id)?;
        if !plan.is_draft() {
            return Err(PlanError::Conflict(format!("plan {id} is {}", plan.status)));
        }
        let changes = plan.changes();
        let expect = plan.base.clone();
        let out = publish::publish(
            st,
            &changes,
            &expect,
            author.trim(),
            &format!("[plan {id}] {}", reason.trim()),
        )
        .await?;
        let seq = out.get("seq").and_then(J::as_i64);
        let (author, reason) = (author.trim().to_string(), reason.trim().to_string());
        let who = author.clone();
        self.update_row(st.store.as_ref(), id, &who, "published", move |p| {
            p.status = "published".into();
            p.published_at = Some(now_iso());
            p.published_seq = seq;
            p.published_by = Some(author);
            p.reason = Some(reason);
        })
        .await?;
        Ok(out)
    }

    /// Changes a plan's own fields (title, status) in the store and book.
    pub async fn update_row(
        &mut self,
        store: &dyn Store,
        id: i64,
        who: &str,
        what: &str,
        f: impl FnOnce(&mut Plan),
    ) -> Result<()> {
        let plan = self.get(id)?;
        let mut next = plan.clone();
        f(&mut next);
        let (geometry, properties) = next.row();
        let mut cs = ChangeSet::new(who, &format!("plan {id}: {what}"));
        cs.ops.push(Op::Update {
            layer: builtin::PLANS.into(),
            id,
            expected_version: plan.version,
            geometry,
            properties,
        });
        let applied = store.apply(&cs).await?;
        next.version = applied.versions[0];
        self.plans.insert(id, next);
        Ok(())
    }
}

/// The draft as it was before operation `rec`: its change set is read
/// back from the change log (the plan row's update that added `rec` is the
/// change set's first row) and inverted into `work`.
async fn undo_into(
    store: &dyn Store,
    plan: &Plan,
    rec: &OpRecord,
    work: &mut Work,
    def: &LayerDef,
) -> Result<()> {
    let rows = store.history(builtin::PLANS, plan.id).await?;
    let txn = rows
        .iter()
        .find(|c| {
            c.op == "update"
                && c.after
                    .as_ref()
                    .and_then(|a| a.pointer("/properties/ops"))
                    .and_then(J::as_str)
                    .and_then(|s| serde_json::from_str::<Vec<OpRecord>>(s).ok())
                    .and_then(|ops| ops.last().map(|o| o.n == rec.n))
                    .unwrap_or(false)
        })
        .map(|c| c.txn)
        .ok_or_else(|| {
            PlanError::Store(format!(
                "operation {} of plan {} is not in the change log",
                rec.n, plan.id
            ))
        })?;
    let mut rows = Vec::new();
    let mut from = txn - 1;
    'read: loop {
        let batch = store.changes_since(from, 2000).await?;
        if batch.is_empty() {
            break;
        }
        for c in batch {
            if c.txn != txn {
                break 'read;
            }
            from = c.seq;
            rows.push(c);
        }
    }
    let grid_of = |f: &J| -> Option<(String, Grid)> {
        let code = f.pointer("/properties/code")?.as_str()?.to_string();
        Some((
            code,
            Grid::from_feature(&Feature::from_geojson(f, 0, 0, def)?),
        ))
    };
    for c in rows.iter().rev().filter(|c| c.layer == builtin::PLAN_GRIDS) {
        if let Some((code, _)) = c.after.as_ref().and_then(grid_of) {
            work.remove(&code);
        }
        if let Some((code, g)) = c.before.as_ref().and_then(grid_of) {
            work.insert(code, g);
        }
    }
    Ok(())
}
