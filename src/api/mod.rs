//! HTTP: the axum router, shared state, and server start/stop.
//!
//! Handlers are thin: they parse and validate input, read the catalog, and
//! shape JSON. Cross-cutting concerns are tower layers: tracing, gzip,
//! body-size limit, panic → 500, and problem JSON for every error.

pub mod auth;
pub mod error;
mod export;
mod handlers;
mod live;
pub mod ogc;
pub mod ogc_plans;
pub mod plans;
pub mod serve;
pub mod tiles;

pub use crate::app::{App, Config, DEFAULT_BODY_LIMIT, load};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tower_http::services::ServeDir;

/// Every route with the permission it needs per method: the one place
/// permissions are declared (`auth::Routes`; README's matrix lists them).
pub fn routes() -> auth::Routes {
    use crate::auth::Perm::*;
    use axum::http::Method as M;
    use axum::routing::{any, delete, patch, post};
    let g = |p| [(M::GET, p)];
    auth::Routes::default()
        .at("/healthz", &g(Public), get(handlers::healthz))
        .at("/readyz", &g(Public), get(handlers::readyz))
        .at("/api/login", &[(M::POST, Public)], post(auth::login))
        .at("/api/logout", &[(M::POST, Signed)], post(auth::logout))
        .at("/api/me", &g(Signed), get(auth::me))
        .at("/kiosk/{token}", &g(Public), get(auth::kiosk))
        .at(
            "/api/admin/users",
            &[(M::GET, Accounts), (M::POST, Accounts)],
            get(auth::users).post(auth::add_user),
        )
        .at(
            "/api/admin/users/{name}",
            &[(M::PATCH, Accounts)],
            patch(auth::change_user),
        )
        .at(
            "/api/admin/tokens",
            &[(M::GET, Accounts), (M::POST, Accounts)],
            get(auth::tokens).post(auth::create_token),
        )
        .at(
            "/api/admin/tokens/{id}",
            &[(M::DELETE, Accounts)],
            delete(auth::revoke_token),
        )
        .at("/api/audit", &g(Audit), get(auth::audit_page))
        .at("/api/audit.csv", &g(Audit), get(auth::audit_csv))
        .at("/api/layers", &g(View), get(handlers::layers))
        .at("/api/layers/{name}", &g(View), get(handlers::layer))
        .at("/api/grids", &g(View), get(handlers::grids_list))
        .at("/api/grids/{code}", &g(View), get(handlers::grid))
        .at("/api/grids/{code}/history", &g(Plan), get(plans::history))
        .at(
            "/api/grids/{code}/revert",
            &[(M::POST, Plan)],
            post(plans::revert),
        )
        .at(
            "/api/plans",
            &[(M::GET, Plan), (M::POST, Plan)],
            get(plans::list).post(plans::create),
        )
        .at(
            "/api/plans/{id}",
            &[(M::GET, Plan), (M::DELETE, Plan), (M::PATCH, Plan)],
            get(plans::get).delete(plans::discard).patch(plans::rename),
        )
        .at("/api/plans/{id}/ops", &[(M::POST, Plan)], post(plans::ops))
        .at("/api/plans/{id}/validate", &g(Plan), get(plans::validate))
        .at(
            "/api/plans/{id}/publish",
            &[(M::POST, Plan)],
            post(plans::publish_plan),
        )
        .at(
            "/api/locate",
            &[(M::GET, View), (M::POST, View)],
            get(handlers::locate_one).post(handlers::locate_many),
        )
        .at("/api/query", &[(M::POST, Query)], post(handlers::query))
        .at("/api/nearest", &g(Query), get(handlers::nearest))
        .at(
            "/api/query.csv",
            &[(M::GET, Query), (M::POST, Query)],
            get(export::csv).post(export::csv_post),
        )
        .at(
            "/api/query.geojson",
            &[(M::GET, Query), (M::POST, Query)],
            get(export::geojson).post(export::geojson_post),
        )
        .at("/api/events", &[(M::POST, Ingest)], post(live::post_events))
        .at(
            "/api/events/{id}",
            &[(M::PATCH, Ingest)],
            patch(live::patch_event),
        )
        .at("/api/live", &g(View), get(live::live))
        .at("/api/stats", &g(View), get(live::stats))
        .at(
            "/api/{*rest}",
            &auth::all(Signed),
            any(handlers::api_not_found),
        )
        .at("/ogc", &g(View), get(ogc::landing))
        .at("/ogc/", &g(View), get(ogc::landing))
        .at("/ogc/conformance", &g(View), get(ogc::conformance))
        .at("/ogc/api", &g(View), get(ogc::openapi))
        .at("/ogc/collections", &g(View), get(ogc::collections))
        .at("/ogc/collections/{id}", &g(View), get(ogc::collection))
        .at(
            "/ogc/collections/{id}/queryables",
            &g(View),
            get(ogc::queryables),
        )
        .at(
            "/ogc/collections/{id}/items",
            &[(M::GET, Query), (M::POST, Plan), (M::OPTIONS, View)],
            get(ogc::items)
                .post(ogc_plans::post_item)
                .options(ogc_plans::options_items),
        )
        .at(
            "/ogc/collections/{id}/items/{fid}",
            &[
                (M::GET, Query),
                (M::PUT, Plan),
                (M::PATCH, Plan),
                (M::DELETE, Plan),
                (M::OPTIONS, View),
            ],
            get(ogc::item)
                .put(ogc_plans::put_item)
                .patch(ogc_plans::patch_item)
                .delete(ogc_plans::delete_item)
                .options(ogc_plans::options_item),
        )
        .at("/ogc/{*rest}", &auth::all(Signed), any(ogc::not_found))
        .at("/tiles/{file}", &g(View), get(tiles::tilejson))
        .at("/tiles/{layers}/{z}/{x}/{file}", &g(View), get(tiles::tile))
        .at("/styles/{file}", &g(View), get(tiles::style))
}

