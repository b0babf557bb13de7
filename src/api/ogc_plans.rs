//! OGC API – Features Part 4 (create, replace, update, delete) on the draft
//! grids of a plan: the collection `plan-{id}-grids`, items addressed by
//! grid code. QGIS 3.32+ edits it as any transactional OAPIF layer.
//!
//! Every write is one plan operation (so undoable, logged with its author).
//! Responses carry `ETag` (the draft grid's store id and version); a
//! request with `If-Match` that does not match is a 412 and changes
//! nothing; one without it applies (QGIS does not send it). Published
//! collections are read-only: writes there are 405.

use super::App;
use super::error::ApiError;
use super::plans::book;
use super::tiles::origin;
use crate::plan::{OpBody, Plan};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use geo::{BoundingRect, Intersects};
use serde_json::{Value as J, json};
use std::sync::Arc;

type S = State<Arc<App>>;

const GEOJSON: &str = "application/geo+json";
const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";
const ITEMS_ALLOW: &str = "GET, HEAD, POST, OPTIONS";
const ITEM_ALLOW: &str = "GET, HEAD, PUT, PATCH, DELETE, OPTIONS";
const READ_ONLY: &str = "GET, HEAD, OPTIONS";

/// The plan id of a collection id `plan-{id}-grids`.
pub fn plan_of(collection: &str) -> Option<i64> {
    collection
        .strip_prefix("plan-")?
        .strip_suffix("-grids")?
        .parse()
        .ok()
}

pub fn collection_id(plan: i64) -> String {
    format!("plan-{plan}-grids")
}

/// A plan's collection document.
pub fn collection_json(base: &str, p: &Plan) -> J {
    let id = collection_id(p.id);
    let title = format!("方案 {}：{} (draft grids of plan {})", p.id, p.title, p.id);
    let mut extent = serde_json::Map::new();
    if let Some(r) = p.bbox {
        extent.insert(
            "spatial".into(),
            json!({"bbox": [[r.min().x, r.min().y, r.max().x, r.max().y]], "crs": CRS84}),
        );
    }
    json!({
        "id": id,
        "title": title,
        "description": format!("{} draft grids, {}; editable while the plan is a draft", p.grids.len(), p.status),
        "itemType": "feature",
        "crs": [CRS84],
        "storageCrs": CRS84,
        "extent": extent,
        "links": [
            {"href": format!("{base}/collections/{id}"), "rel": "self", "type": "application/json", "title": title},
            {"href": format!("{base}/collections/{id}/items"), "rel": "items", "type": GEOJSON, "title": "draft grids"},
        ]
    })
}

/// Draft plans as collections (for `/ogc/collections`).
pub async fn collections(st: &App, who: &crate::auth::Principal, base: &str) -> Vec<J> {
    match st.plans.book(st.store.as_ref()).await {
        Ok(b) => b
            .plans
            .values()
            .filter(|p| p.is_draft() && visible(who, p))
            .map(|p| collection_json(base, p))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether `who` may see plan `p`: another scope's plan is as if absent to
/// a scoped principal (reads and writes alike).
fn visible(who: &crate::auth::Principal, p: &Plan) -> bool {
    p.scope.iter().all(|c| who.covers(c))
}

/// Plan `pid` of the book, when `who` may see it.
fn visible_plan<'a>(
    b: &'a crate::plan::Book,
    who: &crate::auth::Principal,
    pid: i64,
) -> Result<&'a Plan, ApiError> {
    let p = b.get(pid)?;
    if visible(who, p) {
        Ok(p)
    } else {
        Err(ApiError::not_found(format!("no plan {pid}")))
    }
}

fn etag(p: &Plan, code: &str) -> Option<String> {
    p.grids
        .get(code)
        .map(|d| format!("\"{}-{}\"", d.fid, d.version))
}

fn feature(st: &App, base: &str, p: &Plan, code: &str) -> Option<J> {
    let cat = st.catalog();
    let def = &cat.layer(crate::model::builtin::GRIDS)?.def;
    let d = p.grids.get(code)?;
    let mut j = d.grid.to_geojson(def, code, &[]);
    let cid = collection_id(p.id);
    j["links"] = json!([
        {"href": format!("{base}/collections/{cid}/items/{code}"), "rel": "self", "type": GEOJSON},
        {"href": format!("{base}/collections/{cid}"), "rel": "collection", "type": "application/json"},
    ]);
    Some(j)
}

