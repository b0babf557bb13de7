//! Request handlers for the foundation endpoints.

use super::App;
use super::error::ApiError;
use crate::index::{Catalog, GridStats, LayerIndex, NO_GRID};
use crate::model::{GridCode, GridLevel};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use geo::{BoundingRect, Point};
use serde::Deserialize;
use serde_json::{Value as J, json};
use std::sync::Arc;

type S = State<Arc<App>>;

/// Health for load balancers and operators. 200 while the store answers;
/// 503 while it does not, saying since when and what still works (reads
/// are served from memory, writes are refused until it is back). Also how
/// this server follows other servers' writes and how far behind it is.
pub async fn healthz(State(st): S) -> axum::response::Response {
    use axum::response::IntoResponse;
    let store = st.store.describe();
    // Whether the store answers (a store's ping says why not, at once),
    // then its newest seq.
    let probe = match st.store.ping().await {
        Err(e) => Err(e.to_string()),
        Ok(()) => match tokio::time::timeout(SEQ_TIMEOUT, st.store.last_seq()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", SEQ_TIMEOUT.as_secs_f64())),
        },
    };
    st.health.observe(&probe, &store);
    let h = st.health.get();
    let c = st.catalog();
    let follow = json!({
        "wake": match h.listening { Some(_) => "notify", None => "poll" },
        "listening": h.listening,
        "seq": c.seq,
        "store_seq": h.store_seq,
        "behind": (h.store_seq - c.seq).max(0),
    });
    match &h.error {
        None => Json(json!({
            "status": "ok",
            "health": "ok",
            "store": store,
            "layers": c.layers.len(),
            "seq": c.seq,
            "since": h.since,
            "outages": h.outages,
            "follow": follow,
        }))
        .into_response(),
        // A problem document (so `status` is the number), with the health
        // as extension members; not an ApiError, which would log an error
        // on every probe of a load balancer during an outage.
        Some(e) => {
            let mut r = super::error::problem_with(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                &format!(
                    "store unreachable since {}: {e}; reads are served from memory as of change {}, \
                     writes are refused until the store answers",
                    h.since.as_deref().unwrap_or("start"),
                    c.seq
                ),
                json!({
                    "health": "store_unreachable",
                    "store": store,
                    "error": e,
                    "since": h.since,
                    "outages": h.outages,
                    "layers": c.layers.len(),
                    "seq": c.seq,
                    "reads": format!("served from memory as of change {}", c.seq),
                    "writes": "refused (503) until the store answers",
                    "follow": follow,
                })
                .as_object()
                .cloned(),
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
            r
        }
    }
}

/// Readiness for load balancers: 200 while this server can answer (its
/// catalog is loaded; reads are served from memory even while the store
/// is away), saying whether writes would work. `/healthz` is the alert:
/// it turns 503 in an outage, which would take every server sharing the
/// database out of a balancer's rotation at once, and with them every
/// screen.
pub async fn readyz(State(st): S) -> Json<J> {
    let h = st.health.get();
    let c = st.catalog();
    Json(json!({
        "status": "ready",
        "seq": c.seq,
        "layers": c.layers.len(),
        "store": if h.error.is_some() { "unreachable" } else { "ok" },
        "writes": h.error.is_none(),
    }))
}

/// How long `/healthz` waits for the store's newest seq.
const SEQ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn layer_json(l: &LayerIndex) -> J {
    json!({
        "name": l.def.name,
        "title": l.def.title,
        "geometry": l.def.geometry.label(),
        "geometry_type": l.def.geometry.gpkg_name(),
        "count": l.features.len(),
        "bbox": l.bbox.map(|r| json!([r.min().x, r.min().y, r.max().x, r.max().y])),
        "minzoom": l.def.minzoom,
        "maxzoom": l.def.maxzoom,
        "declared_crs": l.def.declared_crs,
        "properties": l.def.properties.iter().map(|p| json!({"name": p.name, "type": p.ty.name()})).collect::<Vec<_>>(),
    })
}

pub async fn layers(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
) -> Result<Json<J>, ApiError> {
    let c = st.catalog();
    if who.scope.is_empty() {
        return Ok(Json(J::Array(
            c.layers.iter().map(|l| layer_json(l)).collect(),
        )));
    }
    // A scoped principal counts its own grids' features (a pass per layer).
    let out = st
        .work
        .run(crate::work::Lane::Heavy, move || {
            let sc = crate::index::scope::Scope::of(&c, &who.scope);
            c.layers
                .iter()
                .map(|l| scoped_layer_json(l, sc.as_ref()))
                .collect::<Vec<J>>()
        })
        .await?;
    Ok(Json(J::Array(out)))
}

/// A layer's description with its count and bbox inside `scope` (roads
/// and water, the map's context, are counted whole).
fn scoped_layer_json(l: &LayerIndex, scope: Option<&crate::index::scope::Scope>) -> J {
    let mut j = layer_json(l);
    if let Some(sc) = scope
        && l.def.name != crate::model::builtin::ROADS
        && l.def.name != crate::model::builtin::WATER
    {
        let (n, bbox) = sc.extent(l);
        j["count"] = json!(n);
        j["bbox"] = json!(bbox.map(|r| [r.min().x, r.min().y, r.max().x, r.max().y]));
    }
    j
}

pub async fn layer(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    Path(name): Path<String>,
) -> Result<Json<J>, ApiError> {
    let c = st.catalog();
    if c.layer(&name).is_none() {
        return Err(ApiError::not_found(format!("unknown layer {name:?}")));
    }
    let j = st
        .work
        .run(crate::work::Lane::Heavy, move || {
            let sc = crate::index::scope::Scope::of(&c, &who.scope);
            c.layer(&name).map(|l| scoped_layer_json(l, sc.as_ref()))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("unknown layer"))?;
    Ok(Json(j))
}

pub async fn api_not_found() -> ApiError {
    ApiError::not_found("no such API endpoint; see README.md for the list")
}

fn stats_json(s: &GridStats) -> J {
    json!({
        "households": s.households,
        "addresses": s.addresses,
        "cameras": s.cameras,
        "cameras_online": s.cameras_online,
        "risks": s.risks,
        "risks_by_level": {"red": s.risks_by_level[0], "orange": s.risks_by_level[1], "yellow": s.risks_by_level[2], "blue": s.risks_by_level[3]},
        "buildings": s.buildings,
        "events": s.events,
        "events_open": s.events_open,
        "events_overdue": s.events_overdue,
    })
}

/// A short description of a grid node.
fn node_brief(c: &Catalog, n: u32) -> J {
    let node = &c.grids.nodes[n as usize];
    json!({
        "code": node.code,
        "name": node.name,
        "level": node.level,
        "kind": if node.dedicated { "dedicated" } else { "comprehensive" },
        "households": c.stats[n as usize].households,
    })
}

fn parse_code(code: &str) -> Result<GridCode, ApiError> {
    GridCode::parse(code).map_err(ApiError::bad_request)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridQuery {
    /// Include the grid's outline (GeoJSON), for a page that draws it.
    #[serde(default)]
    geometry: bool,
}

/// `GET /api/grids/{code}[?geometry=true]`: one grid, its path and
/// children, aggregates, and (when asked) its outline.
fn masked(who: &crate::auth::Principal, field: &str, v: J) -> J {
    match v {
        J::String(t) => J::String(who.mask(field, &t)),
        other => other,
    }
}

pub async fn grid(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    Path(code): Path<String>,
    q: Result<Query<GridQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<J>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let code = parse_code(&code)?;
    check_scope(&who, code.as_str())?;
    let c = st.catalog();
    let (n, node) = c
        .grids
        .get(code.as_str())
        .ok_or_else(|| ApiError::not_found(format!("no grid with code {code}")))?;
    let grids = c
        .layer(crate::model::builtin::GRIDS)
        .ok_or_else(|| ApiError::internal("grids layer missing"))?;
    let f = &grids.features[node.feature as usize];
    let prop = |k: &str| f.get(&grids.def, k).map(|v| v.to_json()).unwrap_or(J::Null);
    let path: Vec<J> = c
        .grids
        .path(n)
        .into_iter()
        .map(|a| node_brief(&c, a))
        .collect();
    let children: Vec<J> = node.children.iter().map(|&ch| node_brief(&c, ch)).collect();
    let mut out = json!({
        "id": f.id,
        "version": f.version,
        "code": node.code,
        "name": node.name,
        "level": node.level,
        "level_zh": node.level.name_zh(),
        "kind": prop("kind"),
        "parent": prop("parent"),
        // 脱敏 for roles that do not need the grid worker's name and number.
        "staff": masked(&who, "staff", prop("staff")),
        "phone": masked(&who, "phone", prop("phone")),
        "population": prop("population"),
        "households": c.stats[n as usize].households,
        "bbox": node.geometry.bounding_rect().map(|r| json!([r.min().x, r.min().y, r.max().x, r.max().y])),
        "path": path,
        "children": children,
        "counts": stats_json(&c.stats[n as usize]),
    });
    if q.geometry {
        out["geometry"] = json!(geojson::Geometry::from(&f.geometry));
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridsQuery {
    level: Option<String>,
    parent: Option<String>,
    /// Search by name or code.
    q: Option<String>,
    limit: Option<usize>,
}

/// Most grids a search answers.
pub const GRID_SEARCH_MAX: usize = 200;

/// `GET /api/grids?q=…[&level=…][&limit=20]`: grids whose code starts
/// with `q` or whose name contains it (ASCII case ignored), best first:
/// an exact code or name, then names starting with it, then the rest; by
/// level (coarse first) and code within each. Each with its path of names
/// (`示范区 › 某街道 › 某社区`), so same-named grids tell apart.
fn grid_search(
    c: &Catalog,
    q: &str,
    level: Option<GridLevel>,
    limit: usize,
) -> Result<J, ApiError> {
    let q = q.trim();
    if q.is_empty() {
        return Err(ApiError::bad_request("q is empty"));
    }
    if q.chars().count() > 64 {
        return Err(ApiError::bad_request("q is longer than 64 characters"));
    }
    if !(1..=GRID_SEARCH_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {GRID_SEARCH_MAX}"
        )));
    }
    let ql = q.to_lowercase();
    let mut hits: Vec<(u8, u8, &str, u32)> = Vec::new();
    for (n, node) in c.grids.nodes.iter().enumerate() {
        if level.is_some_and(|l| node.level != l) {
            continue;
        }
        let name = node.name.to_lowercase();
        let code = node.code.as_str();
        let rank = if code == q || name == ql {
            0
        } else if name.starts_with(&ql) {
            1
        } else if code.starts_with(q) || name.contains(&ql) {
            2
        } else {
            continue;
        };
        hits.push((rank, node.level as u8, code, n as u32));
    }
    hits.sort();
    let total = hits.len();
    let items: Vec<J> = hits
        .into_iter()
        .take(limit)
        .map(|(_, _, _, n)| {
            let mut b = node_brief(c, n);
            let path: Vec<&str> = c
                .grids
                .path(n)
                .into_iter()
                .map(|a| c.grids.nodes[a as usize].name.as_str())
                .collect();
            b["path"] = json!(path.join(" › "));
            b["bbox"] = json!(c.grids.nodes[n as usize].geometry.bounding_rect().map(|r| [
                r.min().x,
                r.min().y,
                r.max().x,
                r.max().y
            ]));
            b
        })
        .collect();
    Ok(json!({"count": items.len(), "matched": total, "grids": items}))
}

/// `GET /api/grids?level=street[&parent=code]`: the grids of one level (or
/// the children of `parent`), with their aggregates; with `q`, a search.
/// A grid outside a scoped principal's grids is answered as if it did not
/// exist.
pub fn check_scope(who: &crate::auth::Principal, code: &str) -> Result<(), ApiError> {
    if who.covers(code) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no grid with code {code}")))
    }
}

pub async fn grids_list(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    q: Result<Query<GridsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<J>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let c = st.catalog();
    let scope = crate::index::scope::Scope::of(&c, &who.scope);
    let level = match q.level.as_deref() {
        None => None,
        Some(l) => Some(GridLevel::parse(l).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown level {l:?}: use district, street, community, grid or micro"
            ))
        })?),
    };
    if let Some(text) = q.q.as_deref() {
        if q.parent.is_some() {
            return Err(ApiError::bad_request("q and parent cannot be combined"));
        }
        let mut found = grid_search(&c, text, level, q.limit.unwrap_or(20))?;
        if let Some(sc) = &scope
            && let Some(list) = found.get_mut("grids").and_then(J::as_array_mut)
        {
            list.retain(|g| g["code"].as_str().is_some_and(|code| sc.code(code)));
        }
        return Ok(Json(found));
    }
    if q.limit.is_some() {
        return Err(ApiError::bad_request("limit goes with q (a search)"));
    }
    let nodes: Vec<u32> = match q.parent.as_deref() {
        Some(p) => {
            let code = parse_code(p)?;
            let (_, node) = c
                .grids
                .get(code.as_str())
                .ok_or_else(|| ApiError::not_found(format!("no grid with code {code}")))?;
            node.children.clone()
        }
        None => {
            let level = level.unwrap_or(GridLevel::District);
            (0..c.grids.nodes.len() as u32)
                .filter(|&n| c.grids.nodes[n as usize].level == level)
                .collect()
        }
    };
    let items: Vec<J> = nodes
        .into_iter()
        .filter(|&n| scope.as_ref().is_none_or(|s| s.node(n)))
        .filter(|&n| level.is_none_or(|l| c.grids.nodes[n as usize].level == l))
        .map(|n| {
            let mut b = node_brief(&c, n);
            b["counts"] = stats_json(&c.stats[n as usize]);
            b
        })
        .collect();
    Ok(Json(json!({ "count": items.len(), "grids": items })))
}

