//! Hostile load (not a test), issue #13: the release server as a process on
//! the district demo, only over 127.0.0.x / 127.0.x.y loopback addresses.
//!
//! 1. `stall`: for HOSTILE_SECS (60) seconds, 8 clients loop whole-district
//!    `POST /api/query` with features (`limit` 1000, the default layers), 2
//!    loop CSV exports of every address (`POST /api/query.csv`), 4 loop bad
//!    filters (too deeply nested cql2-text) at `POST /api/query` and
//!    `/ogc/collections/risks/items?filter=` (one of them, 100 kB, is longer
//!    than a client may put in a URL: sent as raw bytes); meanwhile two
//!    probers, each on its own thread and runtime, fetch `/healthz` and one
//!    cached z14 tile every 20 ms. The same probes run for 5 s before the
//!    load, as a baseline. Reports probe p50/p90/p99/max, the heavy requests' statuses
//!    and the bad filters' statuses and latencies.
//! 2. `idle`: 2,000 idle TCP connections from 127.0.1.1–127.0.1.8 (half
//!    send nothing, half send one `GET /healthz` and stay kept alive), then
//!    100 `/healthz` from 127.0.0.5 while they are held; then waits 25 s
//!    and reports how many the server closed and when.
//! 3. `memory`: the server's RSS before, with 10,000 `/api/live` subscribers
//!    (from 127.0.2.1–127.0.2.25), while 300 work orders are posted (10/s,
//!    each its own `POST /api/events`, so every subscriber's buffers are
//!    used), and 5 s and 30 s after they all disconnect.
//! 4. `bounds`: the largest inputs the bounds accept (area vertices, an
//!    `IN` list, a geometry literal, and all three at once), counted and
//!    with features, on an idle server; and one step over each bound (400).
//! 5. `mixed` (not in `all`; meant for the city demo): 4 connections for
//!    5 minutes, each looping over random z10–16 tiles and area queries
//!    (streets, communities, micro-grids, bboxes, circles), 20 % queries.
//!    Reports tile and query p50/p90/p99/max, statuses and timeouts.
//!
//! ```text
//! cargo bench --bench hostile                          # stall, idle, memory, bounds
//! HOSTILE_PART=stall HOSTILE_SECS=60 cargo bench --bench hostile
//! HOSTILE_PART=idle cargo bench --bench hostile
//! HOSTILE_PART=memory cargo bench --bench hostile
//! HOSTILE_PART=bounds cargo bench --bench hostile
//! ONEMAP_BENCH_STORE=/tmp/city.gpkg HOSTILE_PART=mixed cargo bench --bench hostile
//! ```
//!
//! Environment: HOSTILE_PART (stall|idle|memory|bounds|mixed|all, default
//! all: the first four);
//! ONEMAP_BENCH_STORE (a district GeoPackage to copy instead of generating
//! one); HOSTILE_BIN (another onemap binary, to compare builds);
//! HOSTILE_SERVER_ARGS (extra `serve` arguments, whitespace-separated);
//! HOSTILE_SERVER_LOG (a path prefix: the server's warnings go to
//! PREFIX-PART.log). The server inherits this process's environment, so
//! `MIMALLOC_PURGE_DELAY=0 HOSTILE_PART=memory cargo bench --bench hostile`
//! runs it with that mimalloc option.
//! stall: HOSTILE_SECS (60), HOSTILE_QUERIES (8), HOSTILE_EXPORTS (2),
//! HOSTILE_BAD (4), HOSTILE_GZIP (1: the heavy clients accept gzip, as a
//! browser does; 0: they do not), HOSTILE_LIMIT (1000, the query's limit).
//! idle: HOSTILE_IDLE (2000), HOSTILE_IDLE_WAIT (25 s), HOSTILE_IDLE_BATCH
//! (100: connections opened at a time; the server's listen backlog is 128,
//! so 2000 at once overflow it), HOSTILE_IDLE_SOURCES (8 source addresses;
//! 1 puts them all over the per-client cap).
//! memory: HOSTILE_SUBS (10000), HOSTILE_ORDERS (300), HOSTILE_ORDER_RATE
//! (10/s), HOSTILE_ROUNDS (1: connect, post, disconnect, measure; more
//! rounds on the same server show whether memory grows per round),
//! HOSTILE_AFTER_SECS (when to read RSS after the disconnect, default
//! "5,30"), HOSTILE_MEM_HOOK (a bash command run at the end with
//! HOSTILE_PID set to the server's pid, then RSS is read once more: for
//! experiments such as asking the allocator, through gdb, to return its
//! free pages).
//!
//! bounds: HOSTILE_REPS (5 runs of each input). mixed: HOSTILE_SECS (300),
//! HOSTILE_CONNS (4), HOSTILE_QUERY_PCT (20), HOSTILE_TIMEOUT (10 s).
//!
//! Figures and what they showed: BENCHMARKS.md, "Hostile load".
//!
//! The bench raises its own open-file soft limit to the hard limit (10,000
//! subscribers need as many descriptors); the server does the same itself.

#[path = "common/auth.rs"]
mod auth;

use futures::StreamExt;
use serde_json::{Value as J, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Linux's USER_HZ: the unit of the CPU times in /proc/PID/stat.
const CLK_TCK: f64 = 100.0;

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// A field of /proc/PID/status in kB (or a count, for `Threads:`).
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

/// A field of /proc/PID/smaps_rollup in kB (e.g. `AnonHugePages:`).
fn rollup_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at 3.
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / CLK_TCK
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The kernel's count of connections dropped because a listen queue was
/// full (TcpExt ListenOverflows, machine-wide).
fn listen_overflows() -> u64 {
    let s = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    if lines.len() < 2 {
        return 0;
    }
    let names = lines[0].split_whitespace();
    let values = lines[1].split_whitespace();
    names
        .zip(values)
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Raises this process's open-file soft limit to the hard limit.
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            r.rlim_cur = r.rlim_max;
        }
    }
    r.rlim_cur
}

/// p50, p90, p99 and max of a sample (NaN when empty).
fn quantiles(v: &[f64]) -> [f64; 4] {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    [q(0.5), q(0.9), q(0.99), q(1.0)]
}

fn fmt_q(v: &[f64]) -> String {
    let [a, b, c, d] = quantiles(v);
    format!("{a:.2} | {b:.2} | {c:.2} | {d:.1}")
}

/// The release server as a child process, killed when dropped.
struct Server {
    child: std::process::Child,
    pid: u32,
    port: u16,
    base: String,
}

impl Drop for Server {
    /// SIGTERM first (a graceful stop, so MIMALLOC_SHOW_STATS=1 can print),
    /// then SIGKILL after 5 s.
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> String {
    std::env::var("HOSTILE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_onemap").to_string())
}

