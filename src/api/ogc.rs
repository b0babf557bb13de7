//! OGC API – Features under `/ogc`: Part 1 (core, GeoJSON, OpenAPI 3.0) and
//! Part 3 (queryables, filter, features-filter) with CQL2 text and JSON.
//!
//! Every layer of the catalog is a collection. Items come from the same
//! in-memory snapshot as `/api/query`, in ascending id order, paged by an
//! `offset` that the `next` link carries. Query parameters are checked
//! strictly: an unknown parameter, a repeated one, or a value out of range
//! is a 400 problem naming it (OGC 17-069r4 /req/core/query-param-unknown).
//! Links are absolute, built from the request's Host (or X-Forwarded-*).

use super::App;
use super::error::ApiError;
use super::tiles::origin;
use crate::index::scope::Scope;
use crate::index::{Catalog, LayerIndex};
use crate::model::{GeomKind, LayerDef, PropType, Value};
use crate::query::MAX_LIMIT;
use crate::query::filter::{self, Filter, Lang, parse_instant};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use geo::{Coord, Intersects, Rect};
use serde_json::{Value as J, json};
use std::sync::Arc;

type S = State<Arc<App>>;
type Params = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";
/// WGS 84 with the EPSG axis order (latitude first).
const EPSG_4326: &str = "http://www.opengis.net/def/crs/EPSG/0/4326";
/// CGCS2000 (国家2000大地坐标系), which Chinese official mapping asks for.
/// It differs from WGS 84 by under a metre (DESIGN §4): coordinates are the
/// stored ones, in the EPSG axis order (latitude first).
const EPSG_4490: &str = "http://www.opengis.net/def/crs/EPSG/0/4490";
/// The CRSs every layer collection answers in (OGC API – Features Part 2).
const LAYER_CRS: [&str; 3] = [CRS84, EPSG_4326, EPSG_4490];

/// The CRS an answer is in: CRS84 keeps lon/lat; the EPSG geographic CRSs
/// are lat/lon, so coordinates are swapped on the way out and a `bbox` in
/// them (`bbox-crs`) on the way in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutCrs(&'static str);

/// The `Content-Crs` header (Part 2).
pub(crate) const CONTENT_CRS: HeaderName = HeaderName::from_static("content-crs");

impl OutCrs {
    pub(crate) const CRS84: OutCrs = OutCrs(CRS84);

    fn parse(s: Option<&&str>, what: &str) -> Result<OutCrs, String> {
        match s {
            None => Ok(OutCrs::CRS84),
            Some(s) => {
                let epsg = format!("/EPSG/0/{}", s.trim_start_matches("EPSG:"));
                LAYER_CRS
                    .into_iter()
                    .find(|c| *c == *s || (c.contains("/EPSG/") && c.ends_with(&epsg)))
                    .map(OutCrs)
                    .ok_or_else(|| {
                        format!(
                            "{what} {s:?} is not supported; use one of {}",
                            LAYER_CRS.join(", ")
                        )
                    })
            }
        }
    }
    fn lat_first(self) -> bool {
        self.0 != CRS84
    }
    /// `Content-Crs: <uri>`.
    pub(crate) fn header(self) -> HeaderValue {
        HeaderValue::from_str(&format!("<{}>", self.0)).unwrap_or_else(|_| {
            HeaderValue::from_static("<http://www.opengis.net/def/crs/OGC/1.3/CRS84>")
        })
    }
}

/// Swaps the first two numbers of every position in a GeoJSON geometry's
/// `coordinates` (and of a `bbox`), in place: lon/lat to lat/lon.
fn swap_axes(g: &mut J) {
    fn walk(v: &mut J) {
        if let J::Array(a) = v {
            if a.first().is_some_and(J::is_number) {
                if a.len() >= 2 {
                    a.swap(0, 1);
                }
            } else {
                a.iter_mut().for_each(walk);
            }
        }
    }
    if let Some(c) = g.get_mut("coordinates") {
        walk(c);
    }
    if let Some(J::Array(gs)) = g.get_mut("geometries") {
        gs.iter_mut().for_each(swap_axes);
    }
}

