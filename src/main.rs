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
        /// Roles that must give a TOTP code at login (comma-separated,
        /// e.g. admin,planner).
        #[arg(long, value_delimiter = ',')]
        require_2fa: Vec<String>,
        /// Minutes without a request before a web session ends.
        #[arg(long, default_value_t = 30)]
        session_idle_min: u64,
        /// Origins whose pages may call the API (CORS); none by default.
        #[arg(long = "cors-origin")]
        cors_origins: Vec<String>,
        /// Queries, exports and OGC item pages per principal per minute
        /// (0: unlimited); more get 429 with Retry-After.
        #[arg(long, default_value_t = 600)]
        rate_per_minute: u32,
        /// Serve HTTPS with this certificate chain (PEM) and --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Accounts of people who sign in on the web pages.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Machine tokens (the 12345 bridge, GDAL, QGIS) and kiosk tokens (a
    /// wall screen).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
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
        /// An operator token; by default the demo's `replay` token from the
        /// accounts file next to the store.
        #[arg(long, env = "ONEMAP_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Seconds to wait for the server to be ready (`/readyz`) before
        /// the first order.
        #[arg(long, default_value_t = 600)]
        wait: u64,
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
        /// Where the demo accounts' passwords and tokens are written
        /// (owner-only); by default next to the store
        /// (`STORE.accounts.txt`), or ./onemap-demo-accounts.txt for a
        /// database.
        #[arg(long)]
        accounts_file: Option<PathBuf>,
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

/// Where a command's store is.
#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// The GeoPackage file.
    #[arg(long, default_value = "data/onemap.gpkg", env = "ONEMAP_STORE")]
    store: PathBuf,
    /// A PostGIS database (postgres://user:password@host:port/db) instead
    /// of the GeoPackage.
    #[arg(long, env = "ONEMAP_DATABASE", hide_env_values = true)]
    database: Option<String>,
}

impl StoreArgs {
    async fn open(&self) -> anyhow::Result<onemap::store::copy::Opened> {
        match &self.database {
            Some(url) => onemap::store::copy::Opened::open(url).await,
            None => {
                if !self.store.exists() {
                    anyhow::bail!("{} does not exist", self.store.display());
                }
                onemap::store::copy::Opened::open(&self.store.to_string_lossy()).await
            }
        }
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user. Without --password-stdin a random password is made and
    /// printed once.
    Add {
        name: String,
        #[arg(long)]
        role: String,
        /// Grid codes the user may see and change (repeat); none: all.
        #[arg(long)]
        scope: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        at: StoreArgs,
    },
    /// List users.
    List {
        #[command(flatten)]
        at: StoreArgs,
    },
    /// Disable a user (sessions end; the record and its history stay).
    Disable {
        name: String,
        /// Enable again instead.
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        at: StoreArgs,
    },
    /// Set a user's password (and clear a lock after failed logins).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        at: StoreArgs,
    },
    /// Enrol a TOTP second factor and print its otpauth:// link (or
    /// --remove it).
    Totp {
        name: String,
        #[arg(long)]
        remove: bool,
        #[command(flatten)]
        at: StoreArgs,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed alone on the last line, once.
    Create {
        #[arg(long)]
        role: String,
        #[arg(long)]
        scope: Vec<String>,
        #[arg(long, default_value = "token")]
        name: String,
        #[arg(long)]
        expires_days: Option<u32>,
        /// A wall screen's token: opened once as http://HOST/kiosk/TOKEN.
        #[arg(long)]
        kiosk: bool,
        #[command(flatten)]
        at: StoreArgs,
    },
    /// Revoke tokens by id or name.
    Revoke {
        id_or_name: String,
        #[command(flatten)]
        at: StoreArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        at: StoreArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain: exit 0 when intact, 1 naming the first bad row.
    /// Prints the head (newest row and its hash): note it, or take it from
    /// the server's log ("audit head: …"), and pass it later as `--expect`
    /// to show whether rows were removed from the end since.
    Verify {
        #[command(flatten)]
        at: StoreArgs,
        /// A head noted earlier, SEQ:HASH (repeatable): the row must still
        /// be there with that hash.
        #[arg(long = "expect", value_name = "SEQ:HASH")]
        expect: Vec<String>,
    },
}

fn cli_principal() -> onemap::auth::Principal {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    onemap::auth::Principal::system(&format!("cli:{user}"))
}

fn parse_role(s: &str) -> anyhow::Result<onemap::auth::Role> {
    onemap::auth::Role::parse(s).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown role {s:?}: one of {}",
            onemap::auth::ROLES.map(|r| r.as_str()).join(", ")
        )
    })
}

