//! The tile engine: Mapbox Vector Tiles (MVT 2.1) from the catalog.
//!
//! Per tile and layer: R-tree lookup of the tile's bounds plus a buffer →
//! project to tile coordinates → clip (polygons by Sutherland–Hodgman, lines
//! by Liang–Barsky) → simplify to about one pixel (grids: coverage-aware, see
//! [`coverage`]) → quantise to the extent → drop degenerate parts and make
//! polygon rings valid ([`clip::repair`]) → encode with the `mvt` crate.
//! Feature ids are the stable feature ids.
//!
//! Zoom-appropriate content: each layer has a zoom range (its `LayerDef`),
//! each grid level its own minimum zoom, and dense point layers become
//! cluster points (`count`, counts per category) below a configured zoom.
//!
//! Rendering is a pure function of the catalog snapshot and the tile id, so
//! the same data gives the same bytes (and ETag).

pub mod cache;
pub mod clip;
pub mod coverage;
pub mod mercator;

use crate::index::{Catalog, LayerIndex};
use crate::model::{LayerDef, Value, builtin};
use clip::{ClipRect, P};
use geo::{Geometry, LineString, Polygon};
use mercator::{Projector, TileId};
use mvt::{GeomEncoder, GeomType, Tile};
use std::collections::BTreeMap;

/// Tile settings.
#[derive(Clone, Debug)]
pub struct TileConfig {
    /// Tile extent (MVT units per side).
    pub extent: u32,
    /// Buffer around the tile, in extent units, so strokes and labels at the
    /// edges draw seamlessly.
    pub buffer: u32,
    /// Simplification tolerance, in extent units (8 = one pixel of a 512 px
    /// tile, as MapLibre draws them).
    pub tolerance: f64,
    /// Minimum zoom of each comprehensive grid level (district … micro).
    pub grid_minzoom: [u8; 5],
    /// Minimum zoom of dedicated grids.
    pub dedicated_minzoom: u8,
    /// Layers drawn as clusters below a zoom: (layer, first zoom with
    /// individual points).
    pub cluster_below: Vec<(String, u8)>,
    /// Cluster cell size in extent units (a divisor of the extent, so cells
    /// never straddle tiles).
    pub cluster_cell: u32,
    /// A coarser cell for overview zooms (up to `overview_maxzoom`), where a
    /// whole district fits in a tile or two and 256-unit cells give hundreds
    /// of small bubbles.
    pub overview_cluster_cell: u32,
    pub overview_maxzoom: u8,
    /// Below this zoom, point features carry only the properties the map
    /// styles by (status, level, category …), not names and titles: a
    /// district-wide tile of 30,000 named cameras would otherwise pass the
    /// 500 KB budget. Cards fetch the details from the API.
    pub detail_minzoom: u8,
    /// Features drawn only from a zoom on, by a property's value: (layer,
    /// property, value, minzoom). Minor roads at city scale would fill a
    /// district-wide tile on their own.
    pub value_minzoom: Vec<(String, String, String, u8)>,
}

impl Default for TileConfig {
    fn default() -> Self {
        TileConfig {
            extent: 4096,
            buffer: 64,
            tolerance: 8.0,
            grid_minzoom: [0, 9, 11, 13, 15],
            dedicated_minzoom: 13,
            cluster_below: vec![
                (builtin::EVENTS.to_string(), 16),
                (builtin::ADDRESSES.to_string(), 16),
                (builtin::RISKS.to_string(), 12),
                (builtin::CAMERAS.to_string(), 13),
            ],
            cluster_cell: 256,
            overview_cluster_cell: 512,
            overview_maxzoom: 11,
            detail_minzoom: 14,
            value_minzoom: vec![
                (
                    builtin::ROADS.into(),
                    "class".into(),
                    "secondary".into(),
                    12,
                ),
                (builtin::ROADS.into(), "class".into(), "branch".into(), 14),
            ],
        }
    }
}