fn with_etag(mut r: Response, tag: Option<String>) -> Response {
    if let Some(v) = tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// A GeoJSON answer with its `Link` header ([`super::ogc::json_response`]);
/// draft grids answer in CRS84 only (their collection lists no other).
fn geojson_response(status: StatusCode, j: J) -> Response {
    let mut r = super::ogc::json_response(j, GEOJSON);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(super::ogc::CONTENT_CRS, super::ogc::OutCrs::CRS84.header());
    r
}

/// `GET /ogc/collections/plan-{id}-grids`.
pub async fn collection(
    st: &App,
    who: &crate::auth::Principal,
    headers: &HeaderMap,
    pid: i64,
) -> Result<Response, ApiError> {
    let base = format!("{}/ogc", origin(headers));
    let b = book(st).await?;
    let p = visible_plan(&b, who, pid)?;
    Ok(super::ogc::json_response(
        collection_json(&base, p),
        "application/json",
    ))
}

/// `GET /ogc/collections/plan-{id}-grids/items` (bbox, limit, offset).
pub async fn items(
    st: &App,
    who: &crate::auth::Principal,
    headers: &HeaderMap,
    pid: i64,
    q: &std::collections::BTreeMap<&str, &str>,
) -> Result<Response, ApiError> {
    let base = format!("{}/ogc", origin(headers));
    let limit: usize = match q.get("limit") {
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=crate::query::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit={v:?}: 1 to {}", crate::query::MAX_LIMIT))
            })?,
        None => crate::query::MAX_LIMIT,
    };
    let offset: usize = match q.get("offset") {
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::bad_request(format!("offset={v:?} is not a count")))?,
        None => 0,
    };
    let bbox = match q.get("bbox") {
        Some(v) => Some(super::ogc::parse_bbox(v).map_err(ApiError::bad_request)?),
        None => None,
    };
    let b = book(st).await?;
    let p = visible_plan(&b, who, pid)?;
    let codes: Vec<&String> = p
        .grids
        .iter()
        .filter(|(_, d)| {
            bbox.is_none_or(|r| {
                d.grid
                    .geometry
                    .bounding_rect()
                    .is_some_and(|g| g.intersects(&r))
            })
        })
        .map(|(c, _)| c)
        .collect();
    let matched = codes.len();
    let page: Vec<J> = codes
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|c| feature(st, &base, p, c))
        .collect();
    let cid = collection_id(pid);
    let mut links = vec![
        json!({"href": format!("{base}/collections/{cid}/items"), "rel": "self", "type": GEOJSON}),
    ];
    if offset + page.len() < matched {
        let mut next = format!(
            "{base}/collections/{cid}/items?offset={}&limit={limit}",
            offset + page.len()
        );
        if let Some(v) = q.get("bbox") {
            next.push_str(&format!("&bbox={v}"));
        }
        links.push(json!({"href": next, "rel": "next", "type": GEOJSON}));
    }
    Ok(geojson_response(
        StatusCode::OK,
        json!({
            "type": "FeatureCollection",
            "numberMatched": matched,
            "numberReturned": page.len(),
            "links": links,
            "features": page,
        }),
    ))
}

/// `GET /ogc/collections/plan-{id}-grids/items/{code}`.
pub async fn item(
    st: &App,
    who: &crate::auth::Principal,
    headers: &HeaderMap,
    pid: i64,
    code: &str,
) -> Result<Response, ApiError> {
    let base = format!("{}/ogc", origin(headers));
    let b = book(st).await?;
    let p = visible_plan(&b, who, pid)?;
    let f = feature(st, &base, p, code)
        .ok_or_else(|| ApiError::not_found(format!("no grid {code} in plan {pid}")))?;
    Ok(with_etag(
        geojson_response(StatusCode::OK, f),
        etag(p, code),
    ))
}

fn allow(methods: &'static str) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(methods));
    r
}

fn read_only(id: &str) -> Response {
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "collection {id:?} is read-only: edit grids in a plan (POST /api/plans), then publish"
        ),
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(READ_ONLY));
    r
}

/// What a collection allows: writes on a draft plan's grids only.
async fn allowed(st: &App, id: &str, on_items: bool) -> Response {
    let writable = if on_items { ITEMS_ALLOW } else { ITEM_ALLOW };
    match plan_of(id) {
        Some(pid) => match book(st).await.and_then(|b| Ok(b.get(pid)?.is_draft())) {
            Ok(true) => allow(writable),
            Ok(false) => allow(READ_ONLY),
            Err(e) => e.into_response(),
        },
        None if st.catalog().layer(id).is_some() => allow(READ_ONLY),
        None => ApiError::not_found(format!("no collection {id:?}")).into_response(),
    }
}

/// `OPTIONS …/items`.
pub async fn options_items(State(st): S, Path(id): Path<String>) -> Response {
    allowed(&st, &id, true).await
}