fn read_password(stdin: bool) -> anyhow::Result<Option<String>> {
    if !stdin {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    Ok(Some(pw))
}

async fn user_command(c: UserCommand) -> anyhow::Result<()> {
    use onemap::auth::accounts;
    let by = cli_principal();
    match c {
        UserCommand::Add {
            name,
            role,
            scope,
            password_stdin,
            at,
        } => {
            let role = parse_role(&role)?;
            let given = read_password(password_stdin)?;
            let pw = given.clone().unwrap_or_else(random_password);
            let s = at.open().await?;
            let r = accounts::add_user(
                s.store(),
                &by,
                "cli",
                accounts::NewUser {
                    name: name.clone(),
                    role,
                    scope,
                    password: pw.clone(),
                },
            )
            .await;
            s.close().await;
            let u = r?;
            eprintln!("added {} ({})", u.name, u.role);
            if given.is_none() {
                println!("password (shown once):");
                println!("{pw}");
            }
            Ok(())
        }
        UserCommand::List { at } => {
            let s = at.open().await?;
            let r = accounts::list_users(s.store()).await;
            s.close().await;
            for u in r? {
                println!("{}", u.public());
            }
            Ok(())
        }
        UserCommand::Disable { name, enable, at } => {
            change(
                &at,
                &by,
                &name,
                accounts::UserChange {
                    disabled: Some(!enable),
                    ..Default::default()
                },
            )
            .await?;
            eprintln!("{name} {}", if enable { "enabled" } else { "disabled" });
            Ok(())
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            at,
        } => {
            let given = read_password(password_stdin)?;
            let pw = given.clone().unwrap_or_else(random_password);
            change(
                &at,
                &by,
                &name,
                accounts::UserChange {
                    password: Some(pw.clone()),
                    unlock: Some(true),
                    ..Default::default()
                },
            )
            .await?;
            eprintln!("password of {name} set");
            if given.is_none() {
                println!("password (shown once):");
                println!("{pw}");
            }
            Ok(())
        }
        UserCommand::Totp { name, remove, at } => {
            let (_, url) = change(
                &at,
                &by,
                &name,
                accounts::UserChange {
                    totp: Some(!remove),
                    ..Default::default()
                },
            )
            .await?;
            match url {
                Some(u) => {
                    eprintln!("add this to the authenticator app of {name} (shown once):");
                    println!("{u}");
                }
                None => eprintln!("second factor of {name} removed"),
            }
            Ok(())
        }
    }
}

fn random_password() -> String {
    let s = onemap::auth::accounts::new_secret("");
    format!("Om-{}-{}", &s[..10], &s[10..20].to_uppercase())
}

async fn change(
    at: &StoreArgs,
    by: &onemap::auth::Principal,
    name: &str,
    c: onemap::auth::accounts::UserChange,
) -> anyhow::Result<(onemap::auth::User, Option<String>)> {
    let s = at.open().await?;
    let r = onemap::auth::accounts::change_user(s.store(), by, "cli", name, c).await;
    s.close().await;
    r
}

async fn token_command(c: TokenCommand) -> anyhow::Result<()> {
    use onemap::auth::accounts;
    let by = cli_principal();
    match c {
        TokenCommand::Create {
            role,
            scope,
            name,
            expires_days,
            kiosk,
            at,
        } => {
            let role = parse_role(&role)?;
            let s = at.open().await?;
            let r = accounts::create_token(
                s.store(),
                &by,
                "cli",
                accounts::NewToken {
                    name,
                    role,
                    scope,
                    expires_days,
                    kiosk,
                },
            )
            .await;
            s.close().await;
            let (t, secret) = r?;
            println!(
                "token {} ({}, {}{}) — shown once:",
                t.id,
                t.name,
                t.role,
                if t.kiosk {
                    ", kiosk: open http://HOST/kiosk/TOKEN on the screen"
                } else {
                    ""
                }
            );
            println!("{secret}");
            Ok(())
        }
        TokenCommand::Revoke { id_or_name, at } => {
            let s = at.open().await?;
            let r = accounts::revoke_token(s.store(), &by, "cli", &id_or_name).await;
            s.close().await;
            for id in r? {
                println!("revoked {id}");
            }
            Ok(())
        }
        TokenCommand::List { at } => {
            let s = at.open().await?;
            let r = accounts::list_tokens(s.store()).await;
            s.close().await;
            for t in r? {
                println!("{}", t.public());
            }
            Ok(())
        }
    }
}

async fn audit_command(c: AuditCommand) -> anyhow::Result<bool> {
    match c {
        AuditCommand::Verify { at, expect } => {
            let heads = expect
                .iter()
                .map(|e| {
                    e.split_once(':')
                        .and_then(|(seq, hash)| {
                            Some((seq.trim().parse::<i64>().ok()?, hash.trim().to_string()))
                        })
                        .filter(|(seq, hash)| *seq > 0 && !hash.is_empty())
                        .ok_or_else(|| {
                            anyhow::anyhow!("--expect {e:?}: give SEQ:HASH, as verify prints it")
                        })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let s = at.open().await?;
            let r = async {
                let mut v = onemap::auth::audit::verify(s.store()).await?;
                if v.broken.is_none() {
                    v.broken = onemap::auth::audit::check_heads(s.store(), &v, &heads).await?;
                }
                Ok::<_, onemap::store::StoreError>(v)
            }
            .await;
            s.close().await;
            let v = r?;
            match v.broken {
                None => {
                    let head = v
                        .head
                        .as_ref()
                        .map(|(seq, hash)| format!("; head {seq}:{hash}"))
                        .unwrap_or_default();
                    println!("audit trail intact: {} row(s){head}", v.rows);
                    Ok(true)
                }
                Some((seq, why)) => {
                    println!(
                        "audit trail broken at row {seq}: {why} ({} row(s) before it verified)",
                        v.rows
                    );
                    Ok(false)
                }
            }
        }
    }
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
    config: onemap::app::Config,
    wait: u64,
) -> anyhow::Result<std::sync::Arc<onemap::app::App>> {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut pause = Duration::from_millis(500);
    loop {
        let attempt = async {
            let s = onemap::store::open(url).await?;
            onemap::app::load(s, config.clone()).await
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
            require_2fa,
            session_idle_min,
            cors_origins,
            rate_per_minute,
            tls_cert,
            tls_key,
        } => {
            let defaults = onemap::app::Config::default();
            let require_2fa = require_2fa
                .iter()
                .filter(|r| !r.trim().is_empty())
                .map(|r| parse_role(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => Some(onemap::api::serve::Tls::load(&c, &k)?),
                _ => None,
            };
            let config = onemap::app::Config {
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
                auth: onemap::auth::Settings {
                    require_2fa,
                    session_idle: std::time::Duration::from_secs(session_idle_min.max(1) * 60),
                    secure_cookies: tls.is_some(),
                    ..defaults.auth.clone()
                },
                cors_origins,
                rate_per_minute,
                tls,
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
                    onemap::app::load(s, config).await?
                }
            };
            if !state.auth.has_accounts() {
                tracing::warn!(
                    "the store has no accounts: nobody can sign in; add one with \
                     `onemap user add NAME --role admin`"
                );
            }
            let scheme = if state.config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let running = onemap::api::start(state, &bind).await?;
            tracing::info!("serving on {scheme}://{}", running.addr);
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
            token,
            wait,
        } => {
            if !store.exists() {
                anyhow::bail!(
                    "{} does not exist (run `onemap demo` first)",
                    store.display()
                );
            }
            let token = match token {
                Some(t) => t,
                None => {
                    let file = PathBuf::from(format!("{}.accounts.txt", store.display()));
                    onemap::demo::accounts::read_secret(&file, "replay").map_err(|e| {
                        anyhow::anyhow!("{e:#}: pass an operator token with --token")
                    })?
                }
            };
            let s = onemap::store::gpkg::GpkgStore::open(&store).await?;
            let opts = onemap::live::replay::Options {
                url,
                rate,
                speed,
                limit,
                token: Some(token),
                wait: std::time::Duration::from_secs(wait),
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
            accounts_file,
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
            let (target, creds) = match &database {
                Some(url) => {
                    let s = onemap::store::open(url).await?;
                    onemap::demo::write(s.as_ref(), g).await?;
                    let c = onemap::demo::accounts::create(s.as_ref()).await?;
                    (s.describe(), c)
                }
                None => {
                    let s = onemap::store::gpkg::GpkgStore::open(&store).await?;
                    let r = async {
                        onemap::demo::write(&s, g).await?;
                        onemap::demo::accounts::create(&s).await
                    }
                    .await;
                    s.close().await;
                    (store.display().to_string(), r?)
                }
            };
            eprintln!("wrote {target} in {:.1}s", t0.elapsed().as_secs_f64());
            let file = accounts_file.unwrap_or_else(|| match &database {
                Some(_) => PathBuf::from("onemap-demo-accounts.txt"),
                None => PathBuf::from(format!("{}.accounts.txt", store.display())),
            });
            onemap::demo::accounts::write_file(&file, &creds)?;
            println!(
                "demo accounts (shown once; also in {}, readable by you only):",
                file.display()
            );
            for c in &creds {
                let scope = if c.scope.is_empty() {
                    String::new()
                } else {
                    format!(" scope {}", c.scope.join(","))
                };
                match c.kind {
                    "user" => println!(
                        "  {:<8} {:<11} password {}{scope}",
                        c.name,
                        c.role.as_str(),
                        c.secret
                    ),
                    "kiosk" => println!(
                        "  kiosk    wall screen: open http://HOST/kiosk/{}",
                        c.secret
                    ),
                    _ => println!("  token    {} ({}): {}", c.name, c.role.as_str(), c.secret),
                }
            }
            Ok(())
        }
        Command::User { command } => user_command(command).await,
        Command::Token { command } => token_command(command).await,
        Command::Audit { command } => {
            if !audit_command(command).await? {
                anyhow::bail!("the audit trail does not verify");
            }
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