/// The `Link` header for a document's `links`: the navigation relations a
/// client pages with (OGC API – Features Part 1, recommendation 9), as
/// RFC 8288 links.
pub(crate) fn link_header(v: &J) -> Option<HeaderValue> {
    const RELS: [&str; 5] = ["self", "next", "prev", "alternate", "collection"];
    let parts: Vec<String> = v
        .get("links")?
        .as_array()?
        .iter()
        .filter_map(|l| {
            let rel = l.get("rel")?.as_str()?;
            if !RELS.contains(&rel) {
                return None;
            }
            let href = l.get("href")?.as_str()?;
            let mut s = format!("<{href}>; rel=\"{rel}\"");
            if let Some(t) = l.get("type").and_then(J::as_str) {
                s.push_str(&format!("; type=\"{t}\""));
            }
            Some(s)
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    HeaderValue::from_str(&parts.join(", ")).ok()
}
const GEOJSON: &str = "application/geo+json";
const OPENAPI: &str = "application/vnd.oai.openapi+json;version=3.0";
const SCHEMA: &str = "application/schema+json";
/// Items per page when the request names no limit.
const DEFAULT_LIMIT: usize = 100;

/// The conformance classes this server passes (and only those).
pub const CONFORMANCE: &[&str] = &[
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/property-property",
    "http://www.opengis.net/spec/cql2/1.0/conf/arithmetic",
    // On the draft grids of plans (plan-{id}-grids) only.
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
];

/// A JSON answer of `content_type`, with the body's navigation links also
/// in a `Link` header ([`link_header`]).
pub(crate) fn json_response(v: J, content_type: &'static str) -> Response {
    let link = link_header(&v);
    let mut r = Json(v).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(l) = link {
        r.headers_mut().insert(header::LINK, l);
    }
    r
}

/// Checks the query parameters: only `allowed`, each at most once. `f`
/// (json) is accepted everywhere, as clients send it.
fn params<'a>(
    p: &'a Params,
    allowed: &[&str],
) -> Result<std::collections::BTreeMap<&'a str, &'a str>, ApiError> {
    let Ok(Query(list)) = p else {
        return Err(ApiError::bad_request("the query string is not valid"));
    };
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in list {
        if k == "f" {
            if !matches!(
                v.as_str(),
                "json" | "geojson" | "application/json" | GEOJSON
            ) {
                return Err(ApiError::bad_request(format!(
                    "f={v:?}: this server answers JSON only (f=json)"
                )));
            }
            continue;
        }
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {k:?}; this resource takes {}",
                if allowed.is_empty() {
                    "none (besides f)".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        if out.insert(k.as_str(), v.as_str()).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter {k:?} is given more than once"
            )));
        }
    }
    Ok(out)
}

/// `GET /ogc`: the landing page.
pub async fn landing(headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    params(&p, &[])?;
    let base = format!("{}/ogc", origin(&headers));
    Ok(json_response(
        json!({
            "title": "onemap 一张图",
            "description": "Governance layers of the district (grids, addresses, cameras, risks, buildings, work orders) as OGC API – Features.",
            "links": [
                {"href": base, "rel": "self", "type": "application/json", "title": "this document"},
                {"href": format!("{base}/api"), "rel": "service-desc", "type": OPENAPI, "title": "the API definition"},
                {"href": format!("{base}/conformance"), "rel": "conformance", "type": "application/json", "title": "conformance classes"},
                {"href": format!("{base}/collections"), "rel": "data", "type": "application/json", "title": "collections"},
            ]
        }),
        "application/json",
    ))
}

/// `GET /ogc/conformance`.
pub async fn conformance(p: Params) -> Result<Response, ApiError> {
    params(&p, &[])?;
    Ok(json_response(
        json!({ "conformsTo": CONFORMANCE }),
        "application/json",
    ))
}

/// The temporal property of a layer: the first date/time property, which
/// `datetime` filters on (events: `created_at`).
fn temporal_prop(def: &LayerDef) -> Option<usize> {
    def.properties
        .iter()
        .position(|p| matches!(p.ty, PropType::DateTime | PropType::Date))
}