/// The whole application router.
pub fn router(state: Arc<App>) -> Router {
    let body_limit = state.config.body_limit;
    let (api, _) = routes().finish(state.clone());
    let body_timeout = state.config.limits.body_timeout;
    let app = api
        .merge(web_app(&state.config.web_dir))
        .fallback(|| async {
            error::problem(
                axum::http::StatusCode::NOT_FOUND,
                "Not Found",
                "no such resource",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            read_body(req, next, body_timeout, body_limit)
        }))
        .layer(axum::middleware::map_response(
            error::problem_for_bare_errors,
        ))
        .layer(axum::middleware::map_response(auth::security_headers))
        // Responses are compressed on the async workers as they are written
        // (tiles come pre-gzipped and are skipped): at the default level, a
        // whole-district answer's deflate was 80 % of those workers' CPU and
        // the cached-tile p99 under load 85–100 ms (BENCHMARKS.md, #13). The
        // fastest level costs a few percent of size.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                error::problem(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                    "the server hit a bug; it has been logged",
                )
            },
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    cors(app, &state.config.cors_origins)
}

/// CORS is off (browsers refuse other sites' pages) unless origins are
/// configured with `--cors-origin`.
fn cors(app: Router, origins: &[String]) -> Router {
    use axum::http::{HeaderValue, Method, header};
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if list.is_empty() {
        return app;
    }
    app.layer(
        tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::AllowOrigin::list(list))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .expose_headers([header::LINK, header::ETAG, header::RETRY_AFTER]),
    )
}

/// The web app's files: the page, its modules and styles, and the two
/// libraries it loads from `node_modules`, nothing else of `web/` (no
/// package files, tests or tools).
fn web_app(dir: &std::path::Path) -> Router {
    let index = tower_http::services::ServeFile::new(dir.join("index.html"));
    let lib = |p: &str| ServeDir::new(dir.join(p));
    Router::new()
        .route_service("/", index.clone())
        .route_service("/index.html", index)
        .nest_service("/app", lib("app"))
        .nest_service(
            "/node_modules/maplibre-gl/dist",
            lib("node_modules/maplibre-gl/dist"),
        )
        .nest_service(
            "/node_modules/echarts/dist",
            lib("node_modules/echarts/dist"),
        )
}

/// Middleware: a request body must arrive whole within `timeout` (a slow
/// client must not hold a handler, its memory and a connection open), and
/// within `limit` bytes. Bodiless requests pass straight through.
async fn read_body(
    req: axum::extract::Request,
    next: axum::middleware::Next,
    timeout: std::time::Duration,
    limit: usize,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let h = req.headers();
    let length = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = h.contains_key(header::TRANSFER_ENCODING);
    if length.unwrap_or(0) == 0 && !chunked {
        return next.run(req).await;
    }
    if length.is_some_and(|n| n > limit as u64) {
        return error::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large: at most {limit} bytes"),
        )
        .into_response();
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => {
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(req).await
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit"));
            if too_large {
                error::ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body too large: at most {limit} bytes"),
                )
                .into_response()
            } else {
                error::ApiError::bad_request(format!("the request body could not be read: {e}"))
                    .into_response()
            }
        }
        Err(_) => error::ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )
        .into_response(),
    }
}

/// A running server (for tests and `serve`).
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Asks the server to stop after in-flight requests, and waits.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.await.map_err(std::io::Error::other)?
    }
}

/// Listens on `addr` with a backlog of 4,096: the default 128 overflowed
/// when 2,000 clients connected at once (a wall of screens reconnecting
/// after a restart), and the kernel left 200 of them believing they were
/// connected to a server that never saw them (BENCHMARKS.md, #13).
async fn listen(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let sock = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        match sock.bind(a).and_then(|()| sock.listen(4096)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to listen on")))
}

/// Binds `addr` (port 0 picks a free one) and serves until `stop`, SIGINT or
/// SIGTERM, finishing in-flight requests first.
pub async fn start(state: Arc<App>, addr: &str) -> anyhow::Result<Running> {
    let listener = listen(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let mut limits = state.config.limits.clone();
    if let Some(nofile) = serve::raise_open_file_limit() {
        // Leave room for the store's files, the pools and the log.
        let room = usize::try_from(nofile.saturating_sub(256)).unwrap_or(usize::MAX);
        if room < limits.total {
            limits.total = room.max(16);
        }
        tracing::info!(
            "open-file limit {nofile}: at most {} connections, {} per client",
            limits.total,
            limits.per_client
        );
    }
    let app = router(state.clone());
    let tls = state.config.tls.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        tokio::select! {
            _ = rx => {},
            _ = shutdown_signal() => {},
        }
        // Live streams never end by themselves: end them, so the
        // in-flight requests the shutdown waits for can finish.
        state.live.close();
    };
    let handle = tokio::spawn(serve::serve(
        listener,
        app,
        limits,
        tls,
        shutdown,
        std::time::Duration::from_secs(10),
    ));
    Ok(Running {
        addr: local,
        shutdown: Some(tx),
        handle,
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
