//! The core: the application state every request reads and every write goes
//! through (store, catalog snapshot, tile cache, live hub, plan book, write
//! lock), below the HTTP layer. `api` translates HTTP into calls on [`App`];
//! nothing here knows about HTTP.

use crate::index::Catalog;
use crate::store::Store;
use crate::tiles::TileConfig;
use crate::tiles::cache::TileCache;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Largest request body accepted (bytes).
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// What every handler shares.
pub struct App {
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
    pub replays: crate::live::Replays,
    /// Accounts, tokens, sessions (read from the store).
    pub auth: crate::auth::Auth,
    /// The audit writer for entries without a change of their own.
    pub audit: crate::auth::AuditLog,
}

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Catalog,
        config: Config,
        auth: crate::auth::Auth,
    ) -> Arc<App> {
        let buffer = f64::from(config.tiles.buffer) / f64::from(config.tiles.extent);
        let own = Arc::new(crate::store::OwnWrites::default());
        let work = Arc::new(crate::work::Work::new(&config.work));
        let store: Arc<dyn Store> = Arc::new(crate::store::Tracked::new(store, own.clone()));
        let state = Arc::new(App {
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
            audit: crate::auth::AuditLog::start(auth.store().clone()),
            auth,
        });
        // The live writer needs a runtime; without one (a sync test) live
        // writes answer 503.
        if tokio::runtime::Handle::try_current().is_ok() {
            crate::live::Live::start(&state);
            tokio::spawn(crate::live::follow::follower(Arc::downgrade(&state)));
            // Accounts changed by another server (or the CLI) are seen
            // within a few seconds.
            let weak = Arc::downgrade(&state);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let Some(st) = weak.upgrade() else { break };
                    st.auth.refresh_if_stale().await;
                }
            });
            // A copy of the audit trail's head in the log, outside the
            // store, every minute when it has changed.
            let weak = Arc::downgrade(&state);
            tokio::spawn(async move {
                let mut seen: Option<i64> = None;
                loop {
                    let Some(st) = weak.upgrade() else { break };
                    if let Ok(Some((seq, hash))) =
                        crate::auth::audit::head(st.auth.store().as_ref()).await
                        && seen != Some(seq)
                    {
                        seen = Some(seq);
                        tracing::info!(
                            "audit head: row {seq} hash {hash} (later: onemap audit verify --expect {seq}:{hash})"
                        );
                    }
                    drop(st);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            });
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
    pub limits: Limits,
    /// Most live-stream subscribers; more get a 503.
    pub max_subscribers: usize,
    /// Sign-in: session lifetimes, lockout, second factor.
    pub auth: crate::auth::Settings,
    /// Origins allowed to call the API from another site's pages (CORS);
    /// empty: none.
    pub cors_origins: Vec<String>,
    /// Expensive requests (queries, exports, OGC items) per principal per
    /// minute; 0: unlimited.
    pub rate_per_minute: u32,
    /// HTTPS (`--tls-cert`, `--tls-key`); plain HTTP without.
    pub tls: Option<Tls>,
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
            auth: Default::default(),
            cors_origins: Vec::new(),
            rate_per_minute: 600,
            tls: None,
        }
    }
}

/// Connection limits of `onemap serve`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time for a request's headers to arrive, and for a kept-alive
    /// connection to send its next request.
    pub header_timeout: Duration,
    /// Time for a whole request body to arrive.
    pub body_timeout: Duration,
    /// Open connections per client address.
    pub per_client: usize,
    /// Open connections in all (lowered to fit the open-file limit).
    pub total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(20),
            body_timeout: Duration::from_secs(30),
            per_client: 512,
            total: 16_384,
        }
    }
}

/// Loads the catalog from the store and builds the state.
pub async fn load(store: Arc<dyn Store>, config: Config) -> anyhow::Result<Arc<App>> {
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
    let auth = crate::auth::Auth::load(store.clone(), config.auth.clone()).await?;
    Ok(App::new(store, catalog, config, auth))
}

/// A certificate and key for HTTPS (`--tls-cert`, `--tls-key`).
#[derive(Clone)]
pub struct Tls(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Tls {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<Tls> {
        use anyhow::Context;
        let open = |p: &std::path::Path| {
            std::fs::File::open(p)
                .map(std::io::BufReader::new)
                .with_context(|| format!("cannot read {}", p.display()))
        };
        let certs = rustls_pemfile::certs(&mut open(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
        if certs.is_empty() {
            anyhow::bail!("{} holds no certificate", cert.display());
        }
        let key = rustls_pemfile::private_key(&mut open(key)?)
            .with_context(|| format!("{} is not a PEM private key", key.display()))?
            .ok_or_else(|| anyhow::anyhow!("{} holds no private key", key.display()))?;
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the certificate and the key do not go together")?;
        Ok(Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}