/// A collection's description. For a scoped principal (`scope`) its
/// feature count, spatial and temporal extents are those of the features
/// inside the scope, as its items are.
fn collection_json(base: &str, l: &LayerIndex, scope: Option<&Scope>) -> J {
    let id = &l.def.name;
    let mut extent = serde_json::Map::new();
    let (count, bbox) = match scope {
        None => (l.features.len(), l.bbox),
        Some(sc) => sc.extent(l),
    };
    if let Some(r) = bbox {
        extent.insert(
            "spatial".into(),
            json!({"bbox": [[r.min().x, r.min().y, r.max().x, r.max().y]], "crs": CRS84}),
        );
    }
    if let Some(k) = temporal_prop(&l.def) {
        let (mut lo, mut hi): (Option<&str>, Option<&str>) = (None, None);
        for (i, f) in l.features.iter().enumerate() {
            if scope.is_some_and(|sc| !sc.holds(l, i as u32)) {
                continue;
            }
            if let Some(Value::Text(s)) = f.properties.get(k) {
                let s: &str = s;
                if lo.is_none_or(|x| s < x) {
                    lo = Some(s);
                }
                if hi.is_none_or(|x| s > x) {
                    hi = Some(s);
                }
            }
        }
        extent.insert(
            "temporal".into(),
            json!({"interval": [[lo, hi]], "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}),
        );
    }
    json!({
        "id": id,
        "title": l.def.title,
        "description": format!("{} ({} features, {})", l.def.title, count, l.def.geometry.label()),
        "itemType": "feature",
        "crs": LAYER_CRS,
        "storageCrs": CRS84,
        "extent": extent,
        "links": [
            {"href": format!("{base}/collections/{id}"), "rel": "self", "type": "application/json", "title": l.def.title},
            {"href": format!("{base}/collections/{id}/items"), "rel": "items", "type": GEOJSON, "title": "features"},
            {"href": format!("{base}/collections/{id}/queryables"), "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": SCHEMA, "title": "queryables"},
            // The draft's relation name, which GDAL 3.6 (and QGIS on it) follow.
            {"href": format!("{base}/collections/{id}/queryables"), "rel": "queryables", "type": "application/json", "title": "queryables"},
        ]
    })
}

/// `GET /ogc/collections`.
pub async fn collections(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    params(&p, &[])?;
    let base = format!("{}/ogc", origin(&headers));
    let mut list = layer_collections(&st, &who, base.clone(), None).await?;
    list.extend(super::ogc_plans::collections(&st, &who, &base).await);
    Ok(json_response(
        json!({
            "links": [{"href": format!("{base}/collections"), "rel": "self", "type": "application/json"}],
            "collections": list,
        }),
        "application/json",
    ))
}

/// The descriptions of every layer (or of `only`). An unscoped principal's
/// are read off the catalog; a scoped one's take a pass over each layer
/// (its features inside the scope), on the heavy lane.
async fn layer_collections(
    st: &App,
    who: &crate::auth::Principal,
    base: String,
    only: Option<String>,
) -> Result<Vec<J>, ApiError> {
    let c = st.catalog();
    let pick = move |c: &Catalog, scope: Option<&Scope>| -> Vec<J> {
        c.layers
            .iter()
            .filter(|l| only.as_deref().is_none_or(|o| o == l.def.name))
            .map(|l| collection_json(&base, l, scope))
            .collect()
    };
    if who.scope.is_empty() {
        return Ok(pick(&c, None));
    }
    let codes = who.scope.clone();
    Ok(st
        .work
        .run(crate::work::Lane::Heavy, move || {
            let sc = Scope::of(&c, &codes);
            pick(&c, sc.as_ref())
        })
        .await?)
}

fn layer<'a>(c: &'a Catalog, id: &str) -> Result<&'a LayerIndex, ApiError> {
    c.layer(id)
        .ok_or_else(|| ApiError::not_found(format!("no collection {id:?}")))
}

/// `GET /ogc/collections/{id}`.
pub async fn collection(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    headers: HeaderMap,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    params(&p, &[])?;
    if let Some(pid) = super::ogc_plans::plan_of(&id) {
        return super::ogc_plans::collection(&st, &who, &headers, pid).await;
    }
    let base = format!("{}/ogc", origin(&headers));
    layer(&st.catalog(), &id)?;
    let mut one = layer_collections(&st, &who, base, Some(id)).await?;
    Ok(json_response(
        one.pop().unwrap_or_default(),
        "application/json",
    ))
}

fn prop_schema(ty: PropType) -> J {
    match ty {
        PropType::Bool => json!({"type": "boolean"}),
        PropType::Int => json!({"type": "integer"}),
        PropType::Float => json!({"type": "number"}),
        PropType::Text => json!({"type": "string"}),
        PropType::DateTime => json!({"type": "string", "format": "date-time"}),
        PropType::Date => json!({"type": "string", "format": "date"}),
    }
}

fn geometry_format(k: GeomKind) -> &'static str {
    match k {
        GeomKind::Point => "geometry-point",
        GeomKind::LineString => "geometry-linestring",
        GeomKind::Polygon => "geometry-polygon",
        GeomKind::MultiPoint => "geometry-multipoint",
        GeomKind::MultiLineString => "geometry-multilinestring",
        GeomKind::MultiPolygon => "geometry-multipolygon",
        GeomKind::Geometry => "geometry-any",
    }
}

/// `GET /ogc/collections/{id}/queryables`: a JSON Schema of what a filter
/// may name.
pub async fn queryables(
    State(st): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    params(&p, &[])?;
    let base = format!("{}/ogc", origin(&headers));
    let c = st.catalog();
    let l = layer(&c, &id)?;
    let mut props = serde_json::Map::new();
    if l.def.prop_index("id").is_none() {
        props.insert(
            "id".into(),
            json!({"type": "integer", "title": "feature id", "x-ogc-role": "id"}),
        );
    }
    for p in &l.def.properties {
        let mut s = prop_schema(p.ty);
        s["title"] = json!(p.name);
        props.insert(p.name.clone(), s);
    }
    props.insert(
        "geometry".into(),
        json!({"format": geometry_format(l.def.geometry), "x-ogc-role": "primary-geometry"}),
    );
    // The draft's list form too (an extra keyword JSON Schema ignores):
    // GDAL 3.6 reads `queryables[].id` to decide what it filters on the
    // server.
    let legacy: Vec<J> = props
        .iter()
        .map(|(k, v)| json!({"id": k, "type": v.get("type").cloned().unwrap_or(json!("geometry"))}))
        .collect();
    // application/schema+json is the standard's; a client that accepts only
    // plain JSON (GDAL 3.6 does) gets the same document as application/json.
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let ty = if accept.contains(SCHEMA) || accept.contains("*/*") || !accept.contains("json") {
        SCHEMA
    } else {
        "application/json"
    };
    Ok(json_response(
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": format!("{base}/collections/{id}/queryables"),
            "type": "object",
            "title": l.def.title,
            "properties": props,
            "additionalProperties": false,
            "queryables": legacy,
        }),
        ty,
    ))
}

