//! Spatial queries: what lies inside an area, and what is nearest a point.
//!
//! An [`Area`] is a polygon, a grid, a bbox or a circle (geodesic metres).
//! Matching rules, the same for every layer:
//! - a point matches when it is inside the area or on its boundary;
//! - a line or polygon matches when it intersects the area;
//! - for a circle, a feature matches when its distance to the centre is at
//!   most the radius (haversine metres for points; for lines and polygons
//!   the distance to the nearest point of the shape, in a local metric
//!   projection around the centre, 0 when the centre is inside).
//!
//! The R-tree narrows candidates by envelope; the exact predicate decides.

pub mod cql2_text;
pub mod filter;
pub mod valid;

use crate::index::{Catalog, LayerIndex, NO_GRID};
use crate::model::{GridLevel, builtin};
use geo::{
    BoundingRect, Closest, ClosestPoint, Contains, Coord, Distance, Geometry, Haversine,
    Intersects, MapCoords, MultiPolygon, Point, Polygon, Rect,
};

/// Mean Earth radius used for local metric projections (haversine's).
const R_EARTH: f64 = 6_371_008.8;
/// Largest radius accepted, metres.
pub const MAX_RADIUS_M: f64 = 100_000.0;
/// Most vertices an area polygon may have.
pub const MAX_AREA_VERTICES: usize = 25_000;

/// A query area.
#[derive(Clone, Debug)]
pub enum Area {
    Polygon(MultiPolygon),
    Circle { center: Point, radius_m: f64 },
}

impl Area {
    /// Parses the `area` member of a query: a GeoJSON Polygon or
    /// MultiPolygon, `{"grid": code}`, `{"bbox": [w, s, e, n]}` or
    /// `{"point": [lon, lat], "radius_m": r}`. Validates everything.
    pub fn parse(v: &serde_json::Value, cat: &Catalog) -> Result<Area, String> {
        let obj = v.as_object().ok_or("area must be a JSON object")?;
        if let Some(code) = obj.get("grid") {
            let code = code
                .as_str()
                .ok_or("area.grid must be a grid code string")?;
            let (_, node) = cat
                .grids
                .get(code)
                .ok_or_else(|| format!("area.grid: no grid with code {code:?}"))?;
            return Ok(Area::Polygon(
                to_multi(&node.geometry).ok_or("that grid has no polygon")?,
            ));
        }
        if let Some(b) = obj.get("bbox") {
            let a: Vec<f64> = b
                .as_array()
                .filter(|a| a.len() == 4)
                .and_then(|a| a.iter().map(|x| x.as_f64()).collect())
                .ok_or("area.bbox must be [west, south, east, north]")?;
            let (w, s, e, n) = (a[0], a[1], a[2], a[3]);
            check_lonlat(w, s)?;
            check_lonlat(e, n)?;
            if w >= e || s >= n {
                return Err("area.bbox must have west < east and south < north".into());
            }
            return Ok(Area::Polygon(MultiPolygon(vec![
                Rect::new((w, s), (e, n)).to_polygon(),
            ])));
        }
        if let Some(p) = obj.get("point") {
            let c: Vec<f64> = p
                .as_array()
                .filter(|a| a.len() == 2)
                .and_then(|a| a.iter().map(|x| x.as_f64()).collect())
                .ok_or("area.point must be [lon, lat]")?;
            check_lonlat(c[0], c[1])?;
            let r = obj
                .get("radius_m")
                .and_then(|r| r.as_f64())
                .ok_or("area.radius_m (metres) is required with area.point")?;
            if !(r > 0.0 && r <= MAX_RADIUS_M) {
                return Err(format!(
                    "area.radius_m must be above 0 and at most {MAX_RADIUS_M} metres"
                ));
            }
            return Ok(Area::Circle {
                center: Point::new(c[0], c[1]),
                radius_m: r,
            });
        }
        match obj.get("type").and_then(|t| t.as_str()) {
            Some("Polygon") | Some("MultiPolygon") => {
                let g = geojson::Geometry::from_json_value(v.clone())
                    .map_err(|e| format!("area is not valid GeoJSON: {e}"))?;
                let g = Geometry::try_from(g.value).map_err(|e| format!("area: {e}"))?;
                let m = to_multi(&g).ok_or("area must be a Polygon or MultiPolygon")?;
                let n: usize = geo::CoordsIter::coords_count(&m);
                if n > MAX_AREA_VERTICES {
                    return Err(format!("area has {n} vertices; at most {MAX_AREA_VERTICES}"));
                }
                for c in geo::CoordsIter::coords_iter(&m) {
                    check_lonlat(c.x, c.y)?;
                }
                valid::check_area(&m)?;
                Ok(Area::Polygon(m))
            }
            Some(t) => Err(format!("area of type {t:?} is not supported: use a Polygon or MultiPolygon")),
            None => Err("area must be a GeoJSON Polygon/MultiPolygon, {\"grid\": code}, {\"bbox\": [...]} or {\"point\": [...], \"radius_m\": r}".into()),
        }
    }

