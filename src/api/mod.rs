//! HTTP: the axum router, shared state, and server start/stop.
//!
//! Handlers are thin: they parse and validate input, read the catalog, and
//! shape JSON. Cross-cutting concerns are tower layers: tracing, gzip,
//! body-size limit, panic → 500, and problem JSON for every error.

pub mod error;
mod export;
mod handlers;
mod live;
pub mod ogc;
pub mod ogc_plans;
pub mod plans;
pub mod serve;
pub mod tiles;

use crate::index::Catalog;
use crate::store::Store;
use crate::tiles::TileConfig;
use crate::tiles::cache::TileCache;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tower_http::services::ServeDir;

/// Largest request body accepted (bytes).
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The current catalog. Replaced whole (never mutated in place), so a
    /// request holds one consistent snapshot for as long as it needs.
    catalog: RwLock<Arc<Catalog>>,
    pub config: Config,
    /// Encoded tiles; invalidate by area when data changes.
    pub tiles: TileCache,
    /// The live writer's queue and the broadcast hub.
    pub live: crate::live::Live,
    /// Grid edit plans.
    pub plans: crate::plan::Plans,
    /// The change sets this server wrote (the follower skips them).
    pub own: Arc<crate::store::OwnWrites>,
    /// Held by whoever writes and then replaces the catalog (the live
    /// writer, a publish), so snapshots are built one after the other.
    pub write_lock: tokio::sync::Mutex<()>,
    /// Whether the store answers (for `/healthz`), kept by the follower.
    pub health: crate::live::follow::Health,
    /// The pools heavy work runs on (queries, exports, tiles, validation).
    pub work: Arc<crate::work::Work>,
    /// Live-stream replays in progress per client address.
    pub replays: live::Replays,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, catalog: Catalog, config: Config) -> Arc<AppState> {
        let buffer = f64::from(config.tiles.buffer) / f64::from(config.tiles.extent);
        let own = Arc::new(crate::store::OwnWrites::default());
        let work = Arc::new(crate::work::Work::new(&config.work));
        let store: Arc<dyn Store> = Arc::new(crate::store::Tracked::new(store, own.clone()));
        let state = Arc::new(AppState {
            store,
            own,
            catalog: RwLock::new(Arc::new(catalog)),
            tiles: TileCache::new(config.tile_cache_bytes, buffer),
            config,
            live: crate::live::Live::new(),
            plans: Default::default(),
            write_lock: Default::default(),
            health: Default::default(),
            work,
            replays: Default::default(),
        });
        // The live writer needs a runtime; without one (a sync test) live
        // writes answer 503.
        if tokio::runtime::Handle::try_current().is_ok() {
            crate::live::Live::start(&state);
            tokio::spawn(crate::live::follow::follower(Arc::downgrade(&state)));
        }
        state
    }

    /// A snapshot of the catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the catalog.
    pub fn set_catalog(&self, c: Catalog) {
        match self.catalog.write() {
            Ok(mut g) => *g = Arc::new(c),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(c),
        }
    }
}

/// Settings of `onemap serve`.
#[derive(Clone, Debug)]
pub struct Config {
    pub body_limit: usize,
    /// The web app's files, served at `/`.
    pub web_dir: PathBuf,
    /// MapLibre style templates, served at `/styles/{name}.json`.
    pub styles_dir: PathBuf,
    pub tiles: TileConfig,
    /// Memory for cached tiles (raw + gzip), bytes.
    pub tile_cache_bytes: u64,
    /// How often the live writer moves the clock (orders turning overdue).
    pub clock_tick: std::time::Duration,
    /// Pools and time budgets for heavy work.
    pub work: crate::work::WorkConfig,
    /// Connection timeouts and caps.
    pub limits: serve::Limits,
    /// Most live-stream subscribers; more get a 503.
    pub max_subscribers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            body_limit: DEFAULT_BODY_LIMIT,
            web_dir: PathBuf::from("web"),
            styles_dir: PathBuf::from("styles"),
            tiles: TileConfig::default(),
            tile_cache_bytes: 256 * 1024 * 1024,
            clock_tick: crate::live::CLOCK_TICK,
            work: Default::default(),
            limits: Default::default(),
            max_subscribers: 10_000,
        }
    }
}