/// The order in which `all` lists layers: context below, points on top.
const DRAW_ORDER: [&str; 8] = [
    builtin::WATER,
    builtin::ROADS,
    builtin::GRIDS,
    builtin::BUILDINGS,
    builtin::RISKS,
    builtin::CAMERAS,
    builtin::ADDRESSES,
    builtin::EVENTS,
];

/// Resolves a `{layers}` path segment (`all` or a comma list) to layer
/// names, in drawing order, without duplicates. Unknown names are an error.
pub fn resolve_layers(cat: &Catalog, spec: &str) -> Result<Vec<String>, String> {
    if spec == "all" {
        let mut out: Vec<String> = DRAW_ORDER
            .iter()
            .filter(|n| cat.layer(n).is_some())
            .map(|n| n.to_string())
            .collect();
        for l in &cat.layers {
            if !out.contains(&l.def.name) {
                out.push(l.def.name.clone());
            }
        }
        return Ok(out);
    }
    let mut out: Vec<String> = Vec::new();
    for name in spec.split(',') {
        if cat.layer(name).is_none() {
            return Err(format!("unknown layer {name:?}"));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    if out.is_empty() {
        return Err("no layers named".into());
    }
    let rank = |n: &String| {
        DRAW_ORDER
            .iter()
            .position(|d| d == n)
            .unwrap_or(DRAW_ORDER.len())
    };
    out.sort_by_key(rank);
    Ok(out)
}

/// Properties that only appear from `detail_minzoom` on.
const DETAIL_PROPS: [&str; 4] = ["name", "title", "ext_id", "created_at"];

/// The properties a layer carries in tiles at zoom `z` (by schema index).
/// Built-in layers carry what the maps draw and label; custom layers carry
/// all.
fn tile_props(def: &LayerDef, z: u8, cfg: &TileConfig) -> Vec<usize> {
    let detail = z >= cfg.detail_minzoom
        || !matches!(
            def.geometry,
            crate::model::GeomKind::Point
                | crate::model::GeomKind::MultiPoint
                | crate::model::GeomKind::Geometry
        );
    let keep = |n: &str| detail || !DETAIL_PROPS.contains(&n);
    let names: &[&str] = match def.name.as_str() {
        builtin::ADDRESSES => &["households"],
        builtin::CAMERAS => &["name", "kind", "status", "direction_deg", "fov_deg"],
        builtin::RISKS => &["name", "category", "level", "status", "department"],
        builtin::BUILDINGS => &[
            "name",
            "floors",
            "height_m",
            "tax_10k_cny",
            "occupancy_rate",
            "enterprises",
            "alert",
        ],
        builtin::EVENTS => &[
            "ext_id",
            "title",
            "source",
            "category",
            "status",
            "created_at",
        ],
        builtin::ROADS => &["name", "class"],
        builtin::WATER => &["name"],
        _ => {
            return (0..def.properties.len())
                .filter(|&i| keep(def.properties[i].name.as_str()))
                .collect();
        }
    };
    names
        .iter()
        .filter(|n| keep(n))
        .filter_map(|n| def.prop_index(n))
        .collect()
}

/// A tag value for a feature.
enum Tag<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
}

fn tag_of(v: &Value) -> Option<Tag<'_>> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => Tag::Bool(*b),
        Value::Int(i) => Tag::Int(*i),
        Value::Float(f) => Tag::Float(*f),
        Value::Text(s) => Tag::Str(s),
    })
}

/// Builds one layer of a tile.
struct LayerOut {
    layer: mvt::Layer,
}

impl LayerOut {
    fn add(&mut self, geom: mvt::GeomData, id: u64, tags: &[(&str, Tag)]) {
        let layer = std::mem::take(&mut self.layer);
        let mut f = layer.into_feature(geom);
        f.set_id(id);
        for (k, t) in tags {
            match t {
                Tag::Str(s) => f.add_tag_string(k, s),
                Tag::Int(i) => f.add_tag_sint(k, *i),
                Tag::Float(x) => f.add_tag_double(k, *x),
                Tag::Bool(b) => f.add_tag_bool(k, *b),
            }
        }
        self.layer = f.into_layer();
    }
}