/// `OPTIONS …/items/{code}`.
pub async fn options_item(State(st): S, Path((id, _)): Path<(String, String)>) -> Response {
    allowed(&st, &id, false).await
}

fn parse_body(body: &Bytes) -> Result<J, ApiError> {
    let j: J = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if !j.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a GeoJSON Feature object",
        ));
    }
    Ok(j)
}

/// Runs one write under the book's lock, honouring `If-Match` for an
/// existing item, and answers with the item (and its new ETag).
async fn write(
    st: &App,
    headers: &HeaderMap,
    who: &crate::auth::Principal,
    pid: i64,
    code: Option<&str>,
    op: impl FnOnce(&Plan) -> Result<(OpBody, String), ApiError>,
    created: bool,
) -> Response {
    let base = format!("{}/ogc", origin(headers));
    let mut b = match book(st).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let p = match b.get(pid) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Another scope's plan is as if absent to a scoped planner.
    if !visible(who, p) {
        return ApiError::not_found(format!("no plan {pid}")).into_response();
    }
    if !p.is_draft() {
        return read_only(&collection_id(pid));
    }
    if let Some(code) = code {
        let Some(current) = etag(p, code) else {
            return ApiError::not_found(format!("no grid {code} in plan {pid}")).into_response();
        };
        if let Some(want) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
            let ok = want.trim() == "*"
                || want
                    .split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == current);
            if !ok {
                return ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    format!("grid {code} of plan {pid} changed: its ETag is now {current}"),
                )
                .into_response();
            }
        }
    }
    let (op, target) = match op(p) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let author = who.who.clone();
    let cat = st.catalog();
    if let Err(e) = b.operate(st.store.as_ref(), &cat, pid, op, &author).await {
        return ApiError::from(e).into_response();
    }
    let p = match b.get(pid) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match feature(st, &base, p, &target) {
        Some(f) => {
            let mut r = with_etag(
                geojson_response(
                    if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    },
                    f,
                ),
                etag(p, &target),
            );
            if created
                && let Ok(v) = HeaderValue::from_str(&format!(
                    "{base}/collections/{}/items/{target}",
                    collection_id(pid)
                ))
            {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// `POST …/items`: a new grid in the plan.
pub async fn post_item(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(pid) = plan_of(&id) else {
        return read_only(&id);
    };
    let j = match parse_body(&body) {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    write(
        &st,
        &headers,
        &who,
        pid,
        None,
        |p| {
            let code = crate::plan::new_item_code(p, &st.catalog(), &j).map_err(ApiError::from)?;
            Ok((
                OpBody::Put {
                    code: code.clone(),
                    feature: j,
                    create: true,
                },
                code,
            ))
        },
        true,
    )
    .await
}

/// PUT, PATCH and DELETE of an existing item: `op` makes the plan
/// operation from the code and the body (none for DELETE).
async fn write_item(
    st: &App,
    headers: &HeaderMap,
    who: &crate::auth::Principal,
    id: &str,
    code: String,
    body: Option<Bytes>,
    op: fn(String, J) -> OpBody,
) -> Response {
    let Some(pid) = plan_of(id) else {
        return read_only(id);
    };
    let j = match body.as_ref().map(parse_body).transpose() {
        Ok(j) => j.unwrap_or(J::Null),
        Err(e) => return e.into_response(),
    };
    let c = code.clone();
    write(
        st,
        headers,
        who,
        pid,
        Some(&code),
        move |_| Ok((op(c.clone(), j), c)),
        false,
    )
    .await
}

/// `PUT …/items/{code}`: replace a draft grid.
pub async fn put_item(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    headers: HeaderMap,
    Path((id, code)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    write_item(
        &st,
        &headers,
        &who,
        &id,
        code,
        Some(body),
        |code, feature| OpBody::Put {
            code,
            feature,
            create: false,
        },
    )
    .await
}

/// `PATCH …/items/{code}`: JSON merge patch of a draft grid.
pub async fn patch_item(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    headers: HeaderMap,
    Path((id, code)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    write_item(&st, &headers, &who, &id, code, Some(body), |code, patch| {
        OpBody::Patch { code, patch }
    })
    .await
}

/// `DELETE …/items/{code}`.
pub async fn delete_item(
    State(st): S,
    super::auth::Who(who): super::auth::Who,
    headers: HeaderMap,
    Path((id, code)): Path<(String, String)>,
) -> Response {
    let r = write_item(&st, &headers, &who, &id, code, None, |code, _| {
        OpBody::Remove { code }
    })
    .await;
    if r.status().is_success() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        r
    }
}