/// A `datetime` parameter: an instant, or an interval with `..` or empty
/// open ends; both ends inclusive. Dates are whole days.
fn parse_datetime(s: &str) -> Result<(i64, i64), String> {
    let bad =
        || format!("datetime {s:?} is not an RFC 3339 instant, date or interval (a/b, ../b, a/..)");
    let end = |x: &str, start: bool| -> Result<i64, String> {
        if x.is_empty() || x == ".." {
            return Ok(if start { i64::MIN } else { i64::MAX });
        }
        let t = parse_instant(x).ok_or_else(bad)?;
        Ok(if x.len() == 10 && !start {
            t + 86_400_000 - 1
        } else {
            t
        })
    };
    match s.split_once('/') {
        None => {
            if s.is_empty() || s == ".." {
                return Err(bad());
            }
            Ok((end(s, true)?, end(s, false)?))
        }
        Some((a, b)) => {
            if (a.is_empty() || a == "..") && (b.is_empty() || b == "..") {
                return Err(format!("datetime {s:?} is open at both ends"));
            }
            let (lo, hi) = (end(a, true)?, end(b, false)?);
            if lo > hi {
                return Err(format!("datetime {s:?} ends before it starts"));
            }
            Ok((lo, hi))
        }
    }
}

pub fn parse_bbox(s: &str) -> Result<Rect, String> {
    let n: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bbox {s:?} is not a list of numbers"))?;
    let (w, so, e, no) = match n.as_slice() {
        [w, s, e, n] => (*w, *s, *e, *n),
        [w, s, _, e, n, _] => (*w, *s, *e, *n),
        _ => return Err(format!("bbox {s:?} needs 4 (or 6) numbers")),
    };
    if !(n.iter().all(|v| v.is_finite())
        && (-180.0..=180.0).contains(&w)
        && (-180.0..=180.0).contains(&e)
        && (-90.0..=90.0).contains(&so)
        && (-90.0..=90.0).contains(&no))
    {
        return Err(format!("bbox {s:?} is outside lon/lat range"));
    }
    if w > e {
        return Err(format!(
            "bbox {s:?}: west > east (boxes across the antimeridian are not supported)"
        ));
    }
    if so > no {
        return Err(format!("bbox {s:?}: south > north"));
    }
    Ok(Rect::new(Coord { x: w, y: so }, Coord { x: e, y: no }))
}

/// A validated items request.
struct Items {
    bbox: Option<Rect>,
    /// The CRS of the answer (`crs`).
    crs: OutCrs,
    time: Option<(usize, PropType, i64, i64)>,
    filter: Option<Filter>,
    limit: usize,
    offset: usize,
    properties: Option<Vec<usize>>,
}

const ITEMS_PARAMS: &[&str] = &[
    "bbox",
    "limit",
    "offset",
    "datetime",
    "properties",
    "filter",
    "filter-lang",
    "filter-crs",
    "crs",
    "bbox-crs",
];

