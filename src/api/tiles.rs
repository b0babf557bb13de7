//! Tiles, TileJSON and styles over HTTP.

use super::App;
use super::error::ApiError;
use crate::tiles::cache::TileKey;
use crate::tiles::mercator::TileId;
use crate::tiles::{render_scoped, resolve_layers};
use crate::work::Lane;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as J, json};
use std::sync::Arc;

type S = State<Arc<App>>;

pub const MVT_CONTENT_TYPE: &str = "application/vnd.mapbox-vector-tile";
/// The zoom TileJSON advertises as the maximum: past it clients overzoom
/// (every layer is complete at 16: micro-grids from 15, addresses from 16).
pub const TILEJSON_MAXZOOM: u8 = 16;

/// This server's origin as the client addressed it (for TileJSON and
/// styles), honouring a proxy's `X-Forwarded-Proto`/`-Host`.
pub fn origin(headers: &HeaderMap) -> String {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let proto = h("x-forwarded-proto").unwrap_or("http");
    let host = h("x-forwarded-host")
        .or(h("host"))
        .unwrap_or("127.0.0.1:8080");
    format!("{proto}://{host}")
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|part| {
                let mut it = part.trim().split(';');
                let enc = it.next().unwrap_or("").trim();
                let q0 = it.any(|p| p.trim().replace(' ', "") == "q=0");
                (enc == "gzip" || enc == "*") && !q0
            })
        })
}

fn parse_u32(what: &str, s: &str) -> Result<u32, ApiError> {
    s.parse::<u32>()
        .map_err(|_| ApiError::bad_request(format!("{what} {s:?} is not a non-negative integer")))
}

/// `GET /tiles/{layers}/{z}/{x}/{y}.mvt`
pub async fn tile(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    Path((layers, z, x, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let y = file.strip_suffix(".mvt").ok_or_else(|| {
        ApiError::not_found("tiles are addressed as /tiles/{layers}/{z}/{x}/{y}.mvt")
    })?;
    let t = TileId::new(parse_u32("z", &z)?, parse_u32("x", &x)?, parse_u32("y", y)?)
        .map_err(ApiError::bad_request)?;
    let names = resolve_layers(&st.catalog(), &layers).map_err(ApiError::not_found)?;
    // A scoped principal's tiles are its own (cached apart, by scope).
    let mut layers_key = names.join(",");
    if !who.scope.is_empty() {
        layers_key.push('|');
        layers_key.push_str(&who.scope.join(","));
    }
    let key = TileKey {
        layers: layers_key.into(),
        tile: t,
    };
    // A tile rendered from a snapshot that a change has since replaced is
    // rendered again (see TileCache); a few rounds at most under heavy
    // writes, after which the last render is served as it is.
    let mut entry = None;
    for _ in 0..4 {
        let generation = st.tiles.generation();
        let cat = st.catalog();
        let (cfg, names) = (st.config.tiles.clone(), names.clone());
        let work = st.work.clone();
        let who = who.clone();
        // Detached: other requests for the same tile may be waiting on it.
        let job = async move {
            work.run_detached(Lane::Tiles, move || {
                let sc = crate::index::scope::Scope::of(&cat, &who.scope);
                render_scoped(&cat, &cfg, &names, t, sc.as_ref())
            })
            .await
        };
        let got = st.tiles.get_or_render(key.clone(), generation, job).await?;
        if got.is_some() {
            entry = got;
            break;
        }
    }
    let entry = match entry {
        Some(e) => e,
        None => {
            let cat = st.catalog();
            let cfg = st.config.tiles.clone();
            let raw = st
                .work
                .run(Lane::Tiles, move || {
                    let sc = crate::index::scope::Scope::of(&cat, &who.scope);
                    render_scoped(&cat, &cfg, &names, t, sc.as_ref())
                })
                .await?;
            Arc::new(crate::tiles::cache::TileEntry::new(raw, 0))
        }
    };
    if entry.raw.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let etag = HeaderValue::from_str(&entry.etag).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut res = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.trim() == entry.etag || e.trim() == "*")
        }) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(&headers) {
        let mut r = Response::new(Body::from(entry.gzip.clone()));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        Response::new(Body::from(entry.raw.clone()))
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(MVT_CONTENT_TYPE),
    );
    h.insert(header::ETAG, etag);
    // Revalidate every time: tiles change when data does, and a 304 costs
    // a few bytes.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Ok(res)
}

