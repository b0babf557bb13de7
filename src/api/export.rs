//! Query downloads: `GET /api/query.csv?q=` and `/api/query.geojson?q=`,
//! or the same paths with `POST` and the query as the JSON body (a drawn
//! polygon of thousands of vertices does not fit in a URL).
//!
//! `q` is the JSON of a query (as `POST /api/query` takes). The answer is
//! streamed in chunks of rows built from the catalog snapshot, so 400,000
//! rows never sit in memory as one body: the server holds the matching
//! feature indexes (4 bytes each) and the snapshot.

use super::App;
use super::auth::Who;
use super::error::ApiError;
use crate::auth::Principal;
use crate::index::scope::Scope;
use crate::index::{Catalog, NO_GRID, representative_point};
use crate::model::{GridLevel, Value};
use crate::query::{Request, Selector};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value as J, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// Rows per streamed chunk.
const CHUNK: usize = 2000;

#[derive(Deserialize)]
pub struct ExportParams {
    q: String,
}

type Params = Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>;
type JsonBody = Result<axum::Json<Request>, axum::extract::rejection::JsonRejection>;

fn request_of(params: Params) -> Result<Request, ApiError> {
    let Query(p) = params.map_err(|e| {
        ApiError::bad_request(format!("{}; pass the query as q=<JSON>", e.body_text()))
    })?;
    serde_json::from_str(&p.q)
        .map_err(|e| ApiError::bad_request(format!("q is not a valid query: {e}")))
}

/// Each chunk of an export is built on the heavy lane too; a failure
/// (the pool full, the budget spent) ends the download there (`end` is
/// past the last row).
fn stream_item(
    chunk: Result<(Bytes, usize), crate::work::WorkError>,
    end: usize,
) -> (Result<Bytes, std::io::Error>, usize) {
    match chunk {
        Ok((b, next)) => (Ok(b), next),
        Err(e) => {
            tracing::warn!("export stopped: {e}");
            (Err(std::io::Error::other(e.to_string())), end)
        }
    }
}

/// The grid codes of a feature at the levels below the district.
fn grid_codes(cat: &Catalog, layer: usize, i: u32) -> [String; 4] {
    let mut out: [String; 4] = Default::default();
    let n = cat.layers[layer]
        .grid_of
        .get(i as usize)
        .copied()
        .unwrap_or(NO_GRID);
    if n == NO_GRID {
        return out;
    }
    let code = &cat.grids.nodes[n as usize].code;
    for (k, level) in [
        GridLevel::Street,
        GridLevel::Community,
        GridLevel::Grid,
        GridLevel::Micro,
    ]
    .into_iter()
    .enumerate()
    {
        out[k] = code
            .ancestor(level)
            .map(|c| c.to_string())
            .unwrap_or_default();
    }
    out
}