/// Encodes polygons (rings already clipped and simplified; first ring of
/// each polygon is its exterior) with MVT winding: exterior clockwise in
/// tile space, holes counter-clockwise. None when nothing survives.
///
/// Each polygon's rings are quantised and then repaired together
/// ([`clip::repair`]): clipping leaves zero-width bridges along the buffer's
/// edge and rounding can pinch a ring or fold it into a spike, and MVT 2.1
/// §4.3.4.4 asks for rings that neither cross nor touch themselves. The
/// repair moves no vertex, so grids still meet their neighbours exactly; one
/// polygon may come out as several (the pieces a concave shape leaves inside
/// the tile, or the lobes of a pinched ring).
fn encode_polygons(polys: &[Vec<Vec<P>>]) -> Option<mvt::GeomData> {
    let mut enc = GeomEncoder::<i32>::new(GeomType::Polygon);
    let mut any = false;
    let mut q: Vec<Vec<[i32; 2]>> = Vec::new();
    for rings in polys {
        q.clear();
        q.extend(rings.iter().map(|r| clip::quantize(r)));
        for (exterior, holes) in clip::repair(&q) {
            for ring in std::iter::once(&exterior).chain(&holes) {
                for p in ring {
                    enc.add_point(p[0], p[1]).ok()?;
                }
                enc.complete_geom().ok()?;
            }
            any = true;
        }
    }
    if !any {
        return None;
    }
    enc.encode().ok()
}

fn encode_lines(parts: &[Vec<P>]) -> Option<mvt::GeomData> {
    let mut enc = GeomEncoder::<i32>::new(GeomType::Linestring);
    let mut any = false;
    for part in parts {
        let q = clip::quantize(part);
        if q.len() < 2 {
            continue;
        }
        for p in &q {
            enc.add_point(p[0], p[1]).ok()?;
        }
        enc.complete_geom().ok()?;
        any = true;
    }
    if !any {
        return None;
    }
    enc.encode().ok()
}

fn encode_points(points: &[[i32; 2]]) -> Option<mvt::GeomData> {
    if points.is_empty() {
        return None;
    }
    let mut enc = GeomEncoder::<i32>::new(GeomType::Point);
    for p in points {
        enc.add_point(p[0], p[1]).ok()?;
    }
    enc.encode().ok()
}

fn project_ring(pr: &Projector, l: &LineString) -> Vec<P> {
    let mut r: Vec<P> = l.0.iter().map(|c| pr.project(c.x, c.y)).collect();
    clip::dedup_ring(&mut r);
    r
}

/// The polygons of a geometry, projected and clipped; rings in
/// `[exterior, holes…]` order per polygon.
fn polygons(g: &Geometry, pr: &Projector, rect: &ClipRect) -> Vec<Vec<Vec<P>>> {
    let one = |p: &Polygon| -> Option<Vec<Vec<P>>> {
        let ext = rect.ring(&project_ring(pr, p.exterior()));
        if ext.len() < 3 {
            return None;
        }
        let mut rings = vec![ext];
        for h in p.interiors() {
            let c = rect.ring(&project_ring(pr, h));
            if c.len() >= 3 {
                rings.push(c);
            }
        }
        Some(rings)
    };
    match g {
        Geometry::Polygon(p) => one(p).into_iter().collect(),
        Geometry::MultiPolygon(m) => m.0.iter().filter_map(one).collect(),
        Geometry::Rect(r) => one(&r.to_polygon()).into_iter().collect(),
        Geometry::Triangle(t) => one(&t.to_polygon()).into_iter().collect(),
        Geometry::GeometryCollection(c) => c.0.iter().flat_map(|g| polygons(g, pr, rect)).collect(),
        _ => Vec::new(),
    }
}

