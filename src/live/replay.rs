//! `onemap replay`: the demo's work orders posted to a running server in
//! time order, so a demo screen comes alive.
//!
//! Each order is posted as new (its id prefixed with the run, its
//! `created_at` now, its deadline as far ahead as it originally was) at
//! `rate` per second; its later life is replayed too, compressed by
//! `speed` (600: an hour of the original takes six seconds): dispatched
//! after a tenth of the time it took to close, processing after a third,
//! closed when it originally closed. Orders still open in the demo stay
//! open at their last status.

use crate::model::value::parse_instant;
use crate::model::{Feature, Value, builtin};
use crate::store::Store;
use geo::Geometry;
use serde_json::{Value as J, json};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

pub struct Options {
    pub url: String,
    /// Orders posted per second.
    pub rate: f64,
    /// How much faster than real time the orders' lives run.
    pub speed: f64,
    /// Stop after this many orders (all when None).
    pub limit: Option<usize>,
    /// An operator token (`Authorization: Bearer`).
    pub token: Option<String>,
    /// How long to wait for the server to be ready (`/readyz` 200): `make
    /// run` starts the replay beside a server that may still be loading a
    /// large store.
    pub wait: Duration,
}

#[derive(Default, Debug)]
pub struct Summary {
    pub posted: usize,
    pub patched: usize,
    pub failed: usize,
}

struct Due {
    at: Instant,
    /// Order of scheduling: a tie in time keeps the order of the steps.
    n: u64,
    id: String,
    status: &'static str,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.n) == (o.at, o.n)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.n).cmp(&(self.at, self.n)) // earliest first
    }
}

fn text(def: &crate::model::LayerDef, f: &Feature, k: &str) -> Option<String> {
    f.get(def, k).and_then(Value::as_str).map(str::to_string)
}

