//! The `onemap` command line. See README.md for the reference.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// mimalloc: loading a store allocates and frees millions of small values
/// across the driver's threads, where glibc's allocator spends its time in
/// consolidation and locks (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "onemap",
    version,
    about = "一张图 onemap: a GIS server for grassroots-governance command centres"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the store: tiles, API and the web app.
    Serve {
        /// The GeoPackage file to serve.
        #[arg(long, default_value = "data/onemap.gpkg", env = "ONEMAP_STORE")]
        store: PathBuf,
        /// A PostGIS database (postgres://user:password@host:port/db) instead
        /// of the GeoPackage.
        #[arg(long, env = "ONEMAP_DATABASE")]
        database: Option<String>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "ONEMAP_BIND")]
        bind: String,
        /// Directory of the web app.
        #[arg(long, default_value = "web", env = "ONEMAP_WEB")]
        web: PathBuf,
        /// Directory of the MapLibre style templates.
        #[arg(long, default_value = "styles", env = "ONEMAP_STYLES")]
        styles: PathBuf,
        /// Largest accepted request body, bytes.
        #[arg(long, default_value_t = onemap::api::DEFAULT_BODY_LIMIT)]
        body_limit: usize,
        /// Memory for the tile cache, MiB.
        #[arg(long, default_value_t = 256)]
        tile_cache_mb: u64,
        /// How long to keep retrying, seconds, while the database cannot be
        /// reached at start (a server started before its database); 0 gives
        /// up at the first refusal.
        #[arg(long, default_value_t = 60, env = "ONEMAP_STORE_WAIT")]
        store_wait: u64,
        /// Time budget of a query, an export chunk or a validation, seconds;
        /// past it the work stops and the client gets 503 with Retry-After.
        #[arg(long, default_value_t = 30)]
        query_budget: u64,
        /// Most live-stream (SSE) subscribers; more get 503.
        #[arg(long, default_value_t = 10_000)]
        max_subscribers: usize,
        /// Most open connections from one client address; more are refused.
        #[arg(long, default_value_t = 512)]
        conns_per_client: usize,
    },
    /// Import a GeoJSON or CSV file into a new or an existing layer.
    Import {
        #[arg(long, default_value = "data/onemap.gpkg")]
        store: PathBuf,
        /// A PostGIS database (postgres://user:password@host:port/db) instead
        /// of the GeoPackage.
        #[arg(long, env = "ONEMAP_DATABASE")]
        database: Option<String>,

        /// The layer to import into (created when absent).
        #[arg(long)]
        layer: String,
        /// The CRS of the file's coordinates: wgs84, cgcs2000, gcj02 or bd09.
        #[arg(long, default_value = "wgs84")]
        crs: String,
        /// Who is importing (recorded in the change log).
        #[arg(long, default_value = "onemap import")]
        author: String,
        /// The .geojson/.json or .csv file.
        file: PathBuf,
    },
    /// Post a store's work orders to a running server in time order, so a
    /// demo screen comes alive (statuses follow, time compressed).
    Replay {
        /// The GeoPackage whose work orders are replayed (the demo's).
        #[arg(long, default_value = "data/onemap.gpkg")]
        store: PathBuf,
        /// The running server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Orders per second.
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        /// How much faster than real time orders are dispatched and closed.
        #[arg(long, default_value_t = 600.0)]
        speed: f64,
        /// Stop after this many orders.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Generate the fictional demo district (示范区) into a new store.
    Demo {
        /// The GeoPackage file to create.
        #[arg(long, default_value = "data/onemap.gpkg")]
        store: PathBuf,
        /// A PostGIS database (postgres://user:password@host:port/db) instead
        /// of the GeoPackage.
        #[arg(long, env = "ONEMAP_DATABASE")]
        database: Option<String>,

        /// district (about 1,100 grids, 100,000 addresses) or city (57,000
        /// micro-grids, 4,000,000 addresses); small is one street, for tests.
        #[arg(long, default_value = "district")]
        scale: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Copy a whole store into a new one, GeoPackage ↔ PostGIS: layers,
    /// features (ids, versions), id counters, the change log and metadata.
    Copy {
        /// The store to copy: a .gpkg file or postgres://user:password@host:port/db.
        #[arg(long)]
        from: String,
        /// The new store: a .gpkg file (must not exist) or an empty PostGIS
        /// database.
        #[arg(long)]
        to: String,
        /// Replace a GeoPackage destination that exists.
        #[arg(long)]
        force: bool,
    },
}

/// An async worker that goes idle asks mimalloc to hand back the pages it
/// freed, at most once a second per thread. Without it, the memory of
/// 10,000 live-stream subscribers stayed in the two workers' heaps after
/// they left (RSS 185 → 410 MB, and still 410 MB 5 minutes later; a
/// collect on every thread brought it to 175 MB: BENCHMARKS.md, #13).
fn collect_when_idle() {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    LAST.with(|last| {
        let now = Instant::now();
        if last
            .get()
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        last.set(Some(now));
        // SAFETY: mi_collect only walks the calling thread's own heap.
        unsafe { libmimalloc_sys::mi_collect(false) };
    });
}

fn main() -> std::process::ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(collect_when_idle)
        .build();
    match rt {
        Ok(rt) => rt.block_on(async_main()),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn async_main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "onemap=info,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Opens a database and loads it, retrying with backoff for `wait` seconds
/// while it cannot be reached (down, starting up). Other failures (no
/// PostGIS, authentication) are final at once.
async fn open_retrying(
    url: &str,
    config: onemap::api::Config,
    wait: u64,
) -> anyhow::Result<std::sync::Arc<onemap::api::AppState>> {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut pause = Duration::from_millis(500);
    loop {
        let attempt = async {
            let s = onemap::store::open(url).await?;
            onemap::api::load_state(s, config.clone()).await
        };
        let e = match attempt.await {
            Ok(state) => return Ok(state),
            Err(e) => e,
        };
        let unreachable = e.chain().any(|c| {
            c.downcast_ref::<onemap::store::StoreError>()
                .is_some_and(|s| s.is_unreachable())
        });
        if !unreachable {
            return Err(e);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            anyhow::bail!(
                "{e:#}\n(gave up after {wait} s; is the database running? --store-wait sets how long to retry)"
            );
        }
        tracing::warn!("{e:#}; retrying in {:.1} s", pause.min(left).as_secs_f64());
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            store,
            database,
            bind,
            web,
            styles,
            body_limit,
            tile_cache_mb,
            store_wait,
            query_budget,
            max_subscribers,
            conns_per_client,
        } => {
            let defaults = onemap::api::Config::default();
            let config = onemap::api::Config {
                body_limit,
                web_dir: web,
                styles_dir: styles,
                tile_cache_bytes: tile_cache_mb * 1024 * 1024,
                work: onemap::work::WorkConfig {
                    heavy_budget: std::time::Duration::from_secs(query_budget.max(1)),
                    ..defaults.work.clone()
                },
                limits: onemap::api::serve::Limits {
                    per_client: conns_per_client.max(1),
                    ..defaults.limits.clone()
                },
                max_subscribers,
                ..defaults
            };
            let state = match &database {
                Some(url) => open_retrying(url, config, store_wait).await?,
                None => {
                    if !store.exists() {
                        anyhow::bail!(
                            "{} does not exist: create it with `onemap demo --store {}` or import data",
                            store.display(),
                            store.display()
                        );
                    }
                    let s = onemap::store::open(&store.to_string_lossy()).await?;
                    onemap::api::load_state(s, config).await?
                }
            };
            let running = onemap::api::start(state, &bind).await?;
            tracing::info!("serving on http://{}", running.addr);
            running.handle.await??;
            Ok(())
        }
        Command::Import {
            store,
            database,
            layer,
            crs,
            author,
            file,
        } => {
            let crs = onemap::import::Crs::parse(&crs).map_err(anyhow::Error::msg)?;
            let r = match &database {
                Some(url) => {
                    let s = onemap::store::open(url).await?;
                    onemap::import::import_file(s.as_ref(), &layer, crs, &file, &author).await?
                }
                None => {
                    let s = onemap::store::gpkg::GpkgStore::open(&store).await?;
                    let res = onemap::import::import_file(&s, &layer, crs, &file, &author).await;
                    s.close().await;
                    res?
                }
            };
            eprintln!(
                "imported {} feature(s) into {}layer {} (ids {}–{})",
                r.count,
                if r.created { "new " } else { "" },
                r.layer,
                r.first_id.unwrap_or(0),
                r.last_id.unwrap_or(0)
            );
            Ok(())
        }
        Command::Replay {
            store,
            url,
            rate,
            speed,
            limit,
        } => {
            if !store.exists() {
                anyhow::bail!(
                    "{} does not exist (run `onemap demo` first)",
                    store.display()
                );
            }
            let s = onemap::store::gpkg::GpkgStore::open(&store).await?;
            let opts = onemap::live::replay::Options {
                url,
                rate,
                speed,
                limit,
            };
            let sum = onemap::live::replay::run(&s, &opts).await?;
            eprintln!(
                "replayed: {} orders posted, {} status changes, {} failed",
                sum.posted, sum.patched, sum.failed
            );
            if sum.failed > 0 {
                anyhow::bail!("{} requests failed", sum.failed);
            }
            Ok(())
        }
        Command::Demo {
            store,
            database,
            scale,
            seed,
            force,
        } => {
            let sc = onemap::demo::Scale::parse(&scale).ok_or_else(|| {
                anyhow::anyhow!("unknown scale {scale:?}: use district, city or small")
            })?;
            if let Some(url) = &database {
                let s = onemap::store::open(url).await?;
                if !s.layers().await?.is_empty() {
                    anyhow::bail!(
                        "the database already holds layers; use an empty database for the demo"
                    );
                }
            } else if store.exists() {
                if !force {
                    anyhow::bail!("{} exists; pass --force to replace it", store.display());
                }
                for ext in ["", "-wal", "-shm"] {
                    let p = PathBuf::from(format!("{}{ext}", store.display()));
                    if p.exists() {
                        std::fs::remove_file(&p)?;
                    }
                }
            }
            let t0 = std::time::Instant::now();
            let g = onemap::demo::generate(&sc, seed)?;
            let counts: Vec<String> = g
                .layers
                .iter()
                .map(|l| format!("{} {}", l.def.name, l.features.len()))
                .collect();
            eprintln!(
                "generated in {:.1}s: {}",
                t0.elapsed().as_secs_f64(),
                counts.join(", ")
            );
            let target = match &database {
                Some(url) => {
                    let s = onemap::store::open(url).await?;
                    onemap::demo::write(s.as_ref(), g).await?;
                    s.describe()
                }
                None => {
                    let s = onemap::store::gpkg::GpkgStore::open(&store).await?;
                    onemap::demo::write(&s, g).await?;
                    s.close().await;
                    store.display().to_string()
                }
            };
            eprintln!("wrote {target} in {:.1}s", t0.elapsed().as_secs_f64());
            Ok(())
        }
        Command::Copy { from, to, force } => {
            use onemap::store::copy::{Opened, copy, is_postgres};
            // Opening a GeoPackage creates it: check the source first.
            if !is_postgres(&from) && !std::path::Path::new(&from).exists() {
                anyhow::bail!("{from} does not exist: the source must be an existing GeoPackage");
            }
            if !is_postgres(&to) {
                let dest = PathBuf::from(&to);
                if dest.exists() {
                    let same = !is_postgres(&from)
                        && std::fs::canonicalize(&from)? == std::fs::canonicalize(&dest)?;
                    if same {
                        anyhow::bail!("{to} is the source: copy into another file");
                    }
                    if !force {
                        anyhow::bail!("{to} exists; pass --force to replace it");
                    }
                    for ext in ["", "-wal", "-shm"] {
                        let p = PathBuf::from(format!("{to}{ext}"));
                        if p.exists() {
                            std::fs::remove_file(&p)?;
                        }
                    }
                }
            }
            let src = Opened::open(&from).await?;
            let dst = match Opened::open(&to).await {
                Ok(d) => d,
                Err(e) => {
                    src.close().await;
                    return Err(e);
                }
            };
            eprintln!(
                "copying {} to {}",
                src.store().describe(),
                dst.store().describe()
            );
            let res = copy(src.store(), dst.store(), |line| eprintln!("  {line}")).await;
            src.close().await;
            dst.close().await;
            eprintln!("copied {}", res?);
            Ok(())
        }
    }
}