    /// A rectangle holding the area (for the R-tree).
    pub fn envelope(&self) -> Option<Rect> {
        match self {
            Area::Polygon(m) => m.bounding_rect(),
            Area::Circle { center, radius_m } => {
                let dlat = (radius_m / R_EARTH).to_degrees();
                let coslat = center.y().to_radians().cos().max(1e-6);
                let dlon = (dlat / coslat).min(180.0);
                Some(Rect::new(
                    (center.x() - dlon, (center.y() - dlat).max(-90.0)),
                    (center.x() + dlon, (center.y() + dlat).min(90.0)),
                ))
            }
        }
    }

    /// Does a feature's geometry match (see the module docs)?
    pub fn matches(&self, g: &Geometry) -> bool {
        match self {
            Area::Polygon(m) => match g {
                Geometry::Point(p) => m.intersects(p),
                other => m.intersects(other),
            },
            Area::Circle { center, radius_m } => match g {
                Geometry::Point(p) => Haversine.distance(*center, *p) <= *radius_m,
                other => local_distance_m(*center, other) <= *radius_m,
            },
        }
    }

    /// The area as a polygon (circles approximated by 128 segments), for
    /// intersection areas.
    pub fn polygon(&self) -> MultiPolygon {
        match self {
            Area::Polygon(m) => m.clone(),
            Area::Circle { center, radius_m } => {
                let ring: Vec<Coord> = (0..=128)
                    .map(|i| {
                        let a = i as f64 / 128.0 * std::f64::consts::TAU;
                        let (dx, dy) = (radius_m * a.cos(), radius_m * a.sin());
                        from_local(*center, dx, dy)
                    })
                    .collect();
                MultiPolygon(vec![Polygon::new(geo::LineString(ring), vec![])])
            }
        }
    }
}

fn check_lonlat(lon: f64, lat: f64) -> Result<(), String> {
    if lon.is_finite()
        && lat.is_finite()
        && (-180.0..=180.0).contains(&lon)
        && (-90.0..=90.0).contains(&lat)
    {
        Ok(())
    } else {
        Err(format!(
            "coordinate ({lon}, {lat}) is out of range (WGS84 lon/lat expected)"
        ))
    }
}

fn to_multi(g: &Geometry) -> Option<MultiPolygon> {
    match g {
        Geometry::Polygon(p) => Some(MultiPolygon(vec![p.clone()])),
        Geometry::MultiPolygon(m) => Some(m.clone()),
        Geometry::Rect(r) => Some(MultiPolygon(vec![r.to_polygon()])),
        _ => None,
    }
}

/// Projects to metres around `c` (equirectangular, exact enough within the
/// 100 km radius limit).
fn to_local(c: Point, p: Coord) -> Coord {
    let k = c.y().to_radians().cos();
    Coord {
        x: (p.x - c.x()).to_radians() * R_EARTH * k,
        y: (p.y - c.y()).to_radians() * R_EARTH,
    }
}

fn from_local(c: Point, dx: f64, dy: f64) -> Coord {
    let k = c.y().to_radians().cos().max(1e-9);
    Coord {
        x: c.x() + (dx / (R_EARTH * k)).to_degrees(),
        y: c.y() + (dy / R_EARTH).to_degrees(),
    }
}

/// Distance from `c` to a shape, metres, in the local projection.
pub fn local_distance_m(c: Point, g: &Geometry) -> f64 {
    let local: Geometry = g.map_coords(|p| to_local(c, p));
    let origin = Point::new(0.0, 0.0);
    if matches!(&local, Geometry::Polygon(_) | Geometry::MultiPolygon(_)) && local.contains(&origin)
    {
        return 0.0;
    }
    match local.closest_point(&origin) {
        Closest::Intersection(_) => 0.0,
        Closest::SinglePoint(p) => p.x().hypot(p.y()),
        Closest::Indeterminate => f64::INFINITY,
    }
}