/// Waits until `base/readyz` answers 200, asking every half second, for
/// at most `wait`; then fails saying what it saw last.
async fn wait_ready(client: &reqwest::Client, base: &str, wait: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + wait;
    let mut told = false;
    loop {
        let last = match client.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("/readyz answered {}", r.status()),
            Err(e) => format!("{e}"),
        };
        if Instant::now() >= until {
            anyhow::bail!(
                "no ready onemap server at {base} after {} s: {last}",
                wait.as_secs()
            );
        }
        if !told {
            eprintln!("replay: waiting for {base}/readyz ({last})");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Posts the store's work orders to `opts.url`.
pub async fn run(store: &dyn Store, opts: &Options) -> anyhow::Result<Summary> {
    if !(opts.rate > 0.0 && opts.rate <= 10_000.0) {
        anyhow::bail!("--rate must be above 0 and at most 10000 per second");
    }
    if opts.speed.is_nan() || opts.speed < 1.0 {
        anyhow::bail!("--speed must be at least 1");
    }
    let def = builtin::layer(builtin::EVENTS).ok_or_else(|| anyhow::anyhow!("no events schema"))?;
    let mut orders = store.load_layer(builtin::EVENTS).await?;
    // Not the orders an earlier replay posted (ids `R<hhmmss>-…`).
    let replayed = |f: &Feature| {
        text(&def, f, "ext_id").is_some_and(|e| {
            e.len() > 8
                && e.starts_with('R')
                && e[1..7].bytes().all(|b| b.is_ascii_digit())
                && &e[7..8] == "-"
        })
    };
    orders.retain(|f| !replayed(f));
    orders.sort_by_key(|f| text(&def, f, "created_at"));
    if let Some(n) = opts.limit {
        orders.truncate(n);
    }
    let base = opts.url.trim_end_matches('/').to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = &opts.token {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
            .map_err(|_| anyhow::anyhow!("the token has characters a header cannot carry"))?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()?;
    wait_ready(&client, &base, opts.wait).await?;
    let run = chrono::Utc::now().format("%y%m%d%H%M%S%3f").to_string();
    let step = Duration::from_secs_f64(1.0 / opts.rate);
    let start = Instant::now();
    let mut due: BinaryHeap<Due> = BinaryHeap::new();
    let mut sum = Summary::default();
    let mut next = 0usize;
    let mut scheduled = 0u64;
    loop {
        let post_at = start + step.mul_f64(next as f64);
        let patch_at = due.peek().map(|d| d.at);
        let now = Instant::now();
        if next < orders.len() && patch_at.is_none_or(|p| post_at <= p) {
            if post_at > now {
                tokio::time::sleep(post_at - now).await;
            }
            let f = &orders[next];
            next += 1;
            let Geometry::Point(p) = f.geometry else {
                continue;
            };
            let id = format!(
                "R{run}-{}",
                text(&def, f, "ext_id").unwrap_or_else(|| f.id.to_string())
            );
            let t = |k| text(&def, f, k).and_then(|s| parse_instant(&s));
            let (created, deadline, closed) = (t("created_at"), t("deadline"), t("closed_at"));
            let now_utc = chrono::Utc::now();
            let mut props = json!({
                "source": text(&def, f, "source"),
                "category": text(&def, f, "category"),
                "title": text(&def, f, "title"),
                "department": text(&def, f, "department"),
                "created_at": now_utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
            if let (Some(c), Some(d)) = (created, deadline) {
                props["deadline"] = json!(
                    (now_utc + chrono::Duration::milliseconds(d - c))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            let body = json!({"type": "Feature", "id": id, "geometry": {"type": "Point", "coordinates": [p.x(), p.y()]}, "properties": props});
            match client
                .post(format!("{base}/api/events"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => sum.posted += 1,
                Ok(r) => {
                    sum.failed += 1;
                    tracing::warn!(
                        "order {id}: {} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                    continue;
                }
                Err(e) => {
                    sum.failed += 1;
                    tracing::warn!("order {id}: {e}");
                    continue;
                }
            }
            // Its later life, compressed.
            let status = text(&def, f, "status").unwrap_or_default();
            let life = match (created, closed) {
                (Some(c), Some(x)) if x > c => {
                    Some(Duration::from_millis(((x - c) as f64 / opts.speed) as u64))
                }
                _ => None,
            };
            let at = Instant::now();
            // Open orders: dispatched after half an hour, processing after
            // two (original time).
            let (half, two) = (
                Duration::from_secs_f64(1800.0 / opts.speed),
                Duration::from_secs_f64(7200.0 / opts.speed),
            );
            let steps: Vec<(Duration, &'static str)> = match (status.as_str(), life) {
                ("closed", Some(l)) => {
                    vec![(l / 10, "dispatched"), (l / 3, "processing"), (l, "closed")]
                }
                ("dispatched", _) => vec![(half, "dispatched")],
                ("processing", _) => vec![(half, "dispatched"), (two, "processing")],
                _ => vec![],
            };
            for (after, status) in steps {
                scheduled += 1;
                due.push(Due {
                    at: at + after,
                    n: scheduled,
                    id: id.clone(),
                    status,
                });
            }
        } else if let Some(d) = due.pop() {
            if d.at > now {
                tokio::time::sleep(d.at - now).await;
            }
            let r = client
                .patch(format!("{base}/api/events/{}", d.id))
                .json(&json!({"status": d.status}))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => sum.patched += 1,
                Ok(r) => {
                    sum.failed += 1;
                    let t: J = r.json().await.unwrap_or(J::Null);
                    tracing::warn!("order {} → {}: {}", d.id, d.status, t["detail"]);
                }
                Err(e) => {
                    sum.failed += 1;
                    tracing::warn!("order {} → {}: {e}", d.id, d.status);
                }
            }
        } else {
            break;
        }
        if (sum.posted + sum.patched) % 500 == 0 && sum.posted > 0 {
            tracing::info!(
                "replay: {} posted, {} status changes, {} failed",
                sum.posted,
                sum.patched,
                sum.failed
            );
        }
    }
    Ok(sum)
}