fn lines(g: &Geometry, pr: &Projector, rect: &ClipRect) -> Vec<Vec<P>> {
    let one = |l: &LineString| -> Vec<Vec<P>> {
        let mut p: Vec<P> = l.0.iter().map(|c| pr.project(c.x, c.y)).collect();
        p.dedup();
        rect.line(&p)
    };
    match g {
        Geometry::LineString(l) => one(l),
        Geometry::Line(l) => one(&LineString(vec![l.start, l.end])),
        Geometry::MultiLineString(m) => m.0.iter().flat_map(one).collect(),
        Geometry::GeometryCollection(c) => c.0.iter().flat_map(|g| lines(g, pr, rect)).collect(),
        _ => Vec::new(),
    }
}

fn points(g: &Geometry, pr: &Projector, rect: &ClipRect) -> Vec<[i32; 2]> {
    let one = |p: &geo::Point| -> Option<[i32; 2]> {
        let q = pr.project(p.x(), p.y());
        rect.contains(q)
            .then(|| [q[0].round() as i32, q[1].round() as i32])
    };
    match g {
        Geometry::Point(p) => one(p).into_iter().collect(),
        Geometry::MultiPoint(m) => m.0.iter().filter_map(one).collect(),
        Geometry::GeometryCollection(c) => c.0.iter().flat_map(|g| points(g, pr, rect)).collect(),
        _ => Vec::new(),
    }
}

/// Renders one tile. Returns the encoded tile, or an empty vector when no
/// layer has a feature there.
pub fn render(cat: &Catalog, cfg: &TileConfig, layers: &[String], t: TileId) -> Vec<u8> {
    render_scoped(cat, cfg, layers, t, None)
}