/// A coarse raster over a polygon area that answers most point-in-polygon
/// tests without touching the polygon: cells crossed by no edge are wholly
/// inside or wholly outside (decided once per row by scanline); only points
/// in cells an edge may pass through get the exact test. A street polygon
/// has thousands of vertices and a street query tests tens of thousands of
/// points, so this turns O(points × vertices) into about O(points).
#[derive(Debug)]
struct Raster {
    rect: Rect,
    n: usize,
    /// 0 outside, 1 inside, 2 maybe touched by an edge.
    cells: Vec<u8>,
}

impl Raster {
    /// The cell column/row of a coordinate. Build and lookup use this one
    /// function: it is monotonic, so a segment's bounding cells cover every
    /// cell any point of the segment falls in.
    fn cell(&self, x: f64, y: f64) -> (usize, usize) {
        let n = self.n;
        let cx = (((x - self.rect.min().x) / self.rect.width() * n as f64) as usize).min(n - 1);
        let cy = (((y - self.rect.min().y) / self.rect.height() * n as f64) as usize).min(n - 1);
        (cx, cy)
    }

    fn build(m: &MultiPolygon) -> Option<Raster> {
        let rect = m.bounding_rect()?;
        if rect.width() <= 0.0 || rect.height() <= 0.0 {
            return None;
        }
        let n = 256usize;
        let mut r = Raster {
            rect,
            n,
            cells: vec![0u8; n * n],
        };
        let rings: Vec<&geo::LineString> =
            m.0.iter()
                .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
                .collect();
        for ring in &rings {
            for seg in ring.0.windows(2) {
                let (a, b) = (seg[0], seg[1]);
                let (x0, y0) = r.cell(a.x.min(b.x), a.y.min(b.y));
                let (x1, y1) = r.cell(a.x.max(b.x), a.y.max(b.y));
                for cy in y0..=y1 {
                    for cx in x0..=x1 {
                        r.cells[cy * n + cx] = 2;
                    }
                }
            }
        }
        let mut xs: Vec<f64> = Vec::new();
        for cy in 0..n {
            crate::work::checkpoint();
            let y = rect.min().y + (cy as f64 + 0.5) * rect.height() / n as f64;
            xs.clear();
            for ring in &rings {
                for seg in ring.0.windows(2) {
                    let (a, b) = (seg[0], seg[1]);
                    if (a.y > y) != (b.y > y) {
                        xs.push(a.x + (y - a.y) * (b.x - a.x) / (b.y - a.y));
                    }
                }
            }
            xs.sort_by(f64::total_cmp);
            for cx in 0..n {
                let c = &mut r.cells[cy * n + cx];
                if *c == 0 {
                    let x = rect.min().x + (cx as f64 + 0.5) * rect.width() / n as f64;
                    *c = u8::from(xs.partition_point(|v| *v < x) % 2 == 1);
                }
            }
        }
        Some(r)
    }

    /// Some(true) when every cell a rectangle covers is wholly inside,
    /// Some(false) when every one is outside (or the rectangle misses the
    /// raster), None when an edge may cross it (or it covers many cells).
    fn decide_rect(&self, q: &Rect) -> Option<bool> {
        let r = &self.rect;
        if q.max().x < r.min().x
            || q.min().x > r.max().x
            || q.max().y < r.min().y
            || q.min().y > r.max().y
        {
            return Some(false);
        }
        if q.min().x < r.min().x
            || q.max().x > r.max().x
            || q.min().y < r.min().y
            || q.max().y > r.max().y
        {
            return None;
        }
        let (x0, y0) = self.cell(q.min().x, q.min().y);
        let (x1, y1) = self.cell(q.max().x, q.max().y);
        if (x1 - x0 + 1) * (y1 - y0 + 1) > 4096 {
            return None;
        }
        let first = self.cells[y0 * self.n + x0];
        if first == 2 {
            return None;
        }
        for cy in y0..=y1 {
            for cx in x0..=x1 {
                if self.cells[cy * self.n + cx] != first {
                    return None;
                }
            }
        }
        Some(first == 1)
    }

