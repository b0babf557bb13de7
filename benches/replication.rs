//! PostGIS benchmarks for issue #7 (not a test): a throwaway PostgreSQL +
//! PostGIS cluster (tests/common/pg.rs) and release servers as processes.
//!
//! 1. `load`: start-up at city scale, GeoPackage vs PostGIS. The city demo
//!    (seed 1) in /tmp/city.gpkg (made when absent) and in the cluster
//!    (`onemap demo --scale city --database …`); then, alternating, N times
//!    each: spawn `onemap serve --store …` / `--database …` and time until
//!    `/healthz` answers 200. Per run: the server's own "loaded … in" time
//!    (Catalog::load), the CPU seconds of the server and of PostgreSQL's
//!    processes, RSS after load and peak RSS. Then, in this process,
//!    `Catalog::load`'s two halves (read every layer, build) per store.
//! 2. `lag`: replication lag between two servers on one PostGIS database
//!    (the district demo): orders posted to A at R/s, one SSE subscriber on
//!    B; lag = when B's stream delivers the order − when A's POST returned
//!    201 (both on this process's clock). Also: orders acknowledged vs
//!    received, A's POST latency, the CPU of A, B and PostgreSQL, the
//!    transactions PostgreSQL committed and B's frames by kind.
//!
//! ```text
//! cargo bench --bench replication                    # both parts
//! REPL_PART=load cargo bench --bench replication     # start-up only
//! REPL_PART=lag REPL_SECS=60 cargo bench --bench replication
//! ```
//!
//! Environment: REPL_PART (load|lag|all, default all), REPL_RUNS (start-ups
//! per store, 3), REPL_GPKG (the city GeoPackage, /tmp/city.gpkg),
//! REPL_INPROC (0 skips the in-process load), REPL_SECS (lag run, 60),
//! REPL_RATE (orders per second, 200), REPL_SERVER_LOG (a path prefix: keep
//! the lag servers' warnings in PREFIX-a.log / PREFIX-b.log), REPL_BIN
//! (another onemap binary for the servers and demos, to compare builds).
//!
//! Skips (exit 0, saying why) without PostgreSQL or PostGIS. The cluster
//! lives in a temp dir under $TMPDIR (default /tmp; the bench prints the
//! file system) and is stopped and removed on exit, panic or Ctrl-C; child
//! processes are killed when their handles drop.

#[path = "../tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

#[path = "common/auth.rs"]
mod auth;

use futures::StreamExt;
use onemap::index::Catalog;
use onemap::model::builtin;
use serde_json::{Value as J, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// Same allocator as the server, for the in-process load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Linux's USER_HZ: the unit of the CPU times in /proc/PID/stat.
const CLK_TCK: f64 = 100.0;

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Fields of /proc/PID/stat after the command name (field 3 is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// CPU seconds of a process (user + system); with `children`, plus those
/// of its children it has waited for.
fn cpu_s(pid: u32, children: bool) -> f64 {
    let Some(f) = stat_fields(pid) else {
        return 0.0;
    };
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime, cutime, cstime are fields 14–17.
    let own = n(11) + n(12);
    let waited = if children { n(13) + n(14) } else { 0.0 };
    (own + waited) / CLK_TCK
}

/// CPU seconds of a PostgreSQL cluster: the postmaster, the backends it
/// has reaped and the ones still running.
fn cluster_cpu_s(postmaster: u32) -> f64 {
    let mut total = cpu_s(postmaster, true);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                == Some(postmaster)
            {
                total += cpu_s(pid, false);
            }
        }
    }
    total
}

/// The file system a path lives on (mount point, type, device), from
/// /proc/self/mounts: the longest mount point that is a prefix.
fn file_system(p: &Path) -> String {
    let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && p.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} on {}", f[2], f[0])))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "unknown file system".into())
}

/// The 1-minute load average: how busy the shared machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    quantile(&s, 0.5)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs `onemap` to completion (its output goes to ours), for the demos.
async fn run_onemap(bin: &str, args: &[&str]) -> anyhow::Result<f64> {
    let t = Instant::now();
    let ok = tokio::process::Command::new(bin)
        .args(args)
        .kill_on_drop(true)
        .status()
        .await?
        .success();
    anyhow::ensure!(ok, "onemap {} failed", args.join(" "));
    Ok(t.elapsed().as_secs_f64())
}