/// Renders one tile for a scoped principal: the governance layers carry only
/// features inside the scope (grids, points, and clusters and their counts
/// computed from those); roads and water, the map's context, stay whole.
pub fn render_scoped(
    cat: &Catalog,
    cfg: &TileConfig,
    layers: &[String],
    t: TileId,
    scope: Option<&crate::index::scope::Scope>,
) -> Vec<u8> {
    let extent = f64::from(cfg.extent);
    let buf = f64::from(cfg.buffer);
    let rect = ClipRect {
        min: -buf,
        max: extent + buf,
    };
    let pr = t.projector(extent);
    let bounds = t.bounds(buf / extent);
    let mut tile = Tile::new(cfg.extent);
    for name in layers {
        let Some(li) = cat.layer(name) else { continue };
        let d = &li.def;
        if t.z < d.minzoom || t.z > d.maxzoom {
            continue;
        }
        let mut cands: Vec<u32> = li.in_rect(bounds).collect();
        if let Some(sc) = scope
            && name != builtin::ROADS
            && name != builtin::WATER
        {
            cands.retain(|&i| sc.holds(li, i));
        }
        cands.sort_unstable();
        if cands.is_empty() {
            continue;
        }
        let mut out = LayerOut {
            layer: tile.create_layer(name),
        };
        if name == builtin::GRIDS {
            render_grids(cat, cfg, li, &cands, t, &pr, &rect, &mut out);
            // One label point per grid, in the one tile that holds it, so a
            // grid's name is drawn once however many tiles it spans.
            let mut labels = LayerOut {
                layer: tile.create_layer(GRID_LABELS),
            };
            render_grid_labels(cat, cfg, li, &cands, t, &pr, &mut labels);
            if out.layer.num_features() > 0 {
                let _ = tile.add_layer(std::mem::take(&mut out.layer));
            }
            if labels.layer.num_features() > 0 {
                let _ = tile.add_layer(labels.layer);
            }
            continue;
        } else if let Some(&(_, until)) = cfg.cluster_below.iter().find(|(l, _)| l == name)
            && t.z < until
        {
            render_clusters(cfg, li, &cands, t, &pr, cat.now_ms, &mut out);
        } else {
            render_plain(cfg, li, &cands, t, &pr, &rect, cat.now_ms, &mut out);
        }
        if out.layer.num_features() > 0 {
            // Layer names are unique here, so this cannot fail.
            let _ = tile.add_layer(out.layer);
        }
    }
    if tile.num_layers() == 0 {
        return Vec::new();
    }
    tile.to_bytes().unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn render_plain(
    cfg: &TileConfig,
    li: &LayerIndex,
    cands: &[u32],
    t: TileId,
    pr: &Projector,
    rect: &ClipRect,
    now: i64,
    out: &mut LayerOut,
) {
    let is_events = li.def.name == builtin::EVENTS;
    let props = tile_props(&li.def, t.z, cfg);
    // Property values hidden at this zoom.
    let hidden: Vec<(usize, &str)> = cfg
        .value_minzoom
        .iter()
        .filter(|(l, _, _, z)| *l == li.def.name && t.z < *z)
        .filter_map(|(_, p, v, _)| Some((li.def.prop_index(p)?, v.as_str())))
        .collect();
    for &i in cands {
        crate::work::checkpoint();
        let f = &li.features[i as usize];
        if hidden
            .iter()
            .any(|(k, v)| f.properties[*k].as_str() == Some(*v))
        {
            continue;
        }
        let geom = match &f.geometry {
            Geometry::Point(_) | Geometry::MultiPoint(_) => {
                encode_points(&points(&f.geometry, pr, rect))
            }
            Geometry::LineString(_) | Geometry::MultiLineString(_) | Geometry::Line(_) => {
                let parts: Vec<Vec<P>> = lines(&f.geometry, pr, rect)
                    .iter()
                    .map(|l| clip::simplify(l, cfg.tolerance))
                    .collect();
                encode_lines(&parts)
            }
            Geometry::GeometryCollection(_) => None,
            g => {
                let polys: Vec<Vec<Vec<P>>> = polygons(g, pr, rect)
                    .into_iter()
                    .map(|rings| {
                        rings
                            .iter()
                            .map(|r| simplify_ring(r, cfg.tolerance))
                            .collect()
                    })
                    .collect();
                encode_polygons(&polys)
            }
        };
        let Some(geom) = geom else { continue };
        // A work order past its deadline shows as `overdue` (derived at
        // the catalog's clock; the stored status stays what it is).
        let overdue = is_events && crate::index::event_overdue(&li.def, f, now);
        let tags: Vec<(&str, Tag)> = props
            .iter()
            .filter_map(|&k| {
                let name = li.def.properties[k].name.as_str();
                if overdue && name == "status" {
                    return Some((name, Tag::Str("overdue")));
                }
                Some((name, tag_of(&f.properties[k])?))
            })
            .collect();
        out.add(geom, f.id as u64, &tags);
    }
}

/// Simplifies a closed ring on its own (anchored at its first vertex).
fn simplify_ring(r: &[P], tolerance: f64) -> Vec<P> {
    if r.len() < 4 {
        return r.to_vec();
    }
    let mut open = r.to_vec();
    open.push(r[0]);
    let mut s = clip::simplify(&open, tolerance);
    s.pop();
    s
}

/// The layer of grid label points that comes with `grids`.
pub const GRID_LABELS: &str = "grid_labels";

/// The zoom from which a grid is drawn.
fn grid_minzoom(cfg: &TileConfig, node: &crate::index::grids::GridNode) -> u8 {
    if node.dedicated {
        cfg.dedicated_minzoom
    } else {
        cfg.grid_minzoom[node.level.index()]
    }
}

fn render_grid_labels(
    cat: &Catalog,
    cfg: &TileConfig,
    li: &LayerIndex,
    cands: &[u32],
    t: TileId,
    pr: &Projector,
    out: &mut LayerOut,
) {
    let extent = f64::from(cfg.extent);
    for &i in cands {
        crate::work::checkpoint();
        let f = &li.features[i as usize];
        let code = f
            .get(&li.def, "code")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let Some((_, node)) = cat.grids.get(code) else {
            continue;
        };
        let Some(p) = node.label else { continue };
        if t.z < grid_minzoom(cfg, node) {
            continue;
        }
        let q = pr.project(p.x(), p.y());
        if !(q[0] >= 0.0 && q[0] < extent && q[1] >= 0.0 && q[1] < extent) {
            continue;
        }
        let Some(geom) = encode_points(&[[q[0].round() as i32, q[1].round() as i32]]) else {
            continue;
        };
        let tags = [
            ("code", Tag::Str(code)),
            ("name", Tag::Str(&node.name)),
            ("level", Tag::Str(node.level.name())),
            (
                "kind",
                Tag::Str(if node.dedicated {
                    "dedicated"
                } else {
                    "comprehensive"
                }),
            ),
        ];
        out.add(geom, f.id as u64, &tags);
    }
}

#[allow(clippy::too_many_arguments)]
fn render_grids(
    cat: &Catalog,
    cfg: &TileConfig,
    li: &LayerIndex,
    cands: &[u32],
    t: TileId,
    pr: &Projector,
    rect: &ClipRect,
    out: &mut LayerOut,
) {
    // Group candidates by what is simplified together: each comprehensive
    // level is one coverage; dedicated grids are simplified alone.
    let mut groups: BTreeMap<(u8, bool), Vec<u32>> = BTreeMap::new();
    for &i in cands {
        crate::work::checkpoint();
        let f = &li.features[i as usize];
        let code = f
            .get(&li.def, "code")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let Some((_, node)) = cat.grids.get(code) else {
            continue;
        };
        let min = if node.dedicated {
            cfg.dedicated_minzoom
        } else {
            cfg.grid_minzoom[node.level.index()]
        };
        if t.z >= min {
            groups
                .entry((node.level as u8, node.dedicated))
                .or_default()
                .push(i);
        }
    }
    for ((_, dedicated), members) in groups {
        let shapes: Vec<Vec<Vec<Vec<P>>>> = members
            .iter()
            .map(|&i| polygons(&li.features[i as usize].geometry, pr, rect))
            .collect();
        // Flatten to polygons for the coverage pass, remembering owners.
        let flat: Vec<Vec<Vec<P>>> = shapes.iter().flatten().cloned().collect();
        let simplified: Vec<Vec<Vec<P>>> = if dedicated {
            flat.iter()
                .map(|rings| {
                    rings
                        .iter()
                        .map(|r| simplify_ring(r, cfg.tolerance))
                        .collect()
                })
                .collect()
        } else {
            let on_border =
                |p: P| p[0] == rect.min || p[0] == rect.max || p[1] == rect.min || p[1] == rect.max;
            coverage::simplify_coverage(&flat, cfg.tolerance, on_border)
        };
        let mut it = simplified.into_iter();
        for (k, &i) in members.iter().enumerate() {
            let polys: Vec<Vec<Vec<P>>> = it.by_ref().take(shapes[k].len()).collect();
            let Some(geom) = encode_polygons(&polys) else {
                continue;
            };
            let f = &li.features[i as usize];
            let code = f
                .get(&li.def, "code")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let Some((n, node)) = cat.grids.get(code) else {
                continue;
            };
            let parent = node.code.parent().map(|p| p.to_string());
            let mut tags: Vec<(&str, Tag)> = vec![
                ("code", Tag::Str(code)),
                ("name", Tag::Str(&node.name)),
                ("level", Tag::Str(node.level.name())),
                (
                    "kind",
                    Tag::Str(if node.dedicated {
                        "dedicated"
                    } else {
                        "comprehensive"
                    }),
                ),
                ("households", Tag::Int(cat.stats[n as usize].households)),
            ];
            if let Some(p) = parent.as_deref() {
                tags.push(("parent", Tag::Str(p)));
            }
            out.add(geom, f.id as u64, &tags);
        }
    }
}

/// Cluster points on a fixed grid of cells aligned to tiles: each cell with
/// points becomes one point at their mean position, with `count` and
/// counts per category (`c_<category>`; events: `open`, `overdue`; risks:
/// `l_1` … `l_4` by colour; cameras: `s_<status>`; addresses: `households`). Polygons count by
/// their interior point.
fn render_clusters(
    cfg: &TileConfig,
    li: &LayerIndex,
    cands: &[u32],
    t: TileId,
    pr: &Projector,
    now: i64,
    out: &mut LayerOut,
) {
    #[derive(Default)]
    struct Cell {
        n: u64,
        sx: f64,
        sy: f64,
        households: i64,
        open: u64,
        overdue: u64,
        /// Counts per breakdown key: `c_<category>`, `l_<level>`.
        cats: BTreeMap<String, u64>,
    }
    let extent = f64::from(cfg.extent);
    let cell_units = if t.z <= cfg.overview_maxzoom {
        cfg.overview_cluster_cell
    } else {
        cfg.cluster_cell
    }
    .max(1);
    let cell = f64::from(cell_units);
    let per_tile = (cfg.extent / cell_units).max(1);
    let is_events = li.def.name == builtin::EVENTS;
    let status_i = li.def.prop_index("status");
    let cat_i = li.def.prop_index("category");
    let level_i = li
        .def
        .prop_index("level")
        .filter(|_| li.def.name == builtin::RISKS);
    let cam_status_i = status_i.filter(|_| li.def.name == builtin::CAMERAS);
    let hh_i = li.def.prop_index("households");
    let mut cells: BTreeMap<(u32, u32), Cell> = BTreeMap::new();
    for &i in cands {
        crate::work::checkpoint();
        let f = &li.features[i as usize];
        let Some(p) = crate::index::representative_point(&f.geometry) else {
            continue;
        };
        let q = pr.project(p.x(), p.y());
        // Only points of this tile proper: a cell never straddles tiles.
        if !(q[0] >= 0.0 && q[0] < extent && q[1] >= 0.0 && q[1] < extent) {
            continue;
        }
        let key = ((q[0] / cell) as u32, (q[1] / cell) as u32);
        let c = cells.entry(key).or_default();
        c.n += 1;
        c.sx += q[0];
        c.sy += q[1];
        if let Some(h) = hh_i.and_then(|k| f.properties[k].as_i64()) {
            c.households += h;
        }
        if is_events {
            let status = status_i
                .and_then(|k| f.properties[k].as_str())
                .unwrap_or("");
            if status != "closed" {
                c.open += 1;
            }
            if crate::index::event_overdue(&li.def, f, now) {
                c.overdue += 1;
            }
        }
        if let Some(cat) = cat_i.and_then(|k| f.properties[k].as_str()) {
            *c.cats.entry(format!("c_{cat}")).or_default() += 1;
        }
        if let Some(level) = level_i.and_then(|k| f.properties[k].as_i64()) {
            *c.cats.entry(format!("l_{level}")).or_default() += 1;
        }
        if let Some(st) = cam_status_i.and_then(|k| f.properties[k].as_str()) {
            *c.cats.entry(format!("s_{st}")).or_default() += 1;
        }
    }
    for ((cx, cy), c) in cells {
        let pt = [
            (c.sx / c.n as f64).round() as i32,
            (c.sy / c.n as f64).round() as i32,
        ];
        let Some(geom) = encode_points(&[pt]) else {
            continue;
        };
        let gx = u64::from(t.x) * u64::from(per_tile) + u64::from(cx);
        let gy = u64::from(t.y) * u64::from(per_tile) + u64::from(cy);
        let id = (gy << 32) | gx;
        let mut tags: Vec<(&str, Tag)> = vec![
            ("cluster", Tag::Bool(true)),
            ("count", Tag::Int(c.n as i64)),
        ];
        if hh_i.is_some() {
            tags.push(("households", Tag::Int(c.households)));
        }
        if is_events {
            tags.push(("open", Tag::Int(c.open as i64)));
            tags.push(("overdue", Tag::Int(c.overdue as i64)));
        }
        for (k, v) in &c.cats {
            tags.push((k.as_str(), Tag::Int(*v as i64)));
        }
        out.add(geom, id, &tags);
    }
}