/// `GET /tiles/{layers}.json`: TileJSON 3.0.0.
pub async fn tilejson(
    State(st): S,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<J>, ApiError> {
    let spec = file
        .strip_suffix(".json")
        .ok_or_else(|| ApiError::not_found("TileJSON is at /tiles/{layers}.json"))?;
    let cat = st.catalog();
    let names = resolve_layers(&cat, spec).map_err(ApiError::not_found)?;
    let origin = origin(&headers);
    let mut bounds: Option<[f64; 4]> = None;
    let mut vector_layers = Vec::new();
    for n in &names {
        let Some(l) = cat.layer(n) else { continue };
        if let Some(b) = l.bbox {
            let r = [b.min().x, b.min().y, b.max().x, b.max().y];
            bounds = Some(match bounds {
                None => r,
                Some(a) => [
                    a[0].min(r[0]),
                    a[1].min(r[1]),
                    a[2].max(r[2]),
                    a[3].max(r[3]),
                ],
            });
        }
        let mut fields = serde_json::Map::new();
        for p in &l.def.properties {
            let ty = match p.ty {
                crate::model::PropType::Int | crate::model::PropType::Float => "Number",
                crate::model::PropType::Bool => "Boolean",
                _ => "String",
            };
            fields.insert(p.name.clone(), J::String(ty.into()));
        }
        if st.config.tiles.cluster_below.iter().any(|(c, _)| c == n) {
            fields.insert("cluster".into(), J::String("Boolean".into()));
            fields.insert("count".into(), J::String("Number".into()));
        }
        vector_layers.push(json!({
            "id": n,
            "description": l.def.title,
            "minzoom": l.def.minzoom,
            "maxzoom": l.def.maxzoom.min(TILEJSON_MAXZOOM),
            "fields": fields,
        }));
        if n == crate::model::builtin::GRIDS {
            vector_layers.push(json!({
                "id": crate::tiles::GRID_LABELS,
                "description": "网格标注点 grid label points (one per grid)",
                "minzoom": 0,
                "maxzoom": TILEJSON_MAXZOOM,
                "fields": {"code": "String", "name": "String", "level": "String", "kind": "String"},
            }));
        }
    }
    let b = bounds.unwrap_or([-180.0, -85.0, 180.0, 85.0]);
    let spec_path = names.join(",");
    Ok(axum::Json(json!({
        "tilejson": "3.0.0",
        "name": format!("onemap {spec_path}"),
        "description": "一张图 onemap vector tiles",
        "attribution": "onemap",
        "scheme": "xyz",
        "tiles": [format!("{origin}/tiles/{spec_path}/{{z}}/{{x}}/{{y}}.mvt")],
        "minzoom": 0,
        "maxzoom": TILEJSON_MAXZOOM,
        "bounds": b,
        "center": [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, 11],
        "vector_layers": vector_layers,
    })))
}

/// `GET /styles/{name}.json`: a MapLibre style from `styles/` with
/// `{{origin}}` replaced by this server's origin.
pub async fn style(
    State(st): S,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = file
        .strip_suffix(".json")
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or_else(|| ApiError::not_found(format!("no style {file:?}")))?;
    let path = st.config.styles_dir.join(format!("{name}.json"));
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|_| ApiError::not_found(format!("no style named {name:?}")))?;
    let filled = text.replace("{{origin}}", &origin(&headers));
    let v: J = serde_json::from_str(&filled)
        .map_err(|e| ApiError::internal(format!("style {name} is not valid JSON: {e}")))?;
    let mut res = axum::Json(v).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(res)
}