/// The district store: ONEMAP_BENCH_STORE copied, or a new demo.
fn prepare_store(dir: &Path) -> anyhow::Result<PathBuf> {
    let store = dir.join("district.gpkg");
    match std::env::var("ONEMAP_BENCH_STORE") {
        Ok(src) => {
            std::fs::copy(&src, &store)?;
            println!("store: {src} (copied)");
        }
        Err(_) => {
            let t0 = Instant::now();
            let ok = std::process::Command::new(bin())
                .args(["demo", "--scale", "district", "--store"])
                .arg(&store)
                .stderr(std::process::Stdio::null())
                .status()?
                .success();
            anyhow::ensure!(ok, "demo failed");
            println!(
                "store: district demo generated in {:.1} s",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    // Made once here, so every part's copy of the store holds it.
    auth::make_token(&bin(), &["--store", &store.display().to_string()])?;
    Ok(store)
}

/// Starts `onemap serve` on a copy of the store (each part its own copy:
/// the memory part writes orders) and waits for `/healthz`.
async fn start_server(dir: &Path, store: &Path, part: &str) -> anyhow::Result<Server> {
    let copy = dir.join(format!("{part}.gpkg"));
    std::fs::copy(store, &copy)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let extra: Vec<String> = std::env::var("HOSTILE_SERVER_ARGS")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let stderr = match std::env::var("HOSTILE_SERVER_LOG") {
        Ok(p) => std::process::Stdio::from(std::fs::File::create(format!("{p}-{part}.log"))?),
        Err(_) => std::process::Stdio::null(),
    };
    let child = std::process::Command::new(bin())
        .arg("serve")
        .arg("--store")
        .arg(&copy)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--web")
        .arg(manifest().join("web"))
        .arg("--styles")
        .arg(manifest().join("styles"))
        .args(&extra)
        .env("RUST_LOG", "onemap=warn")
        .stderr(stderr)
        .spawn()?;
    let pid = child.id();
    let srv = Server {
        child,
        pid,
        port,
        base: format!("http://127.0.0.1:{port}"),
    };
    let mut srv = srv;
    let client = reqwest::Client::new();
    let ours = copy.display().to_string();
    for _ in 0..600 {
        if let Ok(Some(st)) = srv.child.try_wait() {
            anyhow::bail!("the server exited at start ({st}); HOSTILE_SERVER_LOG keeps its log");
        }
        if let Ok(r) = client.get(format!("{}/healthz", srv.base)).send().await
            && r.status() == 200
        {
            // The port was free when we picked it; make sure the server
            // answering is ours and not another one that took the port.
            let h: J = r.json().await.unwrap_or_default();
            let store = h["store"].as_str().unwrap_or_default();
            anyhow::ensure!(
                store.ends_with(&ours),
                "port {} answers for store {store:?}, not ours ({ours}): another server took the port",
                srv.port
            );
            return Ok(srv);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the server did not become healthy within 60 s")
}

/// The union of every layer's bbox.
async fn district_bbox(client: &reqwest::Client, base: &str) -> anyhow::Result<[f64; 4]> {
    let layers: J = client
        .get(format!("{base}/api/layers"))
        .send()
        .await?
        .json()
        .await?;
    let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    for l in layers.as_array().into_iter().flatten() {
        if let Some(v) = l["bbox"].as_array() {
            let v: Vec<f64> = v.iter().filter_map(J::as_f64).collect();
            if v.len() == 4 {
                b = [
                    b[0].min(v[0]),
                    b[1].min(v[1]),
                    b[2].max(v[2]),
                    b[3].max(v[3]),
                ];
            }
        }
    }
    anyhow::ensure!(b[0] < b[2], "no layer has a bbox");
    Ok(b)
}

/// The z/x/y of the tile holding a point.
fn tile_of(lon: f64, lat: f64, z: u32) -> (u32, u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n) as u32;
    let y = ((1.0 - lat.to_radians().tan().asinh() / std::f64::consts::PI) / 2.0 * n) as u32;
    (z, x, y)
}

/// Percent-encodes a query value, leaving parentheses as they are (they
/// are allowed in a query; encoding them would triple a nested filter).
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET path` as raw HTTP/1.1 on a new connection; the answer's status
/// (0 when there was none).
async fn raw_get(addr: SocketAddr, path: &str) -> u16 {
    let go = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{}Connection: close\r\n\r\n",
            auth::line()
        );
        tcp.write_all(req.as_bytes()).await?;
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await?;
        Ok::<_, std::io::Error>(got)
    };
    match tokio::time::timeout(Duration::from_secs(30), go).await {
        Ok(Ok(got)) => String::from_utf8_lossy(&got[..got.len().min(16)])
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Latencies (ms) of one prober, and its failures.
#[derive(Default)]
struct Probe {
    ms: Vec<f64>,
    /// (seconds since start, ms) of each sample, for the slowest ones.
    at: Vec<(f64, f64)>,
    failed: u64,
}

/// Fetches `url` every `every` for `secs` on its own thread and runtime
/// (so the load generator's own tasks cannot delay a probe), from
/// `local` when given. A probe that overruns its slot starts the next at once.
fn probe_thread(
    url: String,
    secs: f64,
    every: Duration,
    local: Option<IpAddr>,
) -> std::thread::JoinHandle<Probe> {
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(_) => return Probe::default(),
        };
        rt.block_on(async move {
            let mut out = Probe::default();
            let Ok(client) = reqwest::Client::builder()
                .default_headers(auth::headers())
                .timeout(Duration::from_secs(10))
                .local_address(local)
                .build()
            else {
                return out;
            };
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let t0 = Instant::now();
            while t0.elapsed().as_secs_f64() < secs {
                tick.tick().await;
                let s = Instant::now();
                let r = client
                    .get(&url)
                    .header("accept-encoding", "gzip")
                    .send()
                    .await;
                let ok = match r {
                    Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                    _ => false,
                };
                let ms = s.elapsed().as_secs_f64() * 1000.0;
                if ok {
                    out.ms.push(ms);
                    out.at.push((s.duration_since(t0).as_secs_f64(), ms));
                } else {
                    out.failed += 1;
                }
            }
            out
        })
    })
}

/// Statuses and latencies of one kind of request.
#[derive(Default)]
struct Tally {
    status: BTreeMap<u16, u64>,
    ms: Vec<f64>,
    bytes: u64,
    /// Downloads whose body ended early or held the wrong number of rows.
    incomplete: u64,
}

impl Tally {
    fn add(&mut self, status: u16, ms: f64, bytes: u64) {
        *self.status.entry(status).or_default() += 1;
        self.ms.push(ms);
        self.bytes += bytes;
    }
    fn n(&self) -> u64 {
        self.status.values().sum()
    }
    fn of(&self, s: u16) -> u64 {
        self.status.get(&s).copied().unwrap_or(0)
    }
    fn others(&self, except: &[u16]) -> String {
        let v: Vec<String> = self
            .status
            .iter()
            .filter(|(s, _)| !except.contains(s))
            .map(|(s, n)| format!("{n}×{s}"))
            .collect();
        if v.is_empty() {
            "0".into()
        } else {
            v.join(", ")
        }
    }
}

type Tallies = Arc<Mutex<BTreeMap<String, Tally>>>;

fn record(t: &Tallies, key: &str, status: u16, ms: f64, bytes: u64, complete: bool) {
    if let Ok(mut m) = t.lock() {
        let e = m.entry(key.to_string()).or_default();
        e.add(status, ms, bytes);
        if !complete {
            e.incomplete += 1;
        }
    }
}

fn print_probes(label: &str, p: &Probe, limit_ms: f64) {
    let over = p.ms.iter().filter(|&&m| m > limit_ms).count();
    println!(
        "| {label} | {} | {} | {over} | {} |",
        p.ms.len(),
        fmt_q(&p.ms),
        p.failed
    );
}

fn slowest(p: &Probe, k: usize) -> String {
    let mut v = p.at.clone();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.iter()
        .take(k)
        .map(|(t, ms)| format!("{ms:.0} ms at {t:.1} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn stall(dir: &Path, store: &Path) -> anyhow::Result<()> {
    let secs = env_u64("HOSTILE_SECS", 60) as f64;
    let n_query = env_u64("HOSTILE_QUERIES", 8);
    let n_export = env_u64("HOSTILE_EXPORTS", 2);
    let n_bad = env_u64("HOSTILE_BAD", 4);
    let gzip = env_u64("HOSTILE_GZIP", 1) == 1;
    let limit = env_u64("HOSTILE_LIMIT", 1000);
    let srv = start_server(dir, store, "stall").await?;
    let base = srv.base.clone();
    let addr = SocketAddr::from(([127, 0, 0, 1], srv.port));
    let client = reqwest::Client::builder()
        .default_headers(auth::headers())
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()?;
    let bbox = district_bbox(&client, &base).await?;
    let layers: J = client
        .get(format!("{base}/api/layers/addresses"))
        .send()
        .await?
        .json()
        .await?;
    let addresses = layers["count"].as_u64().unwrap_or(0);
    let (z, x, y) = tile_of((bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0, 14);
    let tile_url = format!("{base}/tiles/all/{z}/{x}/{y}.mvt");
    let r = client
        .get(&tile_url)
        .header("accept-encoding", "gzip")
        .send()
        .await?;
    let st = r.status();
    let size = r.bytes().await?.len();
    anyhow::ensure!(st == 200, "tile {z}/{x}/{y}: {st}");
    println!(
        "\n## stall: district bbox {bbox:?}, cached tile {z}/{x}/{y} ({size} bytes gzip), \
         {n_query} query clients (limit {limit}), {n_export} CSV exports of {addresses} addresses, \
         {n_bad} bad-filter clients, gzip accepted: {gzip}, {secs} s"
    );
    let every = Duration::from_millis(20);
    let health_url = format!("{base}/healthz");
    // Baseline: the same probes on an idle server.
    let base_secs = 5.0;
    let hb = probe_thread(health_url.clone(), base_secs, every, None);
    let tb = probe_thread(tile_url.clone(), base_secs, every, None);
    let (hb, tb) = (hb.join().unwrap_or_default(), tb.join().unwrap_or_default());

    let query = json!({"area": {"bbox": bbox}, "limit": limit});
    let export = json!({"area": {"bbox": bbox}, "layers": ["addresses"]});
    let deep = |n: usize| format!("{}category = 'fire'{}", "(".repeat(n), ")".repeat(n));
    let cases: Vec<(&str, String)> = vec![
        ("( ×30", "(".repeat(30)),
        ("NOT ×1000 a=1", format!("{}a=1", "NOT ".repeat(1000))),
        ("30k-deep parens (60 kB)", deep(30_000)),
        ("50k-deep parens (100 kB)", deep(50_000)),
    ];
    // The bad filters once each (×5) on the idle server, for comparison.
    let mut idle_bad: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for _ in 0..5 {
        for (_, f) in &cases {
            let s = Instant::now();
            let r = client
                .post(format!("{base}/api/query"))
                .json(&json!({"area": {"bbox": bbox}, "filter": f, "limit": 1000}))
                .send()
                .await?;
            let _ = r.bytes().await;
            idle_bad
                .entry("POST /api/query")
                .or_default()
                .push(s.elapsed().as_secs_f64() * 1000.0);
            let path = format!("/ogc/collections/risks/items?filter={}", query_value(f));
            let s = Instant::now();
            if path.len() > 65_000 {
                raw_get(addr, &path).await;
            } else {
                let _ = client
                    .get(format!("{base}{path}"))
                    .send()
                    .await?
                    .bytes()
                    .await;
            }
            idle_bad
                .entry("GET /ogc/…/items")
                .or_default()
                .push(s.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let tallies: Tallies = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load0 = loadavg();
    let cpu0 = cpu_secs(srv.pid);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n_query {
        let (client, base, query, tallies, stop) = (
            client.clone(),
            base.clone(),
            query.clone(),
            tallies.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let s = Instant::now();
                let mut rq = client.post(format!("{base}/api/query")).json(&query);
                if gzip {
                    rq = rq.header("accept-encoding", "gzip");
                }
                let (status, bytes, ok) = match rq.send().await {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        match r.bytes().await {
                            Ok(b) => (st, b.len() as u64, true),
                            Err(_) => (st, 0, false),
                        }
                    }
                    Err(_) => (0, 0, false),
                };
                let ms = s.elapsed().as_secs_f64() * 1000.0;
                record(
                    &tallies,
                    "POST /api/query (whole district, features)",
                    status,
                    ms,
                    bytes,
                    ok,
                );
                if status != 200 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    for _ in 0..n_export {
        let (client, base, export, tallies, stop) = (
            client.clone(),
            base.clone(),
            export.clone(),
            tallies.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let s = Instant::now();
                let mut rq = client.post(format!("{base}/api/query.csv")).json(&export);
                if gzip {
                    rq = rq.header("accept-encoding", "gzip");
                }
                let (status, bytes, complete) = match rq.send().await {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        let compressed = r
                            .headers()
                            .get("content-encoding")
                            .is_some_and(|v| v == "gzip");
                        let mut body = r.bytes_stream();
                        let (mut n, mut lines, mut ok) = (0u64, 0u64, true);
                        while let Some(c) = body.next().await {
                            match c {
                                Ok(c) => {
                                    n += c.len() as u64;
                                    lines += c.iter().filter(|&&b| b == b'\n').count() as u64;
                                }
                                Err(_) => {
                                    ok = false;
                                    break;
                                }
                            }
                        }
                        // Rows are only countable uncompressed.
                        (
                            st,
                            n,
                            ok && (compressed || st != 200 || lines == addresses + 1),
                        )
                    }
                    Err(_) => (0, 0, false),
                };
                let ms = s.elapsed().as_secs_f64() * 1000.0;
                record(
                    &tallies,
                    "POST /api/query.csv (every address)",
                    status,
                    ms,
                    bytes,
                    complete,
                );
                if status != 200 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    let cases = Arc::new(cases);
    for w in 0..n_bad {
        let (client, base, cases, tallies, stop) = (
            client.clone(),
            base.clone(),
            cases.clone(),
            tallies.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut k = w as usize;
            while !stop.load(Ordering::Relaxed) {
                let (label, f) = &cases[k % cases.len()];
                let ogc = (k / cases.len()) % 2 == 1;
                k += 1;
                let path = format!("/ogc/collections/risks/items?filter={}", query_value(f));
                if ogc && path.len() > 65_000 {
                    // Longer than a client's URI may be (the http crate's
                    // limit): sent as raw bytes on a new connection.
                    let s = Instant::now();
                    let status = raw_get(addr, &path).await;
                    let ms = s.elapsed().as_secs_f64() * 1000.0;
                    let key = format!("bad filter, GET /ogc/…/risks/items: {label}, raw");
                    record(&tallies, &key, status, ms, 0, true);
                    continue;
                }
                let (key, rq) = if ogc {
                    (
                        format!("bad filter, GET /ogc/…/risks/items: {label}"),
                        client.get(format!("{base}{path}")),
                    )
                } else {
                    (
                        format!("bad filter, POST /api/query: {label}"),
                        client
                            .post(format!("{base}/api/query"))
                            .json(&json!({"area": {"bbox": bbox}, "filter": f, "limit": 1000})),
                    )
                };
                let s = Instant::now();
                let (status, bytes) = match rq.send().await {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        (st, r.bytes().await.map_or(0, |b| b.len() as u64))
                    }
                    Err(_) => (0, 0),
                };
                let ms = s.elapsed().as_secs_f64() * 1000.0;
                record(&tallies, &key, status, ms, bytes, true);
            }
        }));
    }
    // Let the load start before probing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hp = probe_thread(health_url.clone(), secs, every, None);
    let tp = probe_thread(tile_url.clone(), secs, every, None);
    let (hp, tp) = (
        tokio::task::spawn_blocking(move || hp.join().unwrap_or_default()).await?,
        tokio::task::spawn_blocking(move || tp.join().unwrap_or_default()).await?,
    );
    stop.store(true, Ordering::Relaxed);
    let load1 = loadavg();
    let cpu = cpu_secs(srv.pid) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }
    // Still healthy, and the tile still cached?
    let after = client
        .get(&health_url)
        .send()
        .await
        .map(|r| r.status().as_u16());

    println!("load average (1, 5, 15 min) at start: {load0}; at end: {load1}");
    println!(
        "server CPU during the load: {cpu:.1} s in {wall:.1} s ({:.0} % of one core); RSS at end {} MB; /healthz after: {after:?}",
        cpu / wall * 100.0,
        status_kb(srv.pid, "VmRSS:") / 1024
    );
    println!(
        "\n| probe (every 20 ms) | n | p50 ms | p90 ms | p99 ms | max ms | over target | failed |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    print_probes("/healthz, idle server (5 s)", &hb, 100.0);
    print_probes("cached tile, idle server (5 s)", &tb, 50.0);
    print_probes(&format!("/healthz under load ({secs} s)"), &hp, 100.0);
    print_probes(&format!("cached tile under load ({secs} s)"), &tp, 50.0);
    let [_, _, h99, _] = quantiles(&hp.ms);
    let [_, _, t99, _] = quantiles(&tp.ms);
    println!(
        "targets: /healthz p99 {h99:.1} ms < 100: {}; cached tile p99 {t99:.1} ms < 50: {}",
        if h99 < 100.0 { "MET" } else { "NOT MET" },
        if t99 < 50.0 { "MET" } else { "NOT MET" }
    );
    println!("slowest /healthz: {}", slowest(&hp, 5));
    println!("slowest tile: {}", slowest(&tp, 5));

    let m = tallies.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    println!(
        "\n| heavy request | n | 200 | 503 | other | incomplete | p50 ms | p90 ms | p99 ms | max ms | MB received |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (k, t) in m.iter().filter(|(k, _)| !k.starts_with("bad")) {
        println!(
            "| {k} | {} | {} | {} | {} | {} | {} | {:.0} |",
            t.n(),
            t.of(200),
            t.of(503),
            t.others(&[200, 503]),
            t.incomplete,
            fmt_q(&t.ms),
            t.bytes as f64 / 1e6
        );
    }
    println!("\n| bad filter | n | 400 | other | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut all_bad = Vec::new();
    let mut not_400 = 0;
    for (k, t) in m.iter().filter(|(k, _)| k.starts_with("bad")) {
        all_bad.extend_from_slice(&t.ms);
        not_400 += t.n() - t.of(400);
        println!(
            "| {} | {} | {} | {} | {} |",
            &k["bad filter, ".len()..],
            t.n(),
            t.of(400),
            t.others(&[400]),
            fmt_q(&t.ms)
        );
    }
    for (k, v) in &idle_bad {
        println!(
            "bad filters on the idle server first, {k}: p50/p90/p99/max ms {}",
            fmt_q(v)
        );
    }
    println!(
        "all bad filters: {} requests, {not_400} not 400; p50/p90/p99/max ms {}",
        all_bad.len(),
        fmt_q(&all_bad)
    );
    Ok(())
}

/// How one idle connection ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    /// Still open when checked.
    Open,
    /// The server closed it this many seconds after it went idle.
    Closed(f64),
    /// The server answered 503 (a cap) and closed it.
    Refused,
    /// Could not connect, or a reset.
    Error,
}

async fn idle(dir: &Path, store: &Path) -> anyhow::Result<()> {
    let n = env_u64("HOSTILE_IDLE", 2000) as usize;
    let wait = env_u64("HOSTILE_IDLE_WAIT", 25);
    let batch = env_u64("HOSTILE_IDLE_BATCH", 100).max(1) as usize;
    let sources = env_u64("HOSTILE_IDLE_SOURCES", 8).clamp(1, 250) as usize;
    let srv = start_server(dir, store, "idle").await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], srv.port));
    let probe_from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));
    let health = format!("{}/healthz", srv.base);
    println!(
        "\n## idle: {n} idle connections from 127.0.1.1–127.0.1.{sources} (half never send a byte, half \
         send one GET /healthz and stay kept alive), opened {batch} at a time; /healthz ×100 from 127.0.0.5"
    );
    let load0 = loadavg();
    let fds0 = fd_count(srv.pid);
    // Baseline: 100 probes before any idle connection.
    let h0 = tokio::task::spawn_blocking({
        let h = health.clone();
        move || probe_thread(h, 2.0, Duration::from_millis(20), Some(probe_from)).join()
    })
    .await?
    .unwrap_or_default();
    // Open them, eight source addresses round robin.
    let ends: Arc<Mutex<Vec<(bool, End)>>> = Arc::new(Mutex::new(
        (0..n).map(|i| (i % 2 == 1, End::Open)).collect(),
    ));
    // Connected (and, for the kept-alive half, answered) or failed.
    let ready = Arc::new(AtomicU64::new(0));
    let overflows0 = listen_overflows();
    let t_open = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let ip = Ipv4Addr::new(127, 0, 1, 1 + (i % sources) as u8);
        let kept = i % 2 == 1;
        let (ends, done) = (ends.clone(), ready.clone());
        conns.push(tokio::spawn(async move {
            // Before the connection is idle, an end also counts it ready.
            let set = |e: End, before_idle: bool| {
                if let Ok(mut v) = ends.lock() {
                    v[i] = (kept, e);
                }
                if before_idle {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            };
            let sock = match tokio::net::TcpSocket::new_v4() {
                Ok(s) => s,
                Err(_) => return set(End::Error, true),
            };
            if sock.bind(SocketAddr::new(IpAddr::V4(ip), 0)).is_err() {
                return set(End::Error, true);
            }
            let Ok(mut tcp) = sock.connect(addr).await else {
                return set(End::Error, true);
            };
            let mut buf = vec![0u8; 4096];
            if kept {
                let req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
                if tcp.write_all(req.as_bytes()).await.is_err() {
                    return set(End::Error, true);
                }
                // Read the whole answer: headers, then content-length bytes.
                let mut got = Vec::new();
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return set(End::Error, true),
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                    let text = String::from_utf8_lossy(&got);
                    if let Some(h) = text.find("\r\n\r\n") {
                        let len = text[..h]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if got.len() >= h + 4 + len {
                            if text.starts_with("HTTP/1.1 503") {
                                return set(End::Refused, true);
                            }
                            break;
                        }
                    }
                }
            }
            let idle_since = Instant::now();
            done.fetch_add(1, Ordering::Relaxed);
            // Now idle: wait for the server to close it (or to refuse it).
            let e = match tcp.read(&mut buf).await {
                Ok(0) => End::Closed(idle_since.elapsed().as_secs_f64()),
                Ok(_) if buf.starts_with(b"HTTP/1.1 503") => End::Refused,
                Ok(_) => End::Closed(idle_since.elapsed().as_secs_f64()),
                Err(_) => End::Closed(idle_since.elapsed().as_secs_f64()),
            };
            set(e, false);
            // Hold the socket until the bench ends, like a real idle client.
            std::future::pending::<()>().await;
            drop(tcp);
        }));
        // In batches: 2,000 connects at once overflow the server's listen
        // queue (backlog 128: std's, which tokio's `bind` uses), and a
        // connection whose final ACK the kernel dropped (a SYN cookie) looks
        // established here but never reaches the server until it sends.
        if i % batch == batch - 1 {
            let want = (i + 1) as u64;
            let t = Instant::now();
            while ready.load(Ordering::Relaxed) < want && t.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    // Every connection established (or failed), at most 60 s.
    while ready.load(Ordering::Relaxed) < n as u64 && t_open.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let opened_in = t_open.elapsed().as_secs_f64();
    let t_open = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count = |ends: &Arc<Mutex<Vec<(bool, End)>>>| {
        let v = ends.lock().map(|v| v.clone()).unwrap_or_default();
        let mut c: BTreeMap<(bool, &'static str), u64> = BTreeMap::new();
        let mut closed_at = (Vec::new(), Vec::new());
        for (kept, e) in &v {
            let k = match e {
                End::Open => "open",
                End::Closed(t) => {
                    if *kept {
                        closed_at.1.push(*t);
                    } else {
                        closed_at.0.push(*t);
                    }
                    "closed"
                }
                End::Refused => "refused",
                End::Error => "error",
            };
            *c.entry((*kept, k)).or_default() += 1;
        }
        (c, closed_at)
    };
    let (c1, _) = count(&ends);
    let fds1 = fd_count(srv.pid);
    let overflows = listen_overflows() - overflows0;
    // 100 probes while they are held.
    let h1 = tokio::task::spawn_blocking({
        let h = health.clone();
        move || probe_thread(h, 2.0, Duration::from_millis(20), Some(probe_from)).join()
    })
    .await?
    .unwrap_or_default();
    // A fresh connection from one of the idle clients' addresses: under
    // the cap (250 each), so it is served.
    let other = reqwest::Client::builder()
        .default_headers(auth::headers())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)))
        .timeout(Duration::from_secs(10))
        .build()?
        .get(&health)
        .send()
        .await
        .map(|r| r.status().as_u16());
    let since = t_open.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64((wait as f64 - since).max(0.0))).await;
    let (c2, (fresh_at, kept_at)) = count(&ends);
    let fds2 = fd_count(srv.pid);
    // And /healthz still answers.
    let h2 = tokio::task::spawn_blocking({
        let h = health.clone();
        move || probe_thread(h, 2.0, Duration::from_millis(20), Some(probe_from)).join()
    })
    .await?
    .unwrap_or_default();
    let load1 = loadavg();
    for c in conns {
        c.abort();
    }
    println!("load average at start: {load0}; at end: {load1}");
    println!(
        "{n} connections established in {opened_in:.2} s; a new request from 127.0.1.1 while they were held: {other:?}"
    );
    println!(
        "\n| /healthz from 127.0.0.5 | n | p50 ms | p90 ms | p99 ms | max ms | over 100 ms | failed |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    print_probes("before the idle connections", &h0, 100.0);
    print_probes(&format!("with {n} idle connections held"), &h1, 100.0);
    print_probes(&format!("after {wait} s"), &h2, 100.0);
    let show = |c: &BTreeMap<(bool, &'static str), u64>, kept: bool| {
        ["open", "closed", "refused", "error"]
            .iter()
            .map(|k| format!("{} {k}", c.get(&(kept, *k)).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "\n| idle connections | 1 s after all were established | {wait} s after | closed after idle (s): min / p50 / max |"
    );
    println!("|---|---|---|---|");
    let q = |v: &[f64]| {
        let [p50, _, _, max] = quantiles(v);
        let min = v.iter().copied().fold(f64::NAN, f64::min);
        format!("{min:.1} / {p50:.1} / {max:.1}")
    };
    println!(
        "| never sent a byte ({}) | {} | {} | {} |",
        n - n / 2,
        show(&c1, false),
        show(&c2, false),
        q(&fresh_at)
    );
    println!(
        "| kept alive after one request ({}) | {} | {} | {} |",
        n / 2,
        show(&c1, true),
        show(&c2, true),
        q(&kept_at)
    );
    println!(
        "server open files: {fds0} before, {fds1} with the connections (so {} accepted), {fds2} after {wait} s; \
         listen-queue overflows while opening (kernel TcpExt ListenOverflows): {overflows}",
        fds1.saturating_sub(fds0)
    );
    Ok(())
}

/// Micro-grid centres (places inside the district), as in live_soak.
async fn order_points(
    client: &reqwest::Client,
    base: &str,
    k: usize,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let g: J = client
        .get(format!("{base}/api/grids?level=micro"))
        .send()
        .await?
        .json()
        .await?;
    let codes: Vec<String> = g["grids"]
        .as_array()
        .into_iter()
        .flatten()
        .take(k)
        .filter_map(|x| x["code"].as_str().map(String::from))
        .collect();
    let mut points = Vec::new();
    for c in &codes {
        let d: J = client
            .get(format!("{base}/api/grids/{c}"))
            .send()
            .await?
            .json()
            .await?;
        if let Some(b) = d["bbox"].as_array() {
            let v: Vec<f64> = b.iter().filter_map(J::as_f64).collect();
            if v.len() == 4 {
                points.push(((v[0] + v[2]) / 2.0, (v[1] + v[3]) / 2.0));
            }
        }
    }
    anyhow::ensure!(!points.is_empty(), "no micro-grids");
    Ok(points)
}

/// One memory reading of the server.
struct Mem {
    label: String,
    rss: u64,
    anon: u64,
    huge: u64,
    fds: usize,
    threads: u64,
}

fn mem(pid: u32, label: impl Into<String>) -> Mem {
    Mem {
        label: label.into(),
        rss: status_kb(pid, "VmRSS:"),
        anon: status_kb(pid, "RssAnon:"),
        huge: rollup_kb(pid, "AnonHugePages:"),
        fds: fd_count(pid),
        threads: status_kb(pid, "Threads:"),
    }
}

async fn memory(dir: &Path, store: &Path) -> anyhow::Result<()> {
    let subs = env_u64("HOSTILE_SUBS", 10_000) as usize;
    let orders = env_u64("HOSTILE_ORDERS", 300);
    let rate = env_u64("HOSTILE_ORDER_RATE", 10).max(1);
    let rounds = env_u64("HOSTILE_ROUNDS", 1).max(1);
    let after_secs: Vec<u64> = std::env::var("HOSTILE_AFTER_SECS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![5, 30]);
    let per_source = 400;
    let sources = subs.div_ceil(per_source);
    let srv = start_server(dir, store, "memory").await?;
    let pid = srv.pid;
    let addr = SocketAddr::from(([127, 0, 0, 1], srv.port));
    let client = reqwest::Client::builder()
        .default_headers(auth::headers())
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()?;
    let points = order_points(&client, &srv.base, 200).await?;
    println!(
        "\n## memory: {subs} /api/live subscribers from 127.0.2.1–127.0.2.{sources} ({per_source} each), \
         {orders} work orders at {rate}/s, {rounds} round(s); mimalloc env: {:?}",
        std::env::vars()
            .filter(|(k, _)| k.starts_with("MIMALLOC_"))
            .collect::<Vec<_>>()
    );
    println!("load average at start: {}", loadavg());
    // The allocator returns the start-up's freed memory over the first
    // seconds: "before" is once RSS has settled (3 readings 1 s apart
    // within 2 MB of each other, at most 60 s).
    let t_settle = Instant::now();
    let mut last = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        last.push(status_kb(pid, "VmRSS:"));
        let n = last.len();
        if n >= 3
            && last[n - 3..].iter().max().unwrap_or(&0) - last[n - 3..].iter().min().unwrap_or(&0)
                < 2048
            || t_settle.elapsed() > Duration::from_secs(60)
        {
            break;
        }
    }
    println!(
        "RSS settling after start-up, MB per second: {:?}",
        last.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );
    let mut readings = vec![mem(pid, "before (idle, RSS settled after start-up)")];
    let before = readings[0].rss;
    let mut order_no = 0u64;
    let mut delivery = Vec::new();
    for round in 1..=rounds {
        // Subscribers: each reads its stream and counts `created` events.
        let connected = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let delivered: Arc<Vec<AtomicU64>> =
            Arc::new((0..subs).map(|_| AtomicU64::new(0)).collect());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // At most 100 connecting at once (the listen backlog is 128).
        let sem = Arc::new(tokio::sync::Semaphore::new(100));
        let overflows0 = listen_overflows();
        let t_conn = Instant::now();
        let mut readers = Vec::with_capacity(subs);
        for k in 0..subs {
            let ip = Ipv4Addr::new(127, 0, 2, 1 + (k / per_source) as u8);
            let received = received.clone();
            let (connected, refused, ended, delivered, mut stop, sem) = (
                connected.clone(),
                refused.clone(),
                ended.clone(),
                delivered.clone(),
                stop_rx.clone(),
                sem.clone(),
            );
            readers.push(tokio::spawn(async move {
                let permit = sem.acquire_owned().await;
                let tcp = async {
                    let sock = tokio::net::TcpSocket::new_v4()?;
                    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
                    let mut tcp = sock.connect(addr).await?;
                    tcp.write_all(
                        format!(
                            "GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\n{}Accept: text/event-stream\r\n\r\n",
                            auth::line()
                        )
                        .as_bytes(),
                    )
                    .await?;
                    Ok::<_, std::io::Error>(tcp)
                };
                let Ok(mut tcp) = tcp.await else {
                    refused.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let mut buf = vec![0u8; 16 * 1024];
                let mut carry = String::new();
                let mut hello = false;
                let mut permit = Some(permit);
                loop {
                    tokio::select! {
                        r = tcp.read(&mut buf) => match r {
                            Ok(0) | Err(_) => {
                                if hello { ended.fetch_add(1, Ordering::Relaxed); } else { refused.fetch_add(1, Ordering::Relaxed); }
                                return;
                            }
                            Ok(n) => {
                                received.fetch_add(n as u64, Ordering::Relaxed);
                                carry.push_str(&String::from_utf8_lossy(&buf[..n]));
                                if !hello {
                                    if !carry.starts_with("HTTP/1.1 200") && carry.len() >= 12 {
                                        refused.fetch_add(1, Ordering::Relaxed);
                                        return;
                                    }
                                    if carry.contains("event: hello") {
                                        hello = true;
                                        connected.fetch_add(1, Ordering::Relaxed);
                                        permit.take();
                                    }
                                }
                                // Count whole `created` frames; keep a partial one.
                                let mut end = 0;
                                let mut c = 0;
                                while let Some(i) = carry[end..].find("\n\n") {
                                    let frame = &carry[end..end + i];
                                    if frame.contains("event: event") && frame.contains("\"op\":\"created\"") {
                                        c += 1;
                                    }
                                    end += i + 2;
                                }
                                if c > 0 {
                                    delivered[k].fetch_add(c, Ordering::Relaxed);
                                }
                                carry.drain(..end);
                            }
                        },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }));
        }
        // Wait until every subscriber is in (or refused).
        let deadline = Instant::now() + Duration::from_secs(120);
        while (connected.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed)) < subs as u64
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let conn_secs = t_conn.elapsed().as_secs_f64();
        let overflows = listen_overflows() - overflows0;
        tokio::time::sleep(Duration::from_secs(2)).await;
        readings.push(mem(
            pid,
            format!(
                "round {round}: {} subscribers connected ({conn_secs:.1} s, {overflows} listen-queue overflows), before any order",
                connected.load(Ordering::Relaxed)
            ),
        ));
        // Orders, each its own POST, at `rate` per second; sample RSS.
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) = (peak.clone(), sampling.clone());
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    peak.fetch_max(status_kb(pid, "VmRSS:"), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        let acked = Arc::new(AtomicU64::new(0));
        let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
        let failed: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        let mut posts = Vec::new();
        let t_orders = Instant::now();
        for _ in 0..orders {
            tick.tick().await;
            let i = order_no;
            order_no += 1;
            let (lon, la) = points[i as usize % points.len()];
            let (client, base, acked, lat, failed) = (
                client.clone(),
                srv.base.clone(),
                acked.clone(),
                lat.clone(),
                failed.clone(),
            );
            posts.push(tokio::spawn(async move {
                let body = json!({"type": "Feature", "id": format!("HOSTILE-{i}"),
                    "geometry": {"type": "Point", "coordinates": [lon, la]},
                    "properties": {"source": "grid_report", "category": "sanitation"}});
                let s = Instant::now();
                let r = client
                    .post(format!("{base}/api/events"))
                    .json(&body)
                    .send()
                    .await;
                let status = r.as_ref().map_or(0, |r| r.status().as_u16());
                if status == 201 {
                    acked.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = lat.lock() {
                        l.push(s.elapsed().as_secs_f64() * 1000.0);
                    }
                } else {
                    // The first few refusals, to say why.
                    let detail = match r {
                        Ok(r) => r.text().await.unwrap_or_default(),
                        Err(e) => e.to_string(),
                    };
                    if let Ok(mut f) = failed.lock()
                        && f.len() < 3
                    {
                        f.push(format!(
                            "{status}: {}",
                            detail.chars().take(200).collect::<String>()
                        ));
                    }
                }
            }));
        }
        for p in posts {
            let _ = p.await;
        }
        let post_secs = t_orders.elapsed().as_secs_f64();
        let acked = acked.load(Ordering::Relaxed);
        for f in failed.lock().map(|f| f.clone()).unwrap_or_default() {
            println!("an order was refused: {f}");
        }
        // Wait (at most 60 s) until every connected subscriber has them all.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = delivered
                .iter()
                .filter(|d| d.load(Ordering::Relaxed) >= acked)
                .count() as u64;
            if done
                >= connected.load(Ordering::Relaxed)
                    - ended
                        .load(Ordering::Relaxed)
                        .min(connected.load(Ordering::Relaxed))
                || Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let drain_secs = t_orders.elapsed().as_secs_f64();
        sampling.store(false, Ordering::Relaxed);
        let _ = sampler.await;
        readings.push(mem(
            pid,
            format!("round {round}: after {acked} orders delivered"),
        ));
        let peak = peak.load(Ordering::Relaxed);
        let counts: Vec<u64> = delivered
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .collect();
        let complete = counts.iter().filter(|&&c| c == acked).count();
        let l = lat.lock().map(|l| l.clone()).unwrap_or_default();
        delivery.push(format!(
            "round {round}: {} connected, {} refused, {} streams ended early; {acked}/{orders} orders acknowledged in {post_secs:.1} s \
             (POST p50/p90/p99/max ms {}); subscribers with every order {complete}/{subs} (min {}, max {}) after {drain_secs:.1} s; \
             peak RSS while posting {} MB; {:.1} KB received per subscriber",
            connected.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            ended.load(Ordering::Relaxed),
            fmt_q(&l),
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
            peak / 1024,
            received.load(Ordering::Relaxed) as f64 / subs as f64 / 1024.0
        ));
        // Everyone hangs up at once.
        let _ = stop_tx.send(true);
        for r in readers {
            let _ = r.await;
        }
        let t_gone = Instant::now();
        for &after in &after_secs {
            let left = Duration::from_secs(after).saturating_sub(t_gone.elapsed());
            tokio::time::sleep(left).await;
            readings.push(mem(
                pid,
                format!("round {round}: {after} s after every subscriber disconnected"),
            ));
        }
    }
    // An experiment on the idle server (e.g. gdb calling into the
    // allocator), then one more reading.
    if let Ok(hook) = std::env::var("HOSTILE_MEM_HOOK") {
        let st = std::process::Command::new("bash")
            .arg("-c")
            .arg(&hook)
            .env("HOSTILE_PID", pid.to_string())
            .stdout(std::process::Stdio::null())
            .status();
        tokio::time::sleep(Duration::from_secs(2)).await;
        readings.push(mem(pid, format!("after HOSTILE_MEM_HOOK ({st:?})")));
    }
    println!("load average at end: {}", loadavg());
    for d in &delivery {
        println!("{d}");
    }
    println!(
        "\n| server | VmRSS MB | vs before | RssAnon MB | AnonHugePages MB | open files | threads |"
    );
    println!("|---|---|---|---|---|---|---|");
    for m in &readings {
        println!(
            "| {} | {:.0} | {:+.0} % | {:.0} | {:.0} | {} | {} |",
            m.label,
            m.rss as f64 / 1024.0,
            (m.rss as f64 / before as f64 - 1.0) * 100.0,
            m.anon as f64 / 1024.0,
            m.huge as f64 / 1024.0,
            m.fds,
            m.threads
        );
    }
    if let Some(last) = readings.iter().rev().find(|m| {
        m.label
            .ends_with(" 30 s after every subscriber disconnected")
    }) {
        let r = last.rss as f64 / before as f64;
        println!(
            "target: RSS 30 s after disconnect within 20 % of before: {:.0} → {:.0} MB ({:+.0} %): {}",
            before as f64 / 1024.0,
            last.rss as f64 / 1024.0,
            (r - 1.0) * 100.0,
            if r <= 1.2 { "MET" } else { "NOT MET" }
        );
    }
    Ok(())
}

/// A closed ring of `n` distinct vertices round `c` (degrees), as
/// `[[lon, lat], …]`.
fn ring_coords(n: usize, c: (f64, f64), r: (f64, f64)) -> Vec<[f64; 2]> {
    (0..=n)
        .map(|i| {
            let a = (i % n) as f64 / n as f64 * std::f64::consts::TAU;
            [c.0 + r.0 * a.cos(), c.1 + r.1 * a.sin()]
        })
        .collect()
}

/// The codes of one grid level.
async fn grid_codes(
    client: &reqwest::Client,
    base: &str,
    level: &str,
) -> anyhow::Result<Vec<String>> {
    let g: J = client
        .get(format!("{base}/api/grids?level={level}"))
        .send()
        .await?
        .json()
        .await?;
    Ok(g["grids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["code"].as_str().map(String::from))
        .collect())
}

/// Part 4, `bounds`: the largest inputs the bounds accept (an area of
/// `MAX_AREA_VERTICES - 1` vertices, an `IN` list of `MAX_IN_ITEMS` grid
/// codes, a geometry literal of `MAX_VERTICES - 1` vertices, and all three
/// at once), counted and with features, each HOSTILE_REPS times on an idle
/// server; and the same one step over each bound, which must be a 400.
async fn bounds(dir: &Path, store: &Path) -> anyhow::Result<()> {
    use onemap::query::{MAX_AREA_VERTICES, filter::MAX_IN_ITEMS, filter::MAX_VERTICES};
    let reps = env_u64("HOSTILE_REPS", 5) as usize;
    let srv = start_server(dir, store, "bounds").await?;
    let base = srv.base.clone();
    let client = reqwest::Client::builder()
        .default_headers(auth::headers())
        .timeout(Duration::from_secs(120))
        .build()?;
    let b = district_bbox(&client, &base).await?;
    let c = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    // Round the whole district (the ellipse through the bbox's corners).
    let whole = ((b[2] - b[0]) * 0.75, (b[3] - b[1]) * 0.75);
    let half = ((b[2] - b[0]) * 0.3, (b[3] - b[1]) * 0.3);
    let micro = grid_codes(&client, &base, "micro").await?;
    let codes = |n: usize| -> String {
        let v: Vec<String> = (0..n)
            .map(|i| match micro.get(i) {
                Some(c) => format!("'{c}'"),
                None => format!("'x{i}'"),
            })
            .collect();
        format!("grid IN ({})", v.join(","))
    };
    let literal = |n: usize| -> String {
        let pts: Vec<String> = ring_coords(n, c, half)
            .iter()
            .map(|p| format!("{} {}", p[0], p[1]))
            .collect();
        format!("S_INTERSECTS(geometry, POLYGON(({})))", pts.join(","))
    };
    let area = |n: usize| json!({"type": "Polygon", "coordinates": [ring_coords(n, c, whole)]});
    let bbox = json!({"bbox": b});
    let addr = json!(["addresses"]);
    let cases: Vec<(String, J, u16)> = vec![
        (
            format!("area of {} vertices, every layer", MAX_AREA_VERTICES - 1),
            json!({"area": area(MAX_AREA_VERTICES - 1)}),
            200,
        ),
        (
            format!("IN list of {MAX_IN_ITEMS} micro-grid codes, addresses"),
            json!({"area": bbox, "layers": addr, "filter": codes(MAX_IN_ITEMS)}),
            200,
        ),
        (
            format!(
                "S_INTERSECTS literal of {} vertices, addresses",
                MAX_VERTICES - 1
            ),
            json!({"area": bbox, "layers": addr, "filter": literal(MAX_VERTICES - 1)}),
            200,
        ),
        (
            "all three at once, addresses".into(),
            json!({"area": area(MAX_AREA_VERTICES - 1), "layers": addr, "filter": format!("{} AND {}", codes(MAX_IN_ITEMS), literal(MAX_VERTICES - 1))}),
            200,
        ),
        (
            format!("area of {} vertices", MAX_AREA_VERTICES + 1),
            json!({"area": area(MAX_AREA_VERTICES + 1)}),
            400,
        ),
        (
            format!("IN list of {}", MAX_IN_ITEMS + 1),
            json!({"area": bbox, "layers": addr, "filter": codes(MAX_IN_ITEMS + 1)}),
            400,
        ),
        (
            format!("literal of {} vertices", MAX_VERTICES + 1),
            json!({"area": bbox, "layers": addr, "filter": literal(MAX_VERTICES + 1)}),
            400,
        ),
    ];
    println!(
        "\n## bounds: district bbox {b:?}, {} micro-grids, {reps} runs of each on an idle server\n",
        micro.len()
    );
    println!("| input | body | limit | status | matched | ms p50 | ms max |");
    println!("|---|---|---|---|---|---|---|");
    for (label, body, want) in cases {
        let limits: &[u64] = if want == 200 { &[0, 1000] } else { &[0] };
        for &limit in limits {
            let mut body = body.clone();
            body["limit"] = json!(limit);
            let bytes = serde_json::to_vec(&body)?;
            let mut ms = Vec::new();
            let (mut status, mut matched) = (0u16, 0u64);
            for _ in 0..reps {
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/api/query"))
                    .header("content-type", "application/json")
                    .body(bytes.clone())
                    .send()
                    .await?;
                status = r.status().as_u16();
                let v: J = r.json().await.unwrap_or_default();
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                matched = v["total"].as_u64().unwrap_or_else(|| {
                    v["layers"]
                        .as_object()
                        .map(|m| m.values().filter_map(|l| l["count"].as_u64()).sum())
                        .unwrap_or(0)
                });
            }
            let [p50, _, _, max] = quantiles(&ms);
            let flag = if status == want { "" } else { " (unexpected)" };
            println!(
                "| {label} | {} kB | {limit} | {status}{flag} | {matched} | {p50:.1} | {max:.1} |",
                bytes.len() / 1000
            );
        }
    }
    Ok(())
}

/// Part 5, `mixed`: HOSTILE_CONNS (4) connections for HOSTILE_SECS (300) s,
/// each looping over a mix of tiles (a random z10–16 list over the store's
/// bbox, gzip accepted, as a browser does) and area queries (streets,
/// communities, micro-grids, bboxes and circles: counts, and one in four
/// with up to 100 features), HOSTILE_QUERY_PCT (20) % of requests queries.
/// A request not answered within HOSTILE_TIMEOUT (10) s counts as a
/// timeout. Run it on the city demo (ONEMAP_BENCH_STORE=/tmp/city.gpkg).
async fn mixed(dir: &Path, store: &Path) -> anyhow::Result<()> {
    let secs = env_u64("HOSTILE_SECS", 300) as f64;
    let conns = env_u64("HOSTILE_CONNS", 4) as usize;
    let pct = env_u64("HOSTILE_QUERY_PCT", 20);
    let timeout = Duration::from_secs(env_u64("HOSTILE_TIMEOUT", 10));
    let srv = start_server(dir, store, "mixed").await?;
    let base = srv.base.clone();
    let client = reqwest::Client::builder()
        .default_headers(auth::headers())
        .timeout(Duration::from_secs(120))
        .build()?;
    let b = district_bbox(&client, &base).await?;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut unit = move || (next() >> 11) as f64 / (1u64 << 53) as f64;
    let tiles: Vec<String> = (0..2000)
        .map(|_| {
            let z = 10 + (unit() * 7.0) as u32;
            let (z, x, y) = tile_of(
                b[0] + unit() * (b[2] - b[0]),
                b[1] + unit() * (b[3] - b[1]),
                z.min(16),
            );
            format!("/tiles/all/{z}/{x}/{y}.mvt")
        })
        .collect();
    let mut areas: Vec<J> = Vec::new();
    for (level, n) in [("street", 40usize), ("community", 120), ("micro", 240)] {
        let codes = grid_codes(&client, &base, level).await?;
        let step = (codes.len() / n).max(1);
        areas.extend(
            codes
                .iter()
                .step_by(step)
                .take(n)
                .map(|c| json!({"grid": c})),
        );
    }
    for _ in 0..100 {
        let (w, h) = (0.002 + unit() * 0.05, 0.002 + unit() * 0.05);
        let (x, y) = (
            b[0] + unit() * (b[2] - b[0] - w),
            b[1] + unit() * (b[3] - b[1] - h),
        );
        areas.push(json!({"bbox": [x, y, x + w, y + h]}));
        let p = [b[0] + unit() * (b[2] - b[0]), b[1] + unit() * (b[3] - b[1])];
        areas.push(json!({"point": p, "radius_m": 100.0 + unit() * 4_900.0}));
    }
    let queries: Vec<Vec<u8>> = areas
        .iter()
        .enumerate()
        .map(|(i, a)| {
            serde_json::to_vec(&json!({"area": a, "limit": if i % 4 == 0 { 100 } else { 0 }}))
        })
        .collect::<Result<_, _>>()?;
    println!(
        "\n## mixed: bbox {b:?}; {conns} connections, {secs} s, {pct} % area queries ({} areas), \
         {} tiles z10–16; timeout {} s; load average {}",
        queries.len(),
        tiles.len(),
        timeout.as_secs(),
        loadavg()
    );
    let tiles = Arc::new(tiles);
    let queries = Arc::new(queries);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..conns {
        let (tiles, queries, base) = (tiles.clone(), queries.clone(), base.clone());
        // One connection each: a client with a pool of one.
        let c = reqwest::Client::builder()
            .default_headers(auth::headers())
            .pool_max_idle_per_host(1)
            .timeout(timeout)
            .build()?;
        tasks.push(tokio::spawn(async move {
            let mut s = (k as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
            let (mut tile_ms, mut query_ms) = (Vec::new(), Vec::new());
            let mut status: BTreeMap<String, u64> = BTreeMap::new();
            let mut timeouts = 0u64;
            while t0.elapsed().as_secs_f64() < secs {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let is_query = s % 100 < pct;
                let t = Instant::now();
                let r = if is_query {
                    let q = &queries[(s >> 8) as usize % queries.len()];
                    c.post(format!("{base}/api/query"))
                        .header("content-type", "application/json")
                        .header("accept-encoding", "gzip")
                        .body(q.clone())
                        .send()
                        .await
                } else {
                    let p = &tiles[(s >> 8) as usize % tiles.len()];
                    c.get(format!("{base}{p}"))
                        .header("accept-encoding", "gzip")
                        .send()
                        .await
                };
                let kind = if is_query { "query" } else { "tile" };
                let code = match r {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        match r.bytes().await {
                            Ok(_) => st.to_string(),
                            Err(e) if e.is_timeout() => {
                                timeouts += 1;
                                "timeout".into()
                            }
                            Err(_) => "cut".into(),
                        }
                    }
                    Err(e) if e.is_timeout() => {
                        timeouts += 1;
                        "timeout".into()
                    }
                    Err(_) => "error".into(),
                };
                *status.entry(format!("{kind} {code}")).or_default() += 1;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                if is_query {
                    query_ms.push(ms);
                } else {
                    tile_ms.push(ms);
                }
            }
            (tile_ms, query_ms, status, timeouts)
        }));
    }
    let (mut tile_ms, mut query_ms, mut status, mut timeouts) =
        (Vec::new(), Vec::new(), BTreeMap::<String, u64>::new(), 0u64);
    for t in tasks {
        let (a, b, s, n) = t.await?;
        tile_ms.extend(a);
        query_ms.extend(b);
        for (k, v) in s {
            *status.entry(k).or_default() += v;
        }
        timeouts += n;
    }
    let took = t0.elapsed().as_secs_f64();
    println!("\n| requests | n | per s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (label, v) in [("tiles", &tile_ms), ("area queries", &query_ms)] {
        println!(
            "| {label} | {} | {:.0} | {} |",
            v.len(),
            v.len() as f64 / took,
            fmt_q(v)
        );
    }
    println!(
        "\nstatuses: {}; timeouts: {timeouts}; load average at the end {}",
        status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        loadavg()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let part = std::env::var("HOSTILE_PART").unwrap_or_else(|_| "all".into());
    anyhow::ensure!(
        ["stall", "idle", "memory", "bounds", "mixed", "all"].contains(&part.as_str()),
        "HOSTILE_PART must be stall, idle, memory, bounds, mixed or all"
    );
    let nofile = raise_nofile();
    println!(
        "hostile load: part {part}; server {}; open-file limit of this process {nofile}; {} cores; load average {}",
        bin(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let dir = tempfile::tempdir()?;
    let store = prepare_store(dir.path())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        if part == "stall" || part == "all" {
            stall(dir.path(), &store).await?;
        }
        if part == "idle" || part == "all" {
            idle(dir.path(), &store).await?;
        }
        if part == "memory" || part == "all" {
            memory(dir.path(), &store).await?;
        }
        if part == "bounds" || part == "all" {
            bounds(dir.path(), &store).await?;
        }
        // Not in "all": it is meant for the city store, for 5 minutes.
        if part == "mixed" {
            mixed(dir.path(), &store).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // Idle connections' tasks hold sockets; do not wait for them.
    rt.shutdown_background();
    Ok(())
}