fn items_request(
    l: &LayerIndex,
    q: &std::collections::BTreeMap<&str, &str>,
) -> Result<Items, ApiError> {
    let bad = ApiError::bad_request;
    let crs = OutCrs::parse(q.get("crs"), "crs").map_err(bad)?;
    let bbox_crs = OutCrs::parse(q.get("bbox-crs"), "bbox-crs").map_err(bad)?;
    if q.contains_key("bbox-crs") && !q.contains_key("bbox") {
        return Err(bad("bbox-crs is given without a bbox".to_string()));
    }
    let bbox = q
        .get("bbox")
        .map(|s| {
            if bbox_crs.lat_first() {
                // south,west,north,east in the EPSG axis order.
                let mut n: Vec<&str> = s.split(',').collect();
                match n.len() {
                    4 => {
                        n.swap(0, 1);
                        n.swap(2, 3);
                    }
                    6 => {
                        n.swap(0, 1);
                        n.swap(3, 4);
                    }
                    _ => {}
                }
                parse_bbox(&n.join(","))
            } else {
                parse_bbox(s)
            }
        })
        .transpose()
        .map_err(bad)?;
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "limit {s:?} must be an integer from 1 to {MAX_LIMIT}"
                )));
            }
        },
    };
    let offset = match q.get("offset") {
        None => 0,
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| bad(format!("offset {s:?} is not a non-negative integer")))?,
    };
    let time = match q.get("datetime") {
        None => None,
        Some(s) => {
            let k = temporal_prop(&l.def).ok_or_else(|| {
                bad(format!(
                    "collection {} has no time, so datetime does not apply",
                    l.def.name
                ))
            })?;
            let (lo, hi) = parse_datetime(s).map_err(bad)?;
            Some((k, l.def.properties[k].ty, lo, hi))
        }
    };
    let properties = match q.get("properties") {
        None => None,
        Some(s) => Some(
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(|name| {
                    l.def.prop_index(name).ok_or_else(|| {
                        bad(format!(
                            "properties: collection {} has no property {name:?}",
                            l.def.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    if let Some(crs) = q.get("filter-crs")
        && *crs != CRS84
    {
        return Err(bad(format!(
            "filter-crs {crs:?} is not supported; filters are in {CRS84}"
        )));
    }
    let lang = match q.get("filter-lang") {
        None => Lang::Text,
        // `cql-text` is the draft's name, which GDAL 3.6 sends; its basic
        // comparisons are CQL2 text.
        Some(&"cql-text") => Lang::Text,
        Some(s) => Lang::parse(s).ok_or_else(|| {
            bad(format!(
                "filter-lang {s:?} is not supported; use cql2-text or cql2-json"
            ))
        })?,
    };
    let filter = match q.get("filter") {
        None => {
            if q.contains_key("filter-lang") {
                return Err(bad("filter-lang is given without a filter".to_string()));
            }
            None
        }
        Some(s) => Some(
            filter::parse(s, lang)
                .and_then(|e| filter::compile(&e, &l.def))
                .map_err(bad)?,
        ),
    };
    Ok(Items {
        bbox,
        crs,
        time,
        filter,
        limit,
        offset,
        properties,
    })
}

/// The matching feature indexes of a layer, ascending; None when every
/// feature matches (no allocation for a plain page through a big layer).
fn select(l: &LayerIndex, it: &Items) -> Option<Vec<u32>> {
    if it.bbox.is_none() && it.filter.is_none() && it.time.is_none() {
        return None;
    }
    let envelope = match (it.bbox, it.filter.as_ref().and_then(|f| f.envelope)) {
        (Some(a), Some(b)) => match crate::index::rect_intersection(a, b) {
            Some(r) => Some(r),
            None => return Some(Vec::new()),
        },
        (a, b) => a.or(b),
    };
    let keep = |i: u32| -> bool {
        crate::work::checkpoint();
        let f = &l.features[i as usize];
        if let Some(b) = it.bbox
            && !f.geometry.intersects(&b)
        {
            return false;
        }
        if let Some((k, ty, lo, hi)) = it.time {
            let Some(Value::Text(s)) = f.properties.get(k) else {
                return false;
            };
            let Some(t) = parse_instant(s) else {
                return false;
            };
            let t1 = if ty == PropType::Date {
                t + 86_400_000 - 1
            } else {
                t
            };
            if !(t <= hi && t1 >= lo) {
                return false;
            }
        }
        it.filter
            .as_ref()
            .is_none_or(|flt| flt.matches(f.id, &f.geometry, &f.properties))
    };
    Some(match envelope {
        Some(r) => {
            let mut v: Vec<u32> = l.in_rect(r).filter(|&i| keep(i)).collect();
            v.sort_unstable();
            v
        }
        None => (0..l.features.len() as u32).filter(|&i| keep(i)).collect(),
    })
}

fn feature_json(l: &LayerIndex, i: u32, props: Option<&[usize]>, crs: OutCrs) -> J {
    let f = &l.features[i as usize];
    let mut j = f.to_geojson(&l.def);
    if crs.lat_first()
        && let Some(g) = j.get_mut("geometry")
    {
        swap_axes(g);
    }
    if let Some(keep) = props {
        let mut m = serde_json::Map::new();
        for &k in keep {
            m.insert(l.def.properties[k].name.clone(), f.properties[k].to_json());
        }
        j["properties"] = J::Object(m);
    }
    j
}

/// The request URL with `offset` replaced (for self and next links).
fn page_url(
    base: &str,
    id: &str,
    q: &std::collections::BTreeMap<&str, &str>,
    offset: Option<usize>,
) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in q {
        if *k != "offset" {
            ser.append_pair(k, v);
        }
    }
    if let Some(o) = offset
        && o > 0
    {
        ser.append_pair("offset", &o.to_string());
    }
    let qs = ser.finish();
    if qs.is_empty() {
        format!("{base}/collections/{id}/items")
    } else {
        format!("{base}/collections/{id}/items?{qs}")
    }
}

/// `GET /ogc/collections/{id}/items`.
pub async fn items(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    headers: HeaderMap,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    if let Some(pid) = super::ogc_plans::plan_of(&id) {
        let q = params(&p, &["bbox", "limit", "offset"])?;
        return super::ogc_plans::items(&st, &who, &headers, pid, &q).await;
    }
    let q = params(&p, ITEMS_PARAMS)?;
    let base = format!("{}/ogc", origin(&headers));
    let c = st.catalog();
    let l = layer(&c, &id)?;
    let it = items_request(l, &q)?;
    let (offset, limit, crs) = (it.offset, it.limit, it.crs);
    let cat = c.clone();
    let id2 = id.clone();
    // Filtering millions of features is CPU work: off the async workers.
    let (matched, page) = st
        .work
        .run(crate::work::Lane::Heavy, move || {
            let l = layer(&cat, &id2)?;
            let mut sel = select(l, &it);
            // A scoped principal's pages and numberMatched hold its grids only.
            if let Some(scope) = Scope::of(&cat, &who.scope) {
                sel = Some(match sel {
                    Some(mut v) => {
                        v.retain(|&i| scope.holds(l, i));
                        v
                    }
                    None => (0..l.features.len() as u32)
                        .filter(|&i| scope.holds(l, i))
                        .collect(),
                });
            }
            let matched = sel.as_ref().map_or(l.features.len(), Vec::len);
            let start = it.offset.min(matched);
            let end = (start + it.limit).min(matched);
            let props = it.properties.as_deref();
            let page: Vec<J> = match &sel {
                Some(v) => v[start..end]
                    .iter()
                    .map(|&i| feature_json(l, i, props, it.crs))
                    .collect(),
                None => (start as u32..end as u32)
                    .map(|i| feature_json(l, i, props, it.crs))
                    .collect(),
            };
            Ok::<_, ApiError>((matched, page))
        })
        .await??;
    let returned = page.len();
    let mut links = vec![
        json!({"href": page_url(&base, &id, &q, Some(offset)), "rel": "self", "type": GEOJSON, "title": "this page"}),
        json!({"href": format!("{base}/collections/{id}"), "rel": "collection", "type": "application/json", "title": "the collection"}),
    ];
    if offset + returned < matched {
        links.push(json!({"href": page_url(&base, &id, &q, Some(offset + returned)), "rel": "next", "type": GEOJSON, "title": "next page"}));
    }
    if offset > 0 {
        links.push(json!({"href": page_url(&base, &id, &q, Some(offset.saturating_sub(limit))), "rel": "prev", "type": GEOJSON, "title": "previous page"}));
    }
    let mut r = json_response(
        json!({
            "type": "FeatureCollection",
            "numberMatched": matched,
            "numberReturned": returned,
            "timeStamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "links": links,
            "features": page,
        }),
        GEOJSON,
    );
    r.headers_mut().insert(CONTENT_CRS, crs.header());
    Ok(r)
}

/// `GET /ogc/collections/{id}/items/{fid}`.
pub async fn item(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    headers: HeaderMap,
    Path((id, fid)): Path<(String, String)>,
    p: Params,
) -> Result<Response, ApiError> {
    if let Some(pid) = super::ogc_plans::plan_of(&id) {
        params(&p, &[])?;
        return super::ogc_plans::item(&st, &who, &headers, pid, &fid).await;
    }
    let q = params(&p, &["properties", "crs"])?;
    let base = format!("{}/ogc", origin(&headers));
    let c = st.catalog();
    let l = layer(&c, &id)?;
    let n: i64 = fid
        .parse()
        .map_err(|_| ApiError::not_found(format!("no feature {fid:?} in {id}")))?;
    let i = l
        .features
        .binary_search_by_key(&n, |f| f.id)
        .map_err(|_| ApiError::not_found(format!("no feature {fid:?} in {id}")))?;
    // Outside a scoped principal's grids: as if it did not exist.
    if let Some(scope) = Scope::of(&c, &who.scope)
        && !scope.holds(l, i as u32)
    {
        return Err(ApiError::not_found(format!("no feature {fid:?} in {id}")));
    }
    let it = items_request(l, &q)?;
    if id == crate::model::builtin::CAMERAS {
        // 安全审计: who read which camera's details.
        st.audit
            .record(crate::auth::audit::entry(
                &who.who,
                who.role.as_str(),
                "camera",
                "ok",
                "",
                &format!("cameras/{n}"),
                json!({}),
            ))
            .await;
    }
    let mut j = feature_json(l, i as u32, it.properties.as_deref(), it.crs);
    j["links"] = json!([
        {"href": format!("{base}/collections/{id}/items/{fid}"), "rel": "self", "type": GEOJSON},
        {"href": format!("{base}/collections/{id}"), "rel": "collection", "type": "application/json"},
    ]);
    let mut r = json_response(j, GEOJSON);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}-{}\"", n, l.features[i].version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r.headers_mut().insert(CONTENT_CRS, it.crs.header());
    Ok(r)
}

/// `GET /ogc/api`: the OpenAPI 3.0 definition, self-contained.
pub async fn openapi(State(st): S, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    params(&p, &[])?;
    let base = format!("{}/ogc", origin(&headers));
    let c = st.catalog();
    let ids: Vec<&str> = c.layers.iter().map(|l| l.def.name.as_str()).collect();
    Ok(json_response(openapi_doc(&base, &ids), OPENAPI))
}

fn openapi_doc(base: &str, ids: &[&str]) -> J {
    let problem = json!({"description": "a problem (RFC 9457)", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/problem"}}}});
    let json_ok = |desc: &str, schema: &str| json!({"200": {"description": desc, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}, "400": {"$ref": "#/components/responses/problem"}});
    let f = json!({"$ref": "#/components/parameters/f"});
    let cid = json!({"$ref": "#/components/parameters/collectionId"});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "onemap OGC API – Features",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every layer of the district as a collection. Part 1 core/GeoJSON/OpenAPI and Part 3 filtering with CQL2 (text and JSON).",
        },
        "servers": [{"url": base}],
        "paths": {
            "/": {"get": {"summary": "landing page", "operationId": "getLandingPage", "parameters": [f], "responses": json_ok("links to the API", "landingPage")}},
            "/conformance": {"get": {"summary": "conformance classes", "operationId": "getConformance", "parameters": [f], "responses": json_ok("the classes this server conforms to", "confClasses")}},
            "/api": {"get": {"summary": "this document", "operationId": "getApi", "parameters": [f], "responses": {"200": {"description": "OpenAPI 3.0", "content": {OPENAPI: {"schema": {"type": "object"}}}}}}},
            "/collections": {"get": {"summary": "the collections", "operationId": "getCollections", "parameters": [f], "responses": json_ok("every collection", "collections")}},
            "/collections/{collectionId}": {"get": {"summary": "one collection", "operationId": "describeCollection", "parameters": [cid, f], "responses": {
                "200": {"description": "the collection", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/collection"}}}},
                "400": {"$ref": "#/components/responses/problem"}, "404": {"$ref": "#/components/responses/problem"}}}},
            "/collections/{collectionId}/queryables": {"get": {"summary": "what a filter may name", "operationId": "getQueryables", "parameters": [cid, f], "responses": {
                "200": {"description": "a JSON Schema", "content": {SCHEMA: {"schema": {"type": "object"}}}},
                "400": {"$ref": "#/components/responses/problem"}, "404": {"$ref": "#/components/responses/problem"}}}},
            "/collections/{collectionId}/items": {"get": {"summary": "features", "operationId": "getFeatures", "parameters": [
                cid,
                {"$ref": "#/components/parameters/bbox"},
                {"$ref": "#/components/parameters/limit"},
                {"$ref": "#/components/parameters/offset"},
                {"$ref": "#/components/parameters/datetime"},
                {"$ref": "#/components/parameters/properties"},
                {"$ref": "#/components/parameters/filter"},
                {"$ref": "#/components/parameters/filter-lang"},
                {"$ref": "#/components/parameters/filter-crs"},
                {"$ref": "#/components/parameters/crs"},
                {"$ref": "#/components/parameters/bbox-crs"},
                f], "responses": {
                "200": {"description": "a page of features", "content": {GEOJSON: {"schema": {"$ref": "#/components/schemas/featureCollectionGeoJSON"}}}},
                "400": {"$ref": "#/components/responses/problem"}, "404": {"$ref": "#/components/responses/problem"}}}},
            "/collections/{collectionId}/items/{featureId}": {"get": {"summary": "one feature", "operationId": "getFeature", "parameters": [
                cid, {"name": "featureId", "in": "path", "required": true, "schema": {"type": "integer"}},
                {"$ref": "#/components/parameters/properties"}, {"$ref": "#/components/parameters/crs"}, f], "responses": {
                "200": {"description": "the feature", "content": {GEOJSON: {"schema": {"$ref": "#/components/schemas/featureGeoJSON"}}}},
                "404": {"$ref": "#/components/responses/problem"}}}},
        },
        "components": {
            "parameters": {
                "f": {"name": "f", "in": "query", "required": false, "description": "the format: json only", "schema": {"type": "string", "enum": ["json", "geojson"]}},
                "collectionId": {"name": "collectionId", "in": "path", "required": true, "schema": {"type": "string", "enum": ids}},
                "bbox": {"name": "bbox", "in": "query", "required": false, "style": "form", "explode": false, "description": "west,south,east,north in CRS84",
                    "schema": {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}}},
                "limit": {"name": "limit", "in": "query", "required": false, "style": "form", "explode": false,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
                "offset": {"name": "offset", "in": "query", "required": false, "description": "start of the page (the next link carries it)", "schema": {"type": "integer", "minimum": 0, "default": 0}},
                "datetime": {"name": "datetime", "in": "query", "required": false, "style": "form", "explode": false, "description": "an instant, a date, or an interval a/b (.. for an open end), on the collection's first date/time property", "schema": {"type": "string"}},
                "properties": {"name": "properties", "in": "query", "required": false, "style": "form", "explode": false, "description": "the properties to return", "schema": {"type": "array", "items": {"type": "string"}}},
                "filter": {"name": "filter", "in": "query", "required": false, "description": "a CQL2 filter on the queryables", "schema": {"type": "string"}},
                "filter-lang": {"name": "filter-lang", "in": "query", "required": false, "description": "cql2-text (default) or cql2-json; cql-text is accepted as the draft's name of cql2-text", "schema": {"type": "string", "enum": ["cql2-text", "cql2-json", "cql-text"], "default": "cql2-text"}},
                "crs": {"name": "crs", "in": "query", "required": false, "description": "the CRS of the answer's coordinates (EPSG ones are latitude first); the answer names it in Content-Crs", "schema": {"type": "string", "enum": LAYER_CRS, "default": CRS84}},
                "bbox-crs": {"name": "bbox-crs", "in": "query", "required": false, "description": "the CRS of bbox (EPSG ones are latitude first: south,west,north,east)", "schema": {"type": "string", "enum": LAYER_CRS, "default": CRS84}},
                "filter-crs": {"name": "filter-crs", "in": "query", "required": false, "schema": {"type": "string", "enum": [CRS84], "default": CRS84}},
            },
            "responses": {"problem": problem},
            "schemas": {
                "problem": {"type": "object", "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}}},
                "link": {"type": "object", "required": ["href"], "properties": {"href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"}, "title": {"type": "string"}}},
                "landingPage": {"type": "object", "required": ["links"], "properties": {"title": {"type": "string"}, "description": {"type": "string"}, "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}}}},
                "confClasses": {"type": "object", "required": ["conformsTo"], "properties": {"conformsTo": {"type": "array", "items": {"type": "string"}}}},
                "extent": {"type": "object", "properties": {
                    "spatial": {"type": "object", "properties": {"bbox": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}, "crs": {"type": "string"}}},
                    "temporal": {"type": "object", "properties": {"interval": {"type": "array", "items": {"type": "array", "items": {"type": "string", "nullable": true}}}, "trs": {"type": "string"}}}}},
                "collection": {"type": "object", "required": ["id", "links"], "properties": {
                    "id": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
                    "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
                    "extent": {"$ref": "#/components/schemas/extent"}, "itemType": {"type": "string"},
                    "crs": {"type": "array", "items": {"type": "string"}}, "storageCrs": {"type": "string"}}},
                "collections": {"type": "object", "required": ["links", "collections"], "properties": {
                    "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
                    "collections": {"type": "array", "items": {"$ref": "#/components/schemas/collection"}}}},
                "geometryGeoJSON": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string", "enum": ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"]}}},
                "featureGeoJSON": {"type": "object", "required": ["type", "geometry", "properties"], "properties": {
                    "type": {"type": "string", "enum": ["Feature"]},
                    "id": {"type": "integer"},
                    "geometry": {"$ref": "#/components/schemas/geometryGeoJSON"},
                    "properties": {"type": "object", "nullable": true},
                    "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}}}},
                "featureCollectionGeoJSON": {"type": "object", "required": ["type", "features"], "properties": {
                    "type": {"type": "string", "enum": ["FeatureCollection"]},
                    "features": {"type": "array", "items": {"$ref": "#/components/schemas/featureGeoJSON"}},
                    "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
                    "timeStamp": {"type": "string", "format": "date-time"},
                    "numberMatched": {"type": "integer", "minimum": 0},
                    "numberReturned": {"type": "integer", "minimum": 0}}},
            }
        }
    })
}

/// Unknown paths under `/ogc`.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such OGC API resource; start at /ogc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        let day = 86_400_000;
        assert_eq!(parse_datetime("1970-01-02"), Ok((day, 2 * day - 1)));
        assert_eq!(parse_datetime("../1970-01-01"), Ok((i64::MIN, day - 1)));
        assert_eq!(
            parse_datetime("1970-01-01T00:00:01Z/"),
            Ok((1000, i64::MAX))
        );
        assert!(parse_datetime("../..").is_err());
        assert!(parse_datetime("1970-01-02/1970-01-01").is_err());
        assert!(parse_datetime("tomorrow").is_err());
        assert!(parse_datetime("").is_err());
    }

    #[test]
    fn bboxes() {
        assert!(parse_bbox("112,28,113,29").is_ok());
        assert!(parse_bbox("112,28,0,113,29,10").is_ok());
        assert!(parse_bbox("113,28,112,29").is_err());
        assert!(parse_bbox("112,28,113").is_err());
        assert!(parse_bbox("112,28,113,95").is_err());
        assert!(parse_bbox("a,b,c,d").is_err());
    }

    #[test]
    fn openapi_refs_are_local() {
        let doc = openapi_doc("http://x/ogc", &["cameras"]).to_string();
        for (i, _) in doc.match_indices("\"$ref\"") {
            let rest = &doc[i + 7..];
            let target = rest.trim_start_matches([':', '"']);
            assert!(
                target.starts_with("#/components/"),
                "{}",
                &rest[..60.min(rest.len())]
            );
        }
    }
}
