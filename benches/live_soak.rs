//! Soak of the live path (not a test): the release server as a process on
//! the district demo, N SSE subscribers and R work orders per second over
//! loopback for D seconds. Reports delivered/dropped per subscriber, ingest
//! latency p50/p99, and the server's RSS at start and end.
//!
//! cargo bench --bench live_soak            (200 subscribers, 500/s, 600 s)
//! SOAK_SECS=60 SOAK_SUBS=50 SOAK_RATE=200 cargo bench --bench live_soak
//! SOAK_SERVER_LOG=/tmp/server.log …: keep the server's warnings (slow batches)
//! SOAK_MODE=update …: 2,000 orders first, then every request changes one
//! order's department (no new rows: shows whether memory stays flat)

#[path = "common/auth.rs"]
mod auth;

use futures::StreamExt;
use serde_json::{Value as J, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let secs = env("SOAK_SECS", 600);
    let subs = env("SOAK_SUBS", 200) as usize;
    let rate = env("SOAK_RATE", 500);
    let update = std::env::var("SOAK_MODE").is_ok_and(|m| m == "update");
    let op = if update { "updated" } else { "created" };
    let bin = env!("CARGO_BIN_EXE_onemap");
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("soak.gpkg");
    let ok = std::process::Command::new(bin)
        .args(["demo", "--scale", "district", "--store"])
        .arg(&store)
        .stderr(std::process::Stdio::null())
        .status()?
        .success();
    anyhow::ensure!(ok, "demo failed");
    auth::make_token(bin, &["--store", &store.display().to_string()])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = std::process::Command::new(bin)
        .args(["serve", "--store"])
        .arg(&store)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "onemap=warn")
        .stderr(match std::env::var("SOAK_SERVER_LOG") {
            Ok(p) => std::process::Stdio::from(std::fs::File::create(p)?),
            Err(_) => std::process::Stdio::null(),
        })
        .spawn()?;
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let client = reqwest::Client::builder()
            .default_headers(auth::headers())
            .pool_max_idle_per_host(256)
            .build()?;
        for _ in 0..300 {
            if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Places inside the district: micro-grid centres.
        let g: J = client.get(format!("{base}/api/grids?level=micro")).send().await?.json().await?;
        let codes: Vec<String> = g["grids"].as_array().unwrap_or(&vec![]).iter().take(500)
            .filter_map(|x| x["code"].as_str().map(String::from)).collect();
        let mut points = Vec::new();
        for c in &codes {
            let d: J = client.get(format!("{base}/api/grids/{c}")).send().await?.json().await?;
            if let Some(b) = d["bbox"].as_array() {
                let v: Vec<f64> = b.iter().filter_map(J::as_f64).collect();
                if v.len() == 4 {
                    points.push(((v[0] + v[2]) / 2.0, (v[1] + v[3]) / 2.0));
                }
            }
        }
        anyhow::ensure!(!points.is_empty(), "no grids");
        let rss_start = rss_kb(pid);
        // Subscribers: count `event` messages; note streams that end.
        let delivered: Arc<Vec<AtomicU64>> = Arc::new((0..subs).map(|_| AtomicU64::new(0)).collect());
        let ended = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        for k in 0..subs {
            let (client, base, delivered, ended) = (client.clone(), base.clone(), delivered.clone(), ended.clone());
            readers.push(tokio::spawn(async move {
                let Ok(r) = client.get(format!("{base}/api/live")).send().await else {
                    ended.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let mut s = r.bytes_stream();
                let mut carry = String::new();
                while let Some(Ok(b)) = s.next().await {
                    carry.push_str(&String::from_utf8_lossy(&b));
                    // Count whole `created` events (a frame may be split
                    // across chunks: keep what follows the last complete one).
                    let mut end = 0;
                    let mut n = 0;
                    while let Some(i) = carry[end..].find("\n\n") {
                        let frame = &carry[end..end + i];
                        if frame.contains("event: event") && frame.contains(&format!("\"op\":\"{op}\"")) {
                            n += 1;
                        }
                        end += i + 2;
                    }
                    if n > 0 {
                        delivered[k].fetch_add(n, Ordering::Relaxed);
                    }
                    carry.drain(..end);
                }
                ended.fetch_add(1, Ordering::Relaxed);
            }));
        }
        const SEEDS: u64 = 2000;
        if update {
            for chunk in 0..SEEDS / 1000 {
                let fs: Vec<J> = (chunk * 1000..(chunk + 1) * 1000)
                    .map(|k| {
                        let (lon, la) = points[k as usize % points.len()];
                        json!({"type": "Feature", "id": format!("SEED-{k}"),
                            "geometry": {"type": "Point", "coordinates": [lon, la]},
                            "properties": {"source": "grid_report", "category": "sanitation"}})
                    })
                    .collect();
                let r = client
                    .post(format!("{base}/api/events"))
                    .json(&json!({"type": "FeatureCollection", "features": fs}))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "seeding failed: {}", r.status());
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Orders at `rate` per second, each its own request.
        let lat: Arc<std::sync::Mutex<Vec<f64>>> = Arc::default();
        let posted = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let sem = Arc::new(tokio::sync::Semaphore::new(128));
        let t0 = Instant::now();
        let total = secs * rate;
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut mid_rss = Vec::new();
        for i in 0..total {
            tick.tick().await;
            if i % (rate * 60) == 0 {
                mid_rss.push(rss_kb(pid));
            }
            let permit = sem.clone().acquire_owned().await?;
            let (client, base, lat, posted, failed) = (client.clone(), base.clone(), lat.clone(), posted.clone(), failed.clone());
            let (lon, la) = points[i as usize % points.len()];
            tokio::spawn(async move {
                let body = json!({"type": "Feature", "id": format!("SOAK-{i}"),
                    "geometry": {"type": "Point", "coordinates": [lon, la]},
                    "properties": {"source": "grid_report", "category": "sanitation"}});
                let s = Instant::now();
                let r = if update {
                    client
                        .patch(format!("{base}/api/events/SEED-{}", i % SEEDS))
                        .json(&json!({"department": format!("d{}", i % 13)}))
                        .send()
                        .await
                } else {
                    client.post(format!("{base}/api/events")).json(&body).send().await
                };
                let ms = s.elapsed().as_secs_f64() * 1000.0;
                match r {
                    Ok(r) if r.status().as_u16() == if update { 200 } else { 201 } => {
                        posted.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut l) = lat.lock() {
                            l.push(ms);
                        }
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(permit);
            });
        }
        let _ = sem.acquire_many(128).await?;
        let elapsed = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_end = rss_kb(pid);
        let posted = posted.load(Ordering::Relaxed);
        let counts: Vec<u64> = delivered.iter().map(|d| d.load(Ordering::Relaxed)).collect();
        let complete = counts.iter().filter(|&&c| c == posted).count();
        let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
        let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
        l.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| l.get(((l.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(f64::NAN);
        println!("live soak ({}): {subs} subscribers, {rate} requests/s for {secs} s (achieved {:.0}/s)", if update { "status/department updates" } else { "new orders" }, posted as f64 / elapsed);
        println!("  orders acknowledged {posted}, failed {}", failed.load(Ordering::Relaxed));
        println!("  subscribers with every event: {complete}/{subs}; delivered min {min} max {max}; streams ended early: {}", ended.load(Ordering::Relaxed));
        println!("  ingest latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}", q(0.5), q(0.9), q(0.99), q(1.0));
        println!("  server RSS MB: start {:.0}, per minute {:?}, end {:.0}", rss_start as f64 / 1024.0,
            mid_rss.iter().map(|k| (*k as f64 / 1024.0).round() as u64).collect::<Vec<_>>(), rss_end as f64 / 1024.0);
        for r in readers {
            r.abort();
        }
        Ok::<_, anyhow::Error>(())
    });
    let _ = child.kill();
    let _ = child.wait();
    result
}