/// The whole application router.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.body_limit;
    let api = Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/api/layers", get(handlers::layers))
        .route("/api/layers/{name}", get(handlers::layer))
        .route("/api/grids", get(handlers::grids_list))
        .route("/api/grids/{code}", get(handlers::grid))
        .route("/api/grids/{code}/history", get(plans::history))
        .route(
            "/api/grids/{code}/revert",
            axum::routing::post(plans::revert),
        )
        .route("/api/plans", get(plans::list).post(plans::create))
        .route(
            "/api/plans/{id}",
            get(plans::get).delete(plans::discard).patch(plans::rename),
        )
        .route("/api/plans/{id}/ops", axum::routing::post(plans::ops))
        .route("/api/plans/{id}/validate", get(plans::validate))
        .route(
            "/api/plans/{id}/publish",
            axum::routing::post(plans::publish_plan),
        )
        .route(
            "/api/locate",
            get(handlers::locate_one).post(handlers::locate_many),
        )
        .route("/api/query", axum::routing::post(handlers::query))
        .route("/api/nearest", get(handlers::nearest))
        .route("/api/query.csv", get(export::csv).post(export::csv_post))
        .route(
            "/api/query.geojson",
            get(export::geojson).post(export::geojson_post),
        )
        .route("/api/events", axum::routing::post(live::post_events))
        .route("/api/events/{id}", axum::routing::patch(live::patch_event))
        .route("/api/live", get(live::live))
        .route("/api/stats", get(live::stats))
        .route("/api/{*rest}", axum::routing::any(handlers::api_not_found))
        .route("/ogc", get(ogc::landing))
        .route("/ogc/", get(ogc::landing))
        .route("/ogc/conformance", get(ogc::conformance))
        .route("/ogc/api", get(ogc::openapi))
        .route("/ogc/collections", get(ogc::collections))
        .route("/ogc/collections/{id}", get(ogc::collection))
        .route("/ogc/collections/{id}/queryables", get(ogc::queryables))
        .route(
            "/ogc/collections/{id}/items",
            get(ogc::items)
                .post(ogc_plans::post_item)
                .options(ogc_plans::options_items),
        )
        .route(
            "/ogc/collections/{id}/items/{fid}",
            get(ogc::item)
                .put(ogc_plans::put_item)
                .patch(ogc_plans::patch_item)
                .delete(ogc_plans::delete_item)
                .options(ogc_plans::options_item),
        )
        .route("/ogc/{*rest}", axum::routing::any(ogc::not_found))
        .route("/tiles/{file}", get(tiles::tilejson))
        .route("/tiles/{layers}/{z}/{x}/{file}", get(tiles::tile))
        .route("/styles/{file}", get(tiles::style))
        .with_state(state.clone());
    let body_timeout = state.config.limits.body_timeout;
    api.merge(web_app(&state.config.web_dir))
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
        .layer(tower_http::trace::TraceLayer::new_for_http())
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

/// Loads the catalog from the store and builds the state.
pub async fn load_state(store: Arc<dyn Store>, config: Config) -> anyhow::Result<Arc<AppState>> {
    let t0 = std::time::Instant::now();
    let catalog = Catalog::load(store.as_ref()).await?;
    let counts: Vec<String> = catalog
        .layers
        .iter()
        .map(|l| format!("{} {}", l.def.name, l.features.len()))
        .collect();
    tracing::info!(
        "loaded {} in {:.2}s: {}",
        store.describe(),
        t0.elapsed().as_secs_f64(),
        counts.join(", ")
    );
    Ok(AppState::new(store, catalog, config))
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
pub async fn start(state: Arc<AppState>, addr: &str) -> anyhow::Result<Running> {
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