fn attachment(res: &mut Response, content_type: &'static str, name: &str) {
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `GET /api/query.csv?q=`: one layer as CSV (UTF-8 with a BOM, so Excel
/// reads Chinese text right): id, lon, lat (the representative point), the
/// layer's properties, and the street/community/grid/micro codes.
pub async fn csv(
    State(st): State<Arc<App>>,
    Who(who): Who,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    params: Params,
) -> Result<Response, ApiError> {
    csv_of(&st, &who, addr, request_of(params)?).await
}

/// `POST /api/query.csv` with the query as the body.
pub async fn csv_post(
    State(st): State<Arc<App>>,
    Who(who): Who,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let axum::Json(req) = body?;
    csv_of(&st, &who, addr, req).await
}

/// What the audit trail keeps of a query: its area (shortened), layers and
/// filter.
pub fn audit_detail(q: &Request) -> J {
    let mut area = serde_json::to_string(&q.area).unwrap_or_default();
    if area.len() > 2000 {
        let mut cut = 2000;
        while !area.is_char_boundary(cut) {
            cut -= 1;
        }
        area.truncate(cut);
        area.push('…');
    }
    json!({ "area": area, "layers": q.layers, "filter": q.filter })
}

/// Records a query or export of personal data (安全审计).
pub async fn audit(
    st: &App,
    who: &Principal,
    addr: SocketAddr,
    action: &str,
    mut detail: J,
    rows: usize,
) {
    detail["rows"] = json!(rows);
    let target = detail["layers"].to_string();
    st.audit
        .record(crate::auth::audit::entry(
            &who.who,
            who.role.as_str(),
            action,
            "ok",
            &addr.ip().to_string(),
            &target,
            detail,
        ))
        .await;
}

async fn csv_of(
    st: &App,
    who: &Principal,
    addr: SocketAddr,
    req: Request,
) -> Result<Response, ApiError> {
    let cat = st.catalog();
    let cat2 = cat.clone();
    let detail = audit_detail(&req);
    let scope = who.scope.clone();
    let (name, li, hits) = st
        .work
        .run(crate::work::Lane::Heavy, move || {
            let mut plan = req.plan(&cat2).map_err(ApiError::bad_request)?;
            plan.scope = Scope::of(&cat2, &scope).map(Arc::new);
            if plan.layers.len() != 1 {
                return Err(ApiError::bad_request(format!(
                    "a CSV export holds one layer; this query names {} (use query.geojson for several)",
                    plan.layers.len()
                )));
            }
            let name = plan.layers[0].clone();
            let li = cat2
                .layers
                .iter()
                .position(|l| l.def.name == name)
                .ok_or_else(|| ApiError::bad_request("unknown layer"))?;
            let hits = plan.select(&Selector::new(&plan.area), 0, &cat2.layers[li]);
            Ok((name, li, hits))
        })
        .await??;
    let hits = Arc::new(hits);
    let work = st.work.clone();
    tracing::info!(layer = %name, rows = hits.len(), "CSV export");
    audit(st, who, addr, "export", detail, hits.len()).await;
    let stream = futures::stream::unfold(0usize, move |pos| {
        let (cat, hits, work) = (cat.clone(), hits.clone(), work.clone());
        async move {
            if pos > hits.len() {
                return None;
            }
            let end = hits.len() + 1;
            let chunk = work
                .run(crate::work::Lane::Heavy, move || {
                    let l = &cat.layers[li];
                    let mut start = Vec::with_capacity(CHUNK * 64);
                    if pos == 0 {
                        start.extend_from_slice("\u{feff}".as_bytes());
                    }
                    let mut w = csv::Writer::from_writer(start);
                    if pos == 0 {
                        let mut header: Vec<String> = vec!["id".into(), "lon".into(), "lat".into()];
                        header.extend(l.def.properties.iter().map(|p| p.name.clone()));
                        header.extend(
                            ["street_code", "community_code", "grid_code", "micro_code"]
                                .map(String::from),
                        );
                        let _ = w.write_record(&header);
                    }
                    for &i in hits.iter().skip(pos).take(CHUNK) {
                        crate::work::checkpoint();
                        let f = &l.features[i as usize];
                        let p = representative_point(&f.geometry);
                        let mut row: Vec<String> = vec![
                            f.id.to_string(),
                            p.map(|p| p.x().to_string()).unwrap_or_default(),
                            p.map(|p| p.y().to_string()).unwrap_or_default(),
                        ];
                        row.extend(f.properties.iter().map(|v| match v {
                            Value::Null => String::new(),
                            Value::Text(s) => s.to_string(),
                            other => other.to_json().to_string(),
                        }));
                        row.extend(grid_codes(&cat, li, i));
                        let _ = w.write_record(&row);
                    }
                    let buf = w.into_inner().unwrap_or_default();
                    let next = if pos + CHUNK >= hits.len() {
                        hits.len() + 1
                    } else {
                        pos + CHUNK
                    };
                    (Bytes::from(buf), next)
                })
                .await;
            Some(stream_item(chunk, end))
        }
    });
    // Fused: the compression layer polls once more after the end.
    let mut res = Response::new(Body::from_stream(futures::StreamExt::fuse(stream)));
    attachment(
        &mut res,
        "text/csv; charset=utf-8",
        &format!("onemap-{name}.csv"),
    );
    Ok(res)
}

/// `GET /api/query.geojson?q=`: every matching feature of every layer named,
/// as one FeatureCollection; each feature carries its `layer` and grid codes.
pub async fn geojson(
    State(st): State<Arc<App>>,
    Who(who): Who,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    params: Params,
) -> Result<Response, ApiError> {
    geojson_of(&st, &who, addr, request_of(params)?).await
}

/// `POST /api/query.geojson` with the query as the body.
pub async fn geojson_post(
    State(st): State<Arc<App>>,
    Who(who): Who,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let axum::Json(req) = body?;
    geojson_of(&st, &who, addr, req).await
}

async fn geojson_of(
    st: &App,
    who: &Principal,
    addr: SocketAddr,
    req: Request,
) -> Result<Response, ApiError> {
    let cat = st.catalog();
    let cat2 = cat.clone();
    let detail = audit_detail(&req);
    let scope = who.scope.clone();
    let (layers, parts) = st
        .work
        .run(crate::work::Lane::Heavy, move || {
            let mut plan = req.plan(&cat2).map_err(ApiError::bad_request)?;
            plan.scope = Scope::of(&cat2, &scope).map(Arc::new);
            let selector = Selector::new(&plan.area);
            let mut parts: Vec<(usize, u32)> = Vec::new();
            for (k, name) in plan.layers.iter().enumerate() {
                if let Some(li) = cat2.layers.iter().position(|l| &l.def.name == name) {
                    parts.extend(
                        plan.select(&selector, k, &cat2.layers[li])
                            .into_iter()
                            .map(|i| (li, i)),
                    );
                }
            }
            Ok::<_, ApiError>((plan.layers, parts))
        })
        .await??;
    let work = st.work.clone();
    tracing::info!(layers = ?layers, rows = parts.len(), "GeoJSON export");
    audit(st, who, addr, "export", detail, parts.len()).await;
    let parts = Arc::new(parts);
    let stream = futures::stream::unfold(0usize, move |pos| {
        let (cat, parts, work) = (cat.clone(), parts.clone(), work.clone());
        async move {
            if pos > parts.len() {
                return None;
            }
            let end = parts.len() + 1;
            let chunk = work
                .run(crate::work::Lane::Heavy, move || {
                    let mut buf = Vec::with_capacity(CHUNK * 256);
                    if pos == 0 {
                        buf.extend_from_slice(b"{\"type\":\"FeatureCollection\",\"features\":[");
                    }
                    for (k, &(li, i)) in parts.iter().enumerate().skip(pos).take(CHUNK) {
                        crate::work::checkpoint();
                        let l = &cat.layers[li];
                        let mut j = l.features[i as usize].to_geojson(&l.def);
                        j["properties"]["layer"] = serde_json::Value::String(l.def.name.clone());
                        let [s, c, g, m] = grid_codes(&cat, li, i);
                        j["properties"]["micro_code"] = serde_json::Value::String(m);
                        j["properties"]["grid_code"] = serde_json::Value::String(g);
                        j["properties"]["community_code"] = serde_json::Value::String(c);
                        j["properties"]["street_code"] = serde_json::Value::String(s);
                        if k > 0 {
                            buf.push(b',');
                        }
                        let _ = serde_json::to_writer(&mut buf, &j);
                    }
                    let next = if pos + CHUNK >= parts.len() {
                        buf.extend_from_slice(b"]}");
                        parts.len() + 1
                    } else {
                        pos + CHUNK
                    };
                    (Bytes::from(buf), next)
                })
                .await;
            Some(stream_item(chunk, end))
        }
    });
    // Fused: the compression layer polls once more after the end.
    let mut res = Response::new(Body::from_stream(futures::StreamExt::fuse(stream)));
    attachment(&mut res, "application/geo+json", "onemap-query.geojson");
    Ok(res)
}