/// A server process; killed when dropped.
struct Server {
    child: tokio::process::Child,
    pid: u32,
    base: String,
    /// stderr lines (when captured).
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Spawns `onemap serve` with `store` (`--store …` or `--database …`)
    /// on a free port. `log`: None keeps stderr in memory (info level),
    /// Some(path) writes warnings there, Some("") drops them.
    fn spawn(bin: &str, store: &[&str], log: Option<&str>) -> anyhow::Result<Server> {
        let port = free_port()?;
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("serve")
            .args(store)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match log {
            None => cmd.env("RUST_LOG", "onemap=info").stderr(Stdio::piped()),
            Some("") => cmd.env("RUST_LOG", "onemap=warn").stderr(Stdio::null()),
            Some(p) => cmd
                .env("RUST_LOG", "onemap=warn")
                .stderr(std::fs::File::create(p)?),
        };
        let mut child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("server exited at once"))?;
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        if let Some(err) = child.stderr.take() {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(err).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    if let Ok(mut v) = lines.lock() {
                        v.push(l);
                    }
                }
            });
        }
        Ok(Server {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            log: lines,
        })
    }

    /// Polls /healthz every 10 ms until it answers 200; fails when the
    /// process exits or after `limit`.
    async fn wait_healthy(
        &mut self,
        client: &reqwest::Client,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            if let Some(s) = self.child.try_wait()? {
                anyhow::bail!("server exited ({s}): {}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("server not healthy after {limit:?}: {}", self.log_text())
    }

    fn log_text(&self) -> String {
        self.log.lock().map(|v| v.join("\n")).unwrap_or_default()
    }

    /// Seconds from the server's "loaded … in X.XXs" line (Catalog::load).
    fn loaded_s(&self) -> Option<f64> {
        let log = self.log.lock().ok()?;
        let line = log.iter().find(|l| l.contains(" loaded "))?;
        let at = line.rfind(" in ")? + 4;
        let end = at + line[at..].find("s:")?;
        line[at..end].parse().ok()
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The postmaster's pid (the parent of this connection's backend).
async fn postmaster_pid(url: &str) -> anyhow::Result<u32> {
    let pool = sqlx::PgPool::connect(url).await?;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await?;
    // Read while the backend is alive (it exits with the connection).
    let parent = stat_fields(backend as u32).and_then(|f| f.get(1).and_then(|p| p.parse().ok()));
    pool.close().await;
    parent.ok_or_else(|| anyhow::anyhow!("no postmaster for backend {backend}"))
}

/// Transactions committed in the URL's database so far.
async fn xact_commits(url: &str) -> anyhow::Result<i64> {
    let pool = sqlx::PgPool::connect(url).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(n)
}

async fn sql(url: &str, stmts: &[&str]) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(url).await?;
    for s in stmts {
        sqlx::query(s).execute(&pool).await?;
    }
    pool.close().await;
    Ok(())
}

async fn describe_cluster(url: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(url).await?;
    let v: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&pool)
        .await?;
    let g: String = sqlx::query_scalar("SELECT postgis_lib_version()")
        .fetch_one(&pool)
        .await?;
    let mut settings = Vec::new();
    for k in [
        "shared_buffers",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
    ] {
        let s: String = sqlx::query_scalar(&format!("SHOW {k}"))
            .fetch_one(&pool)
            .await?;
        settings.push(format!("{k}={s}"));
    }
    pool.close().await;
    println!(
        "cluster: {} / PostGIS {g}; {}",
        v.split(" on ").next().unwrap_or(&v),
        settings.join(", ")
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Part 1: start-up load at city scale.

struct StartRun {
    store: &'static str,
    healthy_s: f64,
    loaded_s: Option<f64>,
    server_cpu_s: f64,
    pg_cpu_s: f64,
    rss_mb: f64,
    hwm_mb: f64,
}

async fn part_load(bin: &str, cluster: &pg::PgCluster) -> anyhow::Result<()> {
    let gpkg = std::env::var("REPL_GPKG").unwrap_or_else(|_| "/tmp/city.gpkg".into());
    if !Path::new(&gpkg).exists() {
        println!("{gpkg} is absent: generating the city demo (seed 1) …");
        let s = run_onemap(bin, &["demo", "--scale", "city", "--store", &gpkg]).await?;
        println!("  written in {s:.1} s");
    }
    println!("\n== start-up load at city scale: GeoPackage ({gpkg}) vs PostGIS ==");
    let url = cluster.url.clone();
    let fill = run_onemap(bin, &["demo", "--scale", "city", "--database", &url]).await?;
    println!("city demo (seed 1) written into PostGIS in {fill:.1} s");
    // What autovacuum would do soon anyway; done now so that it does not run
    // under a measurement, and so the first scan does not set hint bits.
    let t = Instant::now();
    sql(&url, &["VACUUM (ANALYZE)", "CHECKPOINT"]).await?;
    println!(
        "VACUUM (ANALYZE) + CHECKPOINT in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    {
        let pool = sqlx::PgPool::connect(&url).await?;
        let db: String =
            sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
                .fetch_one(&pool)
                .await?;
        let addr: String = sqlx::query_scalar(
            "SELECT pg_size_pretty(pg_table_size('addresses')) || ' + indexes ' || \
             pg_size_pretty(pg_indexes_size('addresses'))",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        let file = std::fs::metadata(&gpkg).map(|m| m.len()).unwrap_or(0);
        println!(
            "sizes: PostGIS database {db} (addresses table {addr}); GeoPackage file {} MB",
            file / 1_000_000
        );
    }
    let postmaster = postmaster_pid(&url).await?;
    let runs = env_u64("REPL_RUNS", 3);
    let client = reqwest::Client::new();
    let mut all: Vec<StartRun> = Vec::new();
    let mut counts: HashMap<&'static str, String> = HashMap::new();
    for round in 0..runs {
        for (name, args) in [
            ("gpkg", ["--store", gpkg.as_str()]),
            ("postgis", ["--database", url.as_str()]),
        ] {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let pg0 = cluster_cpu_s(postmaster);
            let t = Instant::now();
            let mut s = Server::spawn(bin, &args, None)?;
            s.wait_healthy(&client, Duration::from_secs(300)).await?;
            let healthy_s = t.elapsed().as_secs_f64();
            let run = StartRun {
                store: name,
                healthy_s,
                loaded_s: s.loaded_s(),
                server_cpu_s: cpu_s(s.pid, false),
                pg_cpu_s: cluster_cpu_s(postmaster) - pg0,
                rss_mb: status_kb(s.pid, "VmRSS:") as f64 / 1024.0,
                hwm_mb: status_kb(s.pid, "VmHWM:") as f64 / 1024.0,
            };
            if let Some(l) = s.log_text().lines().find(|l| l.contains(" loaded ")) {
                let c = l.split("s: ").nth(1).unwrap_or("").to_string();
                counts.insert(name, c);
            }
            println!(
                "round {} {:7}: healthz 200 after {:6.2} s (Catalog::load {}), CPU server {:5.1} s + \
                 PostgreSQL {:4.1} s, RSS {:5.0} MB (peak {:5.0} MB); load average {}",
                round + 1,
                run.store,
                run.healthy_s,
                run.loaded_s
                    .map(|v| format!("{v:.2} s"))
                    .unwrap_or("?".into()),
                run.server_cpu_s,
                run.pg_cpu_s,
                run.rss_mb,
                run.hwm_mb,
                loadavg(),
            );
            all.push(run);
            s.stop().await;
        }
    }
    for (name, c) in &counts {
        println!("  {name} loaded: {c}");
    }
    println!("medians over {runs} runs:");
    for name in ["gpkg", "postgis"] {
        let rs: Vec<&StartRun> = all.iter().filter(|r| r.store == name).collect();
        let m = |f: &dyn Fn(&StartRun) -> f64| median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
        println!(
            "  {name:7}: healthz {:.2} s (runs {}), Catalog::load {:.2} s, CPU server {:.1} s + \
             PostgreSQL {:.1} s, RSS {:.0} MB, peak {:.0} MB",
            m(&|r| r.healthy_s),
            rs.iter()
                .map(|r| format!("{:.2}", r.healthy_s))
                .collect::<Vec<_>>()
                .join(" / "),
            m(&|r| r.loaded_s.unwrap_or(f64::NAN)),
            m(&|r| r.server_cpu_s),
            m(&|r| r.pg_cpu_s),
            m(&|r| r.rss_mb),
            m(&|r| r.hwm_mb),
        );
    }
    if std::env::var("REPL_INPROC").is_ok_and(|v| v == "0") {
        return Ok(());
    }
    println!(
        "in this process, Catalog::load's halves (layers read concurrently, as the server does):"
    );
    for (name, loc) in [("gpkg", gpkg.as_str()), ("postgis", url.as_str())] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pg0 = cluster_cpu_s(postmaster);
        let me = std::process::id();
        let cpu0 = cpu_s(me, false);
        let t = Instant::now();
        let store = onemap::store::open(loc).await?;
        let open_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let seq = store.last_seq().await?;
        let mut defs = store.layers().await?;
        defs.retain(|d| !builtin::is_internal(&d.name));
        let loads = defs.iter().map(|d| {
            let store = store.clone();
            async move {
                let r = store.load_layer(&d.name).await;
                (r, t.elapsed().as_secs_f64())
            }
        });
        let mut features = Vec::new();
        let mut finished = Vec::new();
        for (d, (r, s)) in defs.iter().zip(futures::future::join_all(loads).await) {
            let f = r?;
            if f.len() >= 10_000 {
                finished.push(format!("{} {} at {s:.2} s", d.name, f.len()));
            }
            features.push(f);
        }
        let read_s = t.elapsed().as_secs_f64();
        let read_cpu = cpu_s(me, false) - cpu0;
        let pg_cpu = cluster_cpu_s(postmaster) - pg0;
        let cpu1 = cpu_s(me, false);
        let t = Instant::now();
        let layers = defs.into_iter().zip(features).collect();
        let cat = tokio::task::spawn_blocking(move || Catalog::build(layers, seq)).await?;
        let build_s = t.elapsed().as_secs_f64();
        let build_cpu = cpu_s(me, false) - cpu1;
        println!(
            "  {name:7}: open {open_s:.2} s, read {read_s:.2} s (CPU here {read_cpu:.1} s, \
             PostgreSQL {pg_cpu:.1} s; {}), build {build_s:.2} s (CPU {build_cpu:.1} s); load \
             average {}",
            finished.join(", "),
            loadavg()
        );
        drop(cat);
        drop(store);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Part 2: replication lag between two servers.

fn order(id: &str, lon: f64, lat: f64) -> J {
    json!({"type": "Feature", "id": id, "geometry": {"type": "Point", "coordinates": [lon, lat]},
           "properties": {"source": "grid_report", "category": "fire", "title": "楼道堆物"}})
}

/// Reads B's live stream: for every `event` frame of a created order, the
/// order's id and when its bytes arrived; frames counted by kind (B sends
/// one `changed` per layer per round of its follower). Sends () once
/// `hello` is read.
async fn subscribe(
    resp: reqwest::Response,
    received: Arc<Mutex<HashMap<String, Instant>>>,
    kinds: Arc<Mutex<HashMap<String, u64>>>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(Ok(b)) = stream.next().await {
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&b));
        let mut end = 0;
        while let Some(i) = buf[end..].find("\n\n") {
            let frame = &buf[end..end + i];
            end += i + 2;
            let (mut event, mut data) = ("message", String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Ok(mut k) = kinds.lock() {
                *k.entry(event.to_string()).or_default() += 1;
            }
            match event {
                "hello" => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                "event" => {
                    let Ok(d) = serde_json::from_str::<J>(&data) else {
                        continue;
                    };
                    if d["op"] == "created"
                        && let Some(id) = d["id"].as_str()
                        && let Ok(mut m) = received.lock()
                    {
                        m.entry(id.to_string()).or_insert(now);
                    }
                }
                _ => {}
            }
        }
        buf.drain(..end);
    }
}

struct Posted {
    id: String,
    sent: Instant,
    acked: Option<Instant>,
}

async fn part_lag(bin: &str, cluster: &pg::PgCluster) -> anyhow::Result<()> {
    let secs = env_u64("REPL_SECS", 60);
    let rate = env_u64("REPL_RATE", 200);
    println!(
        "\n== replication lag: two servers on one PostGIS database, {rate} orders/s for {secs} s =="
    );
    // A database of its own in the same cluster (the city one, if part 1
    // made it, is dropped first).
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    sql(
        &admin,
        &[
            "DROP DATABASE IF EXISTS onemap WITH (FORCE)",
            "CREATE DATABASE district",
        ],
    )
    .await?;
    let url = format!("postgres://postgres@127.0.0.1:{}/district", cluster.port);
    let fill = run_onemap(bin, &["demo", "--scale", "district", "--database", &url]).await?;
    auth::make_token(bin, &["--database", &url])?;
    sql(&url, &["VACUUM (ANALYZE)", "CHECKPOINT"]).await?;
    println!(
        "district demo (seed 1) written into database `district` in {fill:.1} s, then VACUUM (ANALYZE)"
    );
    let logs = std::env::var("REPL_SERVER_LOG").ok();
    let log_a = logs.as_ref().map(|p| format!("{p}-a.log"));
    let log_b = logs.as_ref().map(|p| format!("{p}-b.log"));
    let mut a = Server::spawn(
        bin,
        &["--database", &url],
        Some(log_a.as_deref().unwrap_or("")),
    )?;
    let mut b = Server::spawn(
        bin,
        &["--database", &url],
        Some(log_b.as_deref().unwrap_or("")),
    )?;
    let client = reqwest::Client::builder()
        .default_headers(auth::headers())
        .pool_max_idle_per_host(256)
        .build()?;
    a.wait_healthy(&client, Duration::from_secs(120)).await?;
    b.wait_healthy(&client, Duration::from_secs(120)).await?;
    println!(
        "servers: A {} (pid {}), B {} (pid {})",
        a.base, a.pid, b.base, b.pid
    );

    // Places inside the district: micro-grid centres, as B sees them.
    let g: J = client
        .get(format!("{}/api/grids?level=micro", b.base))
        .send()
        .await?
        .json()
        .await?;
    let codes: Vec<String> = g["grids"]
        .as_array()
        .map(|v| {
            v.iter()
                .take(300)
                .filter_map(|x| x["code"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut points = Vec::new();
    for c in &codes {
        let d: J = client
            .get(format!("{}/api/grids/{c}", b.base))
            .send()
            .await?
            .json()
            .await?;
        if let Some(v) = d["bbox"].as_array() {
            let v: Vec<f64> = v.iter().filter_map(J::as_f64).collect();
            if v.len() == 4 {
                points.push(((v[0] + v[2]) / 2.0, (v[1] + v[3]) / 2.0));
            }
        }
    }
    anyhow::ensure!(!points.is_empty(), "no micro-grids");

    // The subscriber on B, on its own client (its own connection).
    let received: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let resp = reqwest::Client::builder()
        .default_headers(auth::headers())
        .build()?
        .get(format!("{}/api/live", b.base))
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "GET /api/live: {}", resp.status());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let kinds: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let reader = tokio::spawn(subscribe(resp, received.clone(), kinds.clone(), tx));
    tokio::time::timeout(Duration::from_secs(10), rx).await??;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // What the run costs: CPU of A, B, PostgreSQL and this process, and
    // the transactions PostgreSQL commits (the followers' queries included).
    let postmaster = postmaster_pid(&url).await?;
    let cpu0 = [
        cpu_s(a.pid, false),
        cpu_s(b.pid, false),
        cluster_cpu_s(postmaster),
        cpu_s(std::process::id(), false),
    ];
    let xact0 = xact_commits(&url).await?;
    // Orders to A at `rate` per second, each its own request.
    let posted: Arc<Mutex<Vec<Posted>>> = Arc::default();
    let sem = Arc::new(tokio::sync::Semaphore::new(128));
    let total = secs * rate;
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut failed_status: HashMap<String, u64> = HashMap::new();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    for i in 0..total {
        tick.tick().await;
        let permit = sem.clone().acquire_owned().await?;
        let (client, base, posted, failures) = (
            client.clone(),
            a.base.clone(),
            posted.clone(),
            failures.clone(),
        );
        let (lon, lat) = points[i as usize % points.len()];
        tokio::spawn(async move {
            let id = format!("REPL-{i}");
            let body = order(&id, lon, lat);
            let sent = Instant::now();
            let r = client
                .post(format!("{base}/api/events"))
                .json(&body)
                .send()
                .await;
            let acked = match r {
                Ok(r) if r.status() == 201 => Some(Instant::now()),
                Ok(r) => {
                    if let Ok(mut f) = failures.lock() {
                        f.push(r.status().to_string());
                    }
                    None
                }
                Err(e) => {
                    if let Ok(mut f) = failures.lock() {
                        f.push(e.to_string());
                    }
                    None
                }
            };
            if let Ok(mut p) = posted.lock() {
                p.push(Posted { id, sent, acked });
            }
            drop(permit);
        });
    }
    let _ = sem.acquire_many(128).await?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = [
        cpu_s(a.pid, false) - cpu0[0],
        cpu_s(b.pid, false) - cpu0[1],
        cluster_cpu_s(postmaster) - cpu0[2],
        cpu_s(std::process::id(), false) - cpu0[3],
    ];
    // Statistics reach pg_stat_database within about half a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let xact = xact_commits(&url).await? - xact0;
    let posted = std::mem::take(&mut *posted.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    for f in failures.lock().map(|f| f.clone()).unwrap_or_default() {
        *failed_status.entry(f).or_default() += 1;
    }
    let acked: Vec<&Posted> = posted.iter().filter(|p| p.acked.is_some()).collect();
    // Let the last ones arrive: at most 10 s.
    let wait = Instant::now();
    while wait.elapsed() < Duration::from_secs(10) {
        let m = received.lock().map(|m| m.len()).unwrap_or(0);
        if m >= acked.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.abort();
    let received = received.lock().map(|m| m.clone()).unwrap_or_default();
    let mut lag = Vec::new();
    let mut from_send = Vec::new();
    let mut missing = Vec::new();
    let mut late: Vec<(f64, f64, &str)> = Vec::new();
    for p in &acked {
        let ack = p.acked.unwrap_or(p.sent);
        match received.get(&p.id) {
            Some(&at) => {
                // Signed: B may deliver before A's answer reaches us.
                let ms = if at >= ack {
                    (at - ack).as_secs_f64() * 1000.0
                } else {
                    -((ack - at).as_secs_f64() * 1000.0)
                };
                lag.push(ms);
                from_send.push((at - p.sent).as_secs_f64() * 1000.0);
                late.push((ms, (p.sent - t0).as_secs_f64(), &p.id));
            }
            None => missing.push(p.id.as_str()),
        }
    }
    let acked_ids: HashSet<&str> = acked.iter().map(|p| p.id.as_str()).collect();
    let extra = received
        .keys()
        .filter(|k| !acked_ids.contains(k.as_str()))
        .count();
    let mut post_ms: Vec<f64> = acked
        .iter()
        .filter_map(|p| p.acked.map(|a| (a - p.sent).as_secs_f64() * 1000.0))
        .collect();
    post_ms.sort_by(|a, b| a.total_cmp(b));
    lag.sort_by(|a, b| a.total_cmp(b));
    from_send.sort_by(|a, b| a.total_cmp(b));
    late.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!(
        "posted {} to A in {elapsed:.1} s ({:.0}/s): acknowledged (201) {}, failed {} {:?}; \
         load average {}",
        posted.len(),
        posted.len() as f64 / elapsed,
        acked.len(),
        posted.len() - acked.len(),
        failed_status,
        loadavg()
    );
    println!(
        "received on B's stream {} of {} acknowledged; missing {}{}; received but not acknowledged {extra}",
        lag.len(),
        acked.len(),
        missing.len(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(" (first: {:?})", &missing[..missing.len().min(5)])
        }
    );
    let q = |v: &[f64], p: f64| quantile(v, p);
    println!(
        "lag ms (B received − A answered 201): p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  (min {:.1}, \
         {} negative)",
        q(&lag, 0.5),
        q(&lag, 0.9),
        q(&lag, 0.99),
        q(&lag, 1.0),
        q(&lag, 0.0),
        lag.iter().filter(|&&v| v < 0.0).count()
    );
    println!(
        "lag ms from A's POST sent: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        q(&from_send, 0.5),
        q(&from_send, 0.9),
        q(&from_send, 0.99),
        q(&from_send, 1.0)
    );
    println!(
        "A's POST latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        q(&post_ms, 0.5),
        q(&post_ms, 0.9),
        q(&post_ms, 0.99),
        q(&post_ms, 1.0)
    );
    let edges = [
        0.0, 25.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 500.0, 1000.0,
    ];
    let mut hist = Vec::new();
    for (k, lo) in edges.iter().enumerate() {
        let hi = edges.get(k + 1).copied().unwrap_or(f64::INFINITY);
        let n = lag.iter().filter(|&&v| v >= *lo && v < hi).count();
        hist.push(format!("[{lo:.0},{hi:.0}) {n}"));
    }
    println!(
        "lag histogram ms: (<0) {} {}",
        lag.iter().filter(|&&v| v < 0.0).count(),
        hist.join(" ")
    );
    println!(
        "slowest: {}",
        late.iter()
            .take(5)
            .map(|(ms, at, id)| format!("{id} {ms:.0} ms (sent at {at:.1} s)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "CPU s during the run: A {:.1}, B {:.1}, PostgreSQL {:.1}, this process {:.1}; \
         PostgreSQL committed {xact} transactions ({:.0}/s)",
        cpu[0],
        cpu[1],
        cpu[2],
        cpu[3],
        xact as f64 / elapsed
    );
    let mut kinds: Vec<(String, u64)> = kinds
        .lock()
        .map(|k| k.clone().into_iter().collect())
        .unwrap_or_default();
    kinds.sort();
    println!(
        "frames on B's stream: {} (`changed`: one per follower round that applied rows)",
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "server RSS MB: A {:.0}, B {:.0}",
        status_kb(a.pid, "VmRSS:") as f64 / 1024.0,
        status_kb(b.pid, "VmRSS:") as f64 / 1024.0
    );
    a.stop().await;
    b.stop().await;
    anyhow::ensure!(
        missing.is_empty(),
        "{} acknowledged orders never reached B",
        missing.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------

async fn run() -> anyhow::Result<()> {
    let part = std::env::var("REPL_PART").unwrap_or_else(|_| "all".into());
    anyhow::ensure!(
        ["all", "load", "lag"].contains(&part.as_str()),
        "REPL_PART={part}: use load, lag or all"
    );
    // REPL_BIN: another build of onemap (say, an older commit) to compare.
    let bin_env = std::env::var("REPL_BIN").ok();
    let bin = bin_env.as_deref().unwrap_or(env!("CARGO_BIN_EXE_onemap"));
    let Some(cluster) = pg::PgCluster::start().await else {
        println!("SKIPPED: the replication benchmark needs PostgreSQL and PostGIS (see above)");
        return Ok(());
    };
    let tmp = std::env::temp_dir();
    let fs = file_system(&tmp);
    println!(
        "PostgreSQL cluster on 127.0.0.1:{}, data in a temp dir under {} ({fs}){}",
        cluster.port,
        tmp.display(),
        if fs.starts_with("tmpfs") {
            " — WARNING: tmpfs is memory, not a disk; set TMPDIR to a disk directory"
        } else {
            ""
        }
    );
    describe_cluster(&cluster.url).await?;
    println!(
        "binary: {bin}; {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    if part != "lag" {
        part_load(bin, &cluster).await?;
    }
    if part != "load" {
        part_lag(bin, &cluster).await?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        tokio::select! {
            r = run() => match r {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            },
            _ = tokio::signal::ctrl_c() => {
                // Dropping `run` kills the servers (kill_on_drop) and stops
                // and removes the cluster (PgCluster's Drop).
                eprintln!("interrupted: servers killed, cluster stopped and removed");
                std::process::ExitCode::from(130)
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    code
}