    /// Some(answer) when the cell decides, None when the exact test must.
    fn decide(&self, x: f64, y: f64) -> Option<bool> {
        let r = &self.rect;
        if x < r.min().x || x > r.max().x || y < r.min().y || y > r.max().y {
            return Some(false);
        }
        let (cx, cy) = self.cell(x, y);
        match self.cells[cy * self.n + cx] {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

/// An area prepared for selecting from layers: the raster is built once per
/// query, however many layers it looks at.
pub struct Selector<'a> {
    area: &'a Area,
    raster: Option<Raster>,
}

impl<'a> Selector<'a> {
    pub fn new(area: &'a Area) -> Selector<'a> {
        let raster = match area {
            Area::Polygon(m) if geo::CoordsIter::coords_count(m) > 32 => Raster::build(m),
            _ => None,
        };
        Selector { area, raster }
    }

    /// Whether a rectangle lies wholly inside the area (Some(true)), wholly
    /// outside (Some(false)), or cannot be told without the exact test.
    pub fn rect_inside(&self, r: &Rect) -> Option<bool> {
        self.raster.as_ref()?.decide_rect(r)
    }

    /// The indexes of a layer's features that match the area, ascending.
    pub fn select(&self, layer: &LayerIndex) -> Vec<u32> {
        let Some(env) = self.area.envelope() else {
            return Vec::new();
        };
        let mut out: Vec<u32> = layer
            .entries_in_rect(env)
            .filter(|e| {
                crate::work::checkpoint();
                // A point's R-tree entry is the point: the raster decides most
                // of them without a trip to the feature (a cache miss each).
                if let Some(r) = &self.raster {
                    let env = rstar::RTreeObject::envelope(e.geom());
                    let (lo, hi) = (env.lower(), env.upper());
                    if lo == hi
                        && let Some(answer) = r.decide(lo[0], lo[1])
                    {
                        return answer;
                    }
                }
                self.area.matches(&layer.features[e.data as usize].geometry)
            })
            .map(|e| e.data)
            .collect();
        out.sort_unstable();
        out
    }
}

/// How to group matches: by a property's value or by the grid of a level.
#[derive(Clone, Debug, PartialEq)]
pub enum GroupBy {
    Property(String),
    Level(GridLevel),
}

impl GroupBy {
    pub fn parse(s: &str) -> GroupBy {
        match GridLevel::parse(s) {
            Some(l) => GroupBy::Level(l),
            None => GroupBy::Property(s.to_string()),
        }
    }

    /// The group key of feature `i` of `layer` (None: the layer has no such
    /// property, or the feature lies in no grid of that level).
    pub fn key(&self, cat: &Catalog, layer: &LayerIndex, i: u32) -> Option<String> {
        match self {
            GroupBy::Property(p) => {
                let k = layer.def.prop_index(p)?;
                Some(match &layer.features[i as usize].properties[k] {
                    crate::model::Value::Null => "null".to_string(),
                    crate::model::Value::Text(s) => s.to_string(),
                    v => v.to_json().to_string(),
                })
            }
            GroupBy::Level(level) => {
                let n = *layer.grid_of.get(i as usize)?;
                if n == NO_GRID {
                    return None;
                }
                let code = &cat.grids.nodes[n as usize].code;
                code.ancestor(*level).map(|c| c.to_string())
            }
        }
    }
}

/// The layers a query looks at when it names none: every layer but the
/// grids themselves and the map context.
pub fn default_layers(cat: &Catalog) -> Vec<String> {
    cat.layers
        .iter()
        .map(|l| l.def.name.clone())
        .filter(|n| n != builtin::GRIDS && n != builtin::ROADS && n != builtin::WATER)
        .collect()
}

/// The `k` features of `layer` nearest `p`, with haversine distances in
/// metres (to the nearest point of lines and polygons), nearest first.
pub fn nearest(
    layer: &LayerIndex,
    p: Point,
    k: usize,
    keep: impl Fn(u32) -> bool,
) -> Vec<(u32, f64)> {
    let mut best: Vec<(u32, f64)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    // Candidates come by envelope distance in degrees; a degree of
    // latitude is at least 110.5 km and one of longitude at least
    // 111.3 km × cos(latitude), so once the lower bound in metres passes
    // the k-th best distance nothing nearer can follow.
    for e in layer
        .tree
        .nearest_neighbor_iter_with_distance_2(&[p.x(), p.y()])
    {
        let (entry, d2) = e;
        let d_deg = d2.sqrt();
        if best.len() == k {
            let worst = best[k - 1].1;
            let lat = (p.y().abs() + d_deg).min(89.9);
            let lower = d_deg * 110_500.0 * lat.to_radians().cos();
            if lower > worst {
                break;
            }
        }
        let i = entry.data;
        if !keep(i) {
            continue;
        }
        let g = &layer.features[i as usize].geometry;
        let d = match g {
            Geometry::Point(q) => Haversine.distance(p, *q),
            other => local_distance_m(p, other),
        };
        let pos = best.partition_point(|(j, b)| (*b, *j) < (d, i));
        if pos < k {
            best.insert(pos, (i, d));
            best.truncate(k);
        }
    }
    best
}

/// A query as clients send it (the body of `POST /api/query`, or the `q=`
/// of an export).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub area: serde_json::Value,
    pub layers: Option<Vec<String>>,
    /// A property or grid level for every layer, or `{layer: property}`.
    pub group_by: Option<GroupByRequest>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub filter: Option<serde_json::Value>,
}

impl Request {
    /// Refuses a malformed filter of up to [`QUICK_FILTER`] bytes before
    /// the query waits for the heavy lane (parsing that much is
    /// microseconds), so a bad filter is a 400 even while the lane is full.
    /// Answers whether longer filter texts remain unchecked: the handler
    /// parses those with [`check_filter_texts`] on the tile lane (short,
    /// linear jobs), again never behind the heavy lane's queries.
    pub fn precheck(&self) -> Result<bool, String> {
        check_filter_texts(self.filter.as_ref(), QUICK_FILTER)
    }
}

/// Filter texts up to this long are parsed on the async worker before the
/// query is queued.
pub const QUICK_FILTER: usize = 16 * 1024;

/// Parses every cql2-text filter in a query's `filter` member (one text,
/// or one per layer) of at most `max_len` bytes, and answers whether a
/// longer one was skipped. Linear in the text ([`filter::parse`]).
pub fn check_filter_texts(
    filter: Option<&serde_json::Value>,
    max_len: usize,
) -> Result<bool, String> {
    use serde_json::Value as J;
    let mut texts: Vec<&str> = Vec::new();
    match filter {
        Some(J::String(s)) => texts.push(s),
        Some(J::Object(m)) if !m.contains_key("op") => {
            texts.extend(m.values().filter_map(|v| v.as_str()));
        }
        _ => {}
    }
    let mut skipped = false;
    for t in texts {
        if t.len() > max_len {
            skipped = true;
            continue;
        }
        filter::parse(t, filter::Lang::Text)?;
    }
    Ok(skipped)
}

/// `group_by` as sent: one name for every layer (a grid level, or a
/// property every layer has), or one per layer (`{"risks": "category",
/// "cameras": "status"}`; layers not named are not grouped).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum GroupByRequest {
    All(String),
    PerLayer(std::collections::BTreeMap<String, String>),
}

/// Features per layer in one page of answers, at most.
pub const MAX_LIMIT: usize = 10_000;

/// A validated query.
#[derive(Clone, Debug)]
pub struct Plan {
    pub area: Area,
    pub layers: Vec<String>,
    /// How each layer's matches are grouped (same order as `layers`).
    pub groups: Vec<Option<GroupBy>>,
    pub limit: usize,
    pub offset: usize,
    /// The compiled filter of each layer (same order as `layers`).
    pub filters: Vec<Option<filter::Filter>>,
    /// A scoped principal's grids: features outside are never matched.
    pub scope: Option<std::sync::Arc<crate::index::scope::Scope>>,
}

impl Plan {
    /// The indexes of the matches in layer `k` of the plan, ascending.
    pub fn select(&self, selector: &Selector<'_>, k: usize, layer: &LayerIndex) -> Vec<u32> {
        let mut hits = selector.select(layer);
        if let Some(s) = &self.scope {
            hits.retain(|&i| s.holds(layer, i));
        }
        if let Some(Some(f)) = self.filters.get(k) {
            hits.retain(|&i| {
                crate::work::checkpoint();
                let feat = &layer.features[i as usize];
                f.matches(feat.id, &feat.geometry, &feat.properties)
            });
        }
        hits
    }
}

/// Reads the `filter` member of a query: a cql2-text string or a cql2-json
/// object for every layer, or an object mapping layer names to either.
/// Compiles it against each layer's schema.
pub fn compile_filters(
    v: Option<&serde_json::Value>,
    layers: &[String],
    cat: &Catalog,
) -> Result<Vec<Option<filter::Filter>>, String> {
    use serde_json::Value as J;
    let Some(v) = v else {
        return Ok(vec![None; layers.len()]);
    };
    let parse_one = |v: &J| -> Result<cql2::Expr, String> {
        match v {
            J::String(s) => filter::parse(s, filter::Lang::Text),
            J::Object(_) | J::Bool(_) => filter::parse_value(v),
            _ => Err("filter must be cql2-text (a string) or cql2-json (an object)".into()),
        }
    };
    let per_layer = match v {
        J::Object(m) if !m.contains_key("op") && !m.is_empty() => {
            for k in m.keys() {
                if !layers.contains(k) {
                    return Err(format!(
                        "filter names layer {k:?}, which the query does not ask for"
                    ));
                }
            }
            Some(m)
        }
        _ => None,
    };
    let shared = match per_layer {
        Some(_) => None,
        None => Some(parse_one(v)?),
    };
    let mut out = Vec::with_capacity(layers.len());
    for name in layers {
        let l = cat
            .layer(name)
            .ok_or_else(|| format!("unknown layer {name:?}"))?;
        let expr = match (&shared, per_layer) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(m)) => m.get(name).map(parse_one).transpose()?,
            (None, None) => None,
        };
        out.push(match expr {
            Some(e) => Some(
                filter::compile(&e, &l.def)
                    .map_err(|err| format!("filter on layer {name}: {err}"))?,
            ),
            None => None,
        });
    }
    Ok(out)
}

