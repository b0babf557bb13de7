//! HTTP for the live path: `POST /api/events`, `PATCH /api/events/{id}`,
//! `GET /api/live` (Server-Sent Events) and `GET /api/stats`.

use super::App;
use super::auth::Who;
use super::error::ApiError;
use crate::live::{Refusal, event_message, ingest, sse_frame};
use crate::model::{GridCode, GridLevel};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value as J, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

type S = State<Arc<App>>;

/// Most change-log rows replayed to a reconnecting client; further behind,
/// it is told to reload (`reset`).
const MAX_REPLAY: i64 = 100_000;

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::BadRequest(m) => ApiError::bad_request(m),
            Refusal::NotFound(m) => ApiError::not_found(m),
            Refusal::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            Refusal::Unavailable(m) => ApiError::unavailable(m),
            Refusal::Failed(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

/// Who is writing, for the change log: the authenticated principal. A
/// machine token (the 12345 bridge) may name the person who acted in its
/// source system in `X-Onemap-User`; it is recorded beside the token's
/// name (`token:hotline[张三]`), never instead of it.
pub fn author(who: &crate::auth::Principal, headers: &HeaderMap) -> String {
    match (&who.via, user(headers)) {
        (crate::auth::Via::Token, Some(person)) => {
            let person: String = person.chars().filter(|c| !matches!(c, '[' | ']')).collect();
            format!("{}[{person}]", who.who)
        }
        _ => who.who.clone(),
    }
}

/// The `X-Onemap-User` header, decoded, when there is one.
fn user(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-onemap-user")
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .map(|raw| {
            let decoded: String = form_urlencoded::parse(format!("u={raw}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            decoded
                .trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
}

/// `POST /api/events`: one work order (a GeoJSON Feature) or up to 1,000
/// (a FeatureCollection), idempotent by `id`. 201 when anything was
/// created, 200 when every order was already there unchanged.
pub async fn post_events(
    State(st): S,
    Who(who): Who,
    headers: HeaderMap,
    body: Result<Json<J>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let orders = ingest::parse_batch(&body).map_err(ApiError::bad_request)?;
    if !who.scope.is_empty() {
        // A scoped operator's orders lie in its grids; the batch is refused
        // whole otherwise (nothing is written).
        let cat = st.catalog();
        for o in &orders {
            let n = cat.grids.locate(o.point);
            let inside =
                n != crate::index::NO_GRID && who.covers(cat.grids.nodes[n as usize].code.as_str());
            if !inside {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "order {:?} lies outside your scope ({})",
                        o.ext_id,
                        who.scope.join(", ")
                    ),
                ));
            }
        }
    }
    let done = st.live.ingest(orders, author(&who, &headers)).await?;
    let status = if done.created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"seq": done.seq, "results": done.results})),
    )
        .into_response())
}