/// The grids holding one point, every level, plus dedicated grids.
/// Which grids hold a point. For a scoped principal a point outside its
/// grids is in none it may see.
fn locate_json(c: &Catalog, lon: f64, lat: f64, who: &crate::auth::Principal) -> J {
    let p = Point::new(lon, lat);
    let mut deepest = c.grids.locate(p);
    if deepest != NO_GRID && !who.covers(c.grids.nodes[deepest as usize].code.as_str()) {
        deepest = NO_GRID;
    }
    let mut levels = serde_json::Map::new();
    if deepest != NO_GRID {
        for n in c.grids.path(deepest) {
            let node = &c.grids.nodes[n as usize];
            levels.insert(
                node.level.name().to_string(),
                json!({"code": node.code, "name": node.name}),
            );
        }
    }
    let dedicated: Vec<J> = c
        .grids
        .dedicated_at(p)
        .into_iter()
        .filter(|&n| who.covers(c.grids.nodes[n as usize].code.as_str()))
        .map(|n| {
            let node = &c.grids.nodes[n as usize];
            json!({"code": node.code, "name": node.name})
        })
        .collect();
    json!({
        "lon": lon,
        "lat": lat,
        "grid": (deepest != NO_GRID).then(|| c.grids.nodes[deepest as usize].code.to_string()),
        "levels": levels,
        "dedicated": dedicated,
    })
}