impl Request {
    /// Checks everything against the catalog; the error names the fault.
    pub fn plan(self, cat: &Catalog) -> Result<Plan, String> {
        let area = Area::parse(&self.area, cat)?;
        let limit = self.limit.unwrap_or(100);
        if limit > MAX_LIMIT {
            return Err(format!("limit {limit} is above the maximum {MAX_LIMIT}"));
        }
        let offset = match self.cursor.as_deref() {
            None => 0,
            Some(s) => s
                .parse()
                .map_err(|_| format!("cursor {s:?} is not one this server issued"))?,
        };
        let layers = self.layers.unwrap_or_else(|| default_layers(cat));
        if layers.is_empty() {
            return Err("layers is empty".into());
        }
        if let Some(GroupByRequest::PerLayer(m)) = &self.group_by
            && let Some(other) = m.keys().find(|k| !layers.contains(k))
        {
            return Err(format!(
                "group_by names layer {other:?}, which the query does not ask for"
            ));
        }
        let mut groups = Vec::with_capacity(layers.len());
        for name in &layers {
            let l = cat
                .layer(name)
                .ok_or_else(|| format!("unknown layer {name:?}"))?;
            let group = match &self.group_by {
                None => None,
                Some(GroupByRequest::All(g)) => Some(GroupBy::parse(g)),
                Some(GroupByRequest::PerLayer(m)) => m.get(name).map(|g| GroupBy::parse(g)),
            };
            if let Some(GroupBy::Property(p)) = &group
                && l.def.prop_index(p).is_none()
            {
                return Err(format!(
                    "group_by {p:?} is neither a grid level nor a property of layer {name}"
                ));
            }
            groups.push(group);
        }
        let filters = compile_filters(self.filter.as_ref(), &layers, cat)?;
        Ok(Plan {
            area,
            layers,
            groups,
            limit,
            offset,
            filters,
            scope: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_distance_is_close_to_haversine() {
        let c = Point::new(112.95, 28.2);
        let q = Point::new(112.96, 28.21);
        let h = Haversine.distance(c, q);
        let l = local_distance_m(c, &Geometry::Point(q));
        assert!((h - l).abs() / h < 1e-3, "{h} vs {l}");
    }

    #[test]
    fn circle_envelope_holds_the_circle() {
        let a = Area::Circle {
            center: Point::new(112.95, 28.2),
            radius_m: 1000.0,
        };
        let env = a.envelope().unwrap();
        for c in a.polygon().0[0].exterior().0.iter() {
            assert!(
                env.min().x <= c.x
                    && c.x <= env.max().x
                    && env.min().y <= c.y
                    && c.y <= env.max().y
            );
        }
    }
}