/// `PATCH /api/events/{id}`: a status change (forward only) and/or the
/// department.
pub async fn patch_event(
    State(st): S,
    Who(who): Who,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<ingest::PatchBody>, JsonRejection>,
) -> Result<Json<J>, ApiError> {
    let Json(body) = body?;
    body.check().map_err(ApiError::bad_request)?;
    if !who.scope.is_empty() {
        // The order's grid, from the catalog (a pass over the orders: off
        // the async workers). An order outside the scope is as if absent.
        let cat = st.catalog();
        let (id2, who2) = (id.clone(), who.clone());
        let inside = st
            .work
            .run(crate::work::Lane::Heavy, move || {
                let Some(l) = cat.layer(crate::model::builtin::EVENTS) else {
                    return false;
                };
                let Some(k) = l.def.prop_index("ext_id") else {
                    return false;
                };
                (0..l.features.len()).any(|i| {
                    crate::work::checkpoint();
                    l.features[i].properties[k].as_str() == Some(id2.as_str())
                        && l.grid_node(i) != crate::index::NO_GRID
                        && who2.covers(cat.grids.nodes[l.grid_node(i) as usize].code.as_str())
                })
            })
            .await?;
        if !inside {
            return Err(ApiError::not_found(format!(
                "no work order {id:?} in your scope"
            )));
        }
    }
    Ok(Json(st.live.patch(id, body, author(&who, &headers)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    /// For clients that cannot set the Last-Event-ID header.
    last_event_id: Option<i64>,
}

/// How long a live stream may stay silent before a comment line keeps
/// proxies and the browser from timing it out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `frames`, with a `: ping` comment after every `every` of silence.
fn with_keep_alive(
    frames: impl Stream<Item = Bytes> + Send + Unpin + 'static,
    every: Duration,
) -> impl Stream<Item = Bytes> + Send + 'static {
    futures::stream::unfold(frames, move |mut frames| async move {
        match tokio::time::timeout(every, frames.next()).await {
            Ok(Some(b)) => Some((b, frames)),
            Ok(None) => None,
            Err(_) => Some((Bytes::from_static(b": ping\n\n"), frames)),
        }
    })
}

/// What a scoped subscriber sees of the stream: orders in its grids,
/// statistics of its grids' areas only, `changed` where its grids are.
struct ScopedView {
    scope: Vec<String>,
    /// The union of its grids' bounding boxes.
    bounds: Option<geo::Rect>,
}

impl ScopedView {
    fn new(cat: &crate::index::Catalog, scope: Vec<String>) -> ScopedView {
        use geo::BoundingRect;
        let mut bounds: Option<geo::Rect> = None;
        for code in &scope {
            if let Some((_, n)) = cat.grids.get(code)
                && let Some(r) = n.geometry.bounding_rect()
            {
                bounds = Some(match bounds {
                    Some(b) => crate::index::rect_union(b, r),
                    None => r,
                });
            }
        }
        ScopedView { scope, bounds }
    }

    fn covers(&self, code: &str) -> bool {
        self.scope.iter().any(|s| code.starts_with(s.as_str()))
    }

    fn frame(&self, m: &crate::live::Msg) -> Option<Bytes> {
        match m.event {
            "event" | "stats" | "changed" => {}
            _ => return Some(m.frame.clone()),
        }
        let mut data: J = serde_json::from_str(&m.data).ok()?;
        match m.event {
            "event" => {
                let g = &data["grids"];
                let deepest = ["micro", "grid", "community", "street"]
                    .iter()
                    .find_map(|l| g[*l].as_str())?;
                self.covers(deepest).then(|| m.frame.clone())
            }
            "stats" => {
                let areas = data.get_mut("areas")?.as_object_mut()?;
                areas.retain(|code, _| self.covers(code));
                if areas.is_empty() {
                    return None;
                }
                Some(sse_frame(m.id, m.event, &data.to_string()))
            }
            _ => {
                let b = data["bbox"].as_array()?;
                let v: Vec<f64> = b.iter().filter_map(J::as_f64).collect();
                let r = self.bounds?;
                let meets = v.len() == 4
                    && v[0] <= r.max().x
                    && v[2] >= r.min().x
                    && v[1] <= r.max().y
                    && v[3] >= r.min().y;
                meets.then(|| m.frame.clone())
            }
        }
    }
}

/// Change-log rows read per page of a replay: one page is in memory at a
/// time, however far back the client is.
const REPLAY_PAGE: i64 = 1000;

/// The stream after `hello`: pages of the log, then the live messages.
enum Phase {
    Replay {
        from: i64,
        slot: crate::live::ReplaySlot,
        rx: tokio::sync::broadcast::Receiver<Arc<crate::live::Msg>>,
        cat: Arc<crate::index::Catalog>,
    },
    Live(std::pin::Pin<Box<dyn Stream<Item = Arc<crate::live::Msg>> + Send>>),
}

/// Where a reconnecting client resumes.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// A fresh stream.
    Fresh,
    /// Replay the rows after this seq.
    After(i64),
    /// Too far behind (or an id from nowhere): reload.
    Reset,
}

/// Decides how to resume from `Last-Event-ID` against the catalog's seq,
/// with checked arithmetic: an id of `i64::MIN` is far behind, not a
/// wrapped difference that streams the whole log.
pub fn resume(last: Option<i64>, seq: i64) -> Resume {
    match last {
        None => Resume::Fresh,
        Some(after) if after < 0 => Resume::Reset,
        Some(after) => match seq.checked_sub(after) {
            Some(behind) if behind <= MAX_REPLAY => Resume::After(after),
            _ => Resume::Reset,
        },
    }
}

/// `GET /api/live`: the live stream. With `Last-Event-ID` (or
/// `?last_event_id=`), first the `event` messages after it, replayed from
/// the change log a page at a time, then the live ones (none twice).
pub async fn live(
    State(st): S,
    Who(who): Who,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<LiveParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let last = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(s) if !s.trim().is_empty() => Some(s.trim().parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("Last-Event-ID {s:?} is not one this server sent"))
        })?),
        _ => q.last_event_id,
    };
    let max = st.config.max_subscribers;
    if st.live.subscribers() >= max {
        return Err(ApiError::unavailable(format!(
            "this server already streams to {max} subscribers; retry shortly or use another server"
        ))
        .retry_after(10));
    }
    // Subscribe before reading the log, so nothing falls between the two.
    let rx = st.live.subscribe();
    let cat = st.catalog();
    // A scoped subscriber's view of each message (None: unscoped).
    let view = (!who.scope.is_empty()).then(|| Arc::new(ScopedView::new(&cat, who.scope.clone())));
    let hello = sse_frame(
        None,
        "hello",
        &json!({
            "seq": cat.seq,
            "subscribers": st.live.subscribers(),
            "store": st.health.message_data()["store"],
        })
        .to_string(),
    );
    let mut first = vec![hello];
    let phase = match resume(last, cat.seq) {
        Resume::Fresh => Phase::Live(Box::pin(st.live.stream(rx, i64::MIN))),
        Resume::Reset => {
            first.push(sse_frame(
                None,
                "reset",
                &json!({"seq": cat.seq, "reason": "too far behind: reload"}).to_string(),
            ));
            Phase::Live(Box::pin(st.live.stream(rx, i64::MIN)))
        }
        // Not behind this server (it may come from one further ahead):
        // nothing to replay, and nothing up to its id to send again.
        Resume::After(after) if after >= cat.seq => {
            Phase::Live(Box::pin(st.live.stream(rx, after)))
        }
        Resume::After(after) => {
            let slot = crate::live::Replays::take(&st, peer.ip()).ok_or_else(|| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "{} replays from {} are already running; retry shortly",
                        crate::live::REPLAYS_PER_CLIENT,
                        peer.ip()
                    ),
                )
                .retry_after(2)
            })?;
            Phase::Replay {
                from: after,
                slot,
                rx,
                cat,
            }
        }
    };
    let st2 = st.clone();
    let rest = futures::stream::unfold(Some(phase), move |phase| {
        let st = st2.clone();
        let view = view.clone();
        async move {
            let frame = |m: &crate::live::Msg| match &view {
                None => Some(m.frame.clone()),
                Some(v) => v.frame(m),
            };
            match phase? {
                Phase::Live(mut s) => {
                    let m = s.next().await?;
                    Some((frame(&m).into_iter().collect(), Some(Phase::Live(s))))
                }
                Phase::Replay {
                    from,
                    slot,
                    rx,
                    cat,
                } => {
                    let rows = match st.store.changes_since(from, REPLAY_PAGE).await {
                        Ok(r) => r,
                        Err(e) => {
                            // The live messages still follow; a client that
                            // misses rows sees the seq jump and reloads.
                            tracing::warn!("replay stopped: change log: {e}");
                            Vec::new()
                        }
                    };
                    let frames: Vec<Bytes> = rows
                        .iter()
                        .filter_map(|c| event_message(c, &cat).and_then(|m| frame(&m)))
                        .collect();
                    let upto = rows.last().map_or(from, |r| r.seq);
                    let next = if rows.len() as i64 == REPLAY_PAGE {
                        Phase::Replay {
                            from: upto,
                            slot,
                            rx,
                            cat,
                        }
                    } else {
                        // Replayed to the end of the log: live from here,
                        // skipping what was just sent.
                        drop(slot);
                        Phase::Live(Box::pin(st.live.stream(rx, upto)))
                    };
                    Some((frames, Some(next)))
                }
            }
        }
    })
    .flat_map(futures::stream::iter);
    let frames = futures::stream::iter(first).chain(rest);
    let body = with_keep_alive(Box::pin(frames), KEEP_ALIVE).map(Ok::<_, Infallible>);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    level: Option<String>,
    parent: Option<String>,
}