fn check_lonlat(lon: f64, lat: f64) -> Result<(), ApiError> {
    if !(lon.is_finite()
        && lat.is_finite()
        && (-180.0..=180.0).contains(&lon)
        && (-90.0..=90.0).contains(&lat))
    {
        return Err(ApiError::bad_request(format!(
            "coordinates out of range: lon {lon}, lat {lat} (WGS84 degrees expected)"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct LocateQuery {
    lon: f64,
    lat: f64,
}

/// `GET /api/locate?lon=&lat=`: which grid (at every level) holds a point.
pub async fn locate_one(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    q: Result<Query<LocateQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<J>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_lonlat(q.lon, q.lat)?;
    Ok(Json(locate_json(&st.catalog(), q.lon, q.lat, &who)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocateBody {
    points: Vec<[f64; 2]>,
}

/// Points per `POST /api/locate`.
pub const LOCATE_MAX_POINTS: usize = 10_000;

/// `POST /api/locate {"points": [[lon, lat], …]}`: the same for many points.
pub async fn locate_many(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    body: Result<Json<LocateBody>, JsonRejection>,
) -> Result<Json<J>, ApiError> {
    let Json(body) = body?;
    if body.points.len() > LOCATE_MAX_POINTS {
        return Err(ApiError::bad_request(format!(
            "{} points given; at most {LOCATE_MAX_POINTS} per request",
            body.points.len()
        )));
    }
    for (i, p) in body.points.iter().enumerate() {
        check_lonlat(p[0], p[1])
            .map_err(|e| ApiError::bad_request(format!("point {i}: {}", e.detail)))?;
    }
    let c = st.catalog();
    let out: Vec<J> = body
        .points
        .iter()
        .map(|p| locate_json(&c, p[0], p[1], &who))
        .collect();
    Ok(Json(json!({ "results": out })))
}

/// `POST /api/query`: what lies inside an area, per layer: count, groups,
/// and the features themselves (GeoJSON, `limit` per page, `next` cursor).
pub async fn query(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: Result<Json<crate::query::Request>, JsonRejection>,
) -> Result<Json<J>, ApiError> {
    let Json(q) = body?;
    if q.precheck().map_err(ApiError::bad_request)? {
        // A filter text over 16 KiB: parsed on the tile lane, so a bad one
        // is a 400 without waiting for a heavy slot (or a 503 when the
        // heavy lane is full).
        let f = q.filter.clone();
        st.work
            .run(crate::work::Lane::Tiles, move || {
                crate::query::check_filter_texts(f.as_ref(), usize::MAX)
            })
            .await?
            .map_err(ApiError::bad_request)?;
    }
    let c = st.catalog();
    let audit = super::export::audit_detail(&q);
    let scope = who.scope.clone();
    // Parsing the area, compiling filters and selecting are all CPU work
    // bounded by the heavy lane's budget, off the async workers.
    let out = st
        .work
        .run(crate::work::Lane::Heavy, move || query_json(&c, q, &scope))
        .await??;
    // Features of personal layers returned: audited (who, area, filter, rows).
    let personal: usize = out
        .get("layers")
        .and_then(J::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !crate::auth::personal_fields(k).is_empty())
                .filter_map(|(_, v)| v.pointer("/features/features").and_then(J::as_array))
                .map(Vec::len)
                .sum()
        })
        .unwrap_or(0);
    if personal > 0 {
        super::export::audit(&st, &who, addr, "query", audit, personal).await;
    }
    Ok(Json(out))
}

fn query_json(c: &Catalog, q: crate::query::Request, scope: &[String]) -> Result<J, ApiError> {
    use crate::query::Selector;
    use geo::{BooleanOps, GeodesicArea};
    let mut plan = q.plan(c).map_err(ApiError::bad_request)?;
    plan.scope = crate::index::scope::Scope::of(c, scope).map(std::sync::Arc::new);
    let area_poly = plan.area.polygon();
    let selector = Selector::new(&plan.area);
    let mut out = serde_json::Map::new();
    let mut total = 0usize;
    for (k, name) in plan.layers.iter().enumerate() {
        let l = c
            .layer(name)
            .ok_or_else(|| ApiError::bad_request(format!("unknown layer {name:?}")))?;
        let hits = plan.select(&selector, k, l);
        total += hits.len();
        let mut entry = serde_json::Map::new();
        entry.insert("count".into(), json!(hits.len()));
        if let Some(Some(g)) = plan.groups.get(k) {
            let mut groups: std::collections::BTreeMap<String, usize> =
                std::collections::BTreeMap::new();
            for &i in &hits {
                crate::work::checkpoint();
                let k = g.key(c, l, i).unwrap_or_else(|| "none".to_string());
                *groups.entry(k).or_default() += 1;
            }
            entry.insert("groups".into(), json!(groups));
        }
        let page: Vec<J> = hits
            .iter()
            .skip(plan.offset)
            .take(plan.limit)
            .map(|&i| {
                crate::work::checkpoint();
                let f = &l.features[i as usize];
                let mut j = f.to_geojson(&l.def);
                if name == crate::model::builtin::BUILDINGS {
                    let poly = match &f.geometry {
                        geo::Geometry::Polygon(p) => Some(geo::MultiPolygon(vec![p.clone()])),
                        geo::Geometry::MultiPolygon(m) => Some(m.clone()),
                        _ => None,
                    };
                    if let Some(p) = poly {
                        // A building wholly inside (most of them) is all in:
                        // no clipping against an area of thousands of
                        // vertices.
                        let inside = geo::BoundingRect::bounding_rect(&p)
                            .and_then(|r| selector.rect_inside(&r));
                        let a = match inside {
                            Some(true) => p.geodesic_area_unsigned(),
                            Some(false) => 0.0,
                            None => p.intersection(&area_poly).geodesic_area_unsigned(),
                        };
                        j["properties"]["intersection_area_m2"] = json!((a * 10.0).round() / 10.0);
                    }
                }
                j
            })
            .collect();
        let more = hits.len() > plan.offset + page.len();
        entry.insert(
            "features".into(),
            json!({"type": "FeatureCollection", "features": page}),
        );
        entry.insert(
            "next".into(),
            if more {
                json!((plan.offset + plan.limit).to_string())
            } else {
                J::Null
            },
        );
        out.insert(name.clone(), J::Object(entry));
    }
    Ok(json!({ "total": total, "layers": out }))
}

#[derive(Deserialize)]
pub struct NearestQuery {
    lon: f64,
    lat: f64,
    layer: String,
    k: Option<usize>,
    /// cql2-text on the layer's properties.
    filter: Option<String>,
}

/// Largest `k` for `/api/nearest`.
pub const NEAREST_MAX_K: usize = 1000;

/// `GET /api/nearest?lon&lat&layer&k`: the k nearest features with
/// `distance_m` (e.g. the cameras nearest an incident).
pub async fn nearest(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    q: Result<Query<NearestQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<J>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_lonlat(q.lon, q.lat)?;
    let k = q.k.unwrap_or(10);
    if k == 0 || k > NEAREST_MAX_K {
        return Err(ApiError::bad_request(format!(
            "k must be 1..={NEAREST_MAX_K}"
        )));
    }
    let c = st.catalog();
    let features = st
        .work
        .run(crate::work::Lane::Heavy, move || {
            nearest_json(&c, &q, k, &who.scope)
        })
        .await??;
    Ok(Json(
        json!({"type": "FeatureCollection", "features": features}),
    ))
}

fn nearest_json(
    c: &Catalog,
    q: &NearestQuery,
    k: usize,
    scope: &[String],
) -> Result<Vec<J>, ApiError> {
    let scope = crate::index::scope::Scope::of(c, scope);
    let l = c
        .layer(&q.layer)
        .ok_or_else(|| ApiError::not_found(format!("unknown layer {:?}", q.layer)))?;
    let filter = match &q.filter {
        Some(s) => Some(
            crate::query::filter::parse(s, crate::query::filter::Lang::Text)
                .and_then(|e| crate::query::filter::compile(&e, &l.def))
                .map_err(ApiError::bad_request)?,
        ),
        None => None,
    };
    let found = crate::query::nearest(l, Point::new(q.lon, q.lat), k, |i| {
        crate::work::checkpoint();
        if scope.as_ref().is_some_and(|s| !s.holds(l, i)) {
            return false;
        }
        filter.as_ref().is_none_or(|f| {
            let feat = &l.features[i as usize];
            f.matches(feat.id, &feat.geometry, &feat.properties)
        })
    });
    let features: Vec<J> = found
        .into_iter()
        .map(|(i, d)| {
            let mut j = l.features[i as usize].to_geojson(&l.def);
            j["properties"]["distance_m"] = json!((d * 100.0).round() / 100.0);
            j
        })
        .collect();
    Ok(features)
}