/// `GET /api/stats?level=street[&parent=code]`.
pub async fn stats(
    State(st): S,
    Who(who): Who,
    q: Result<Query<StatsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<J>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // A scoped account's statistics are of its own grids: a parent
    // outside is as if it did not exist.
    if let Some(p) = q.parent.as_deref() {
        super::handlers::check_scope(&who, p)?;
    }
    let level = match q.level.as_deref() {
        None => GridLevel::Street,
        Some(s) => GridLevel::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "level {s:?}: use district, street, community, grid or micro"
            ))
        })?,
    };
    let cat = st.catalog();
    let parent = match q.parent.as_deref() {
        None => None,
        Some(p) => {
            let code = GridCode::parse(p).map_err(ApiError::bad_request)?;
            let (n, node) = cat
                .grids
                .get(code.as_str())
                .ok_or_else(|| ApiError::not_found(format!("no grid {p}")))?;
            if node.level.index() >= level.index() {
                return Err(ApiError::bad_request(format!(
                    "parent {p} is a {}; areas of level {level} are not below it",
                    node.level
                )));
            }
            Some(n)
        }
    };
    let out = st
        .work
        .run(crate::work::Lane::Heavy, move || {
            let sc = crate::index::scope::Scope::of(&cat, &who.scope);
            crate::live::stats(&cat, level, parent, sc.as_ref())
        })
        .await?;
    Ok(Json(out))
}
