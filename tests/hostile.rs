//! Hostile input against the real server: nested filters, huge polygons,
//! long IN lists, slow bodies, idle connections, far-back replays, files
//! outside the web app. Throughout, the server stays up and `/healthz`
//! answers; every bad request gets a 4xx problem and changes nothing.
//! (No timing is asserted beyond "answers at all within a generous
//! deadline": figures live in BENCHMARKS.md.)

mod common;

use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn small_server() -> (tempfile::TempDir, common::TestServer) {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 5).await;
    let srv = common::serve(store, common::config()).await;
    (dir, srv)
}

/// `/healthz` answers 200 (within 5 s: a dead or stalled server does not).
async fn healthy(srv: &common::TestServer) {
    let r = tokio::time::timeout(Duration::from_secs(5), srv.get("/healthz"))
        .await
        .expect("/healthz did not answer within 5 s");
    assert_eq!(r.status(), 200);
}

fn nested_inputs(n: usize) -> Vec<String> {
    // Unbalanced: refused at any length. The rest are valid when shallow,
    // so they nest one level deeper than the bound at least.
    let unbalanced = ["(".repeat(n), format!("{}a", "NOT (".repeat(n))];
    let n = n.max(onemap::query::filter::MAX_TEXT_DEPTH + 1);
    let mut v = unbalanced.to_vec();
    v.extend([
        format!("{}category = 'fire'{}", "(".repeat(n), ")".repeat(n)),
        format!("{}category = 'fire'", "NOT ".repeat(n)),
        format!("{}1 = level", "-".repeat(n)),
        format!("{}x", "s_intersects(".repeat(n)),
    ]);
    v
}

#[tokio::test]
async fn nested_filters_are_400_and_the_server_lives() {
    let (_d, srv) = small_server().await;
    for n in [10usize, 100, 1_000, 10_000, 100_000] {
        for f in nested_inputs(n) {
            // POST /api/query
            let r = srv
                .client
                .post(format!("{}/api/query", srv.base))
                .json(&json!({"area": {"bbox": [-180, -90, 180, 90]}, "layers": ["risks"], "filter": f, "limit": 0}))
                .send()
                .await
                .expect("query");
            let p = common::expect_problem(r, 400).await;
            assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()));
            // OGC items, as a query string (long ones are 414/400, never 5xx).
            if f.len() < 4_000 {
                let r = srv
                    .get(&format!(
                        "/ogc/collections/risks/items?filter={}",
                        common::url_escape(&f)
                    ))
                    .await;
                assert_eq!(r.status(), 400, "{n}: {}", &f[..f.len().min(30)]);
            }
        }
        healthy(&srv).await;
    }
    // The same in cql2-json: nested NOTs.
    let mut j = json!({"op": "=", "args": [{"property": "category"}, "fire"]});
    for _ in 0..500 {
        j = json!({"op": "not", "args": [j]});
    }
    let r = srv
        .client
        .post(format!("{}/api/query", srv.base))
        .json(&json!({"area": {"bbox": [-180, -90, 180, 90]}, "layers": ["risks"], "filter": j, "limit": 0}))
        .send()
        .await
        .expect("query");
    common::expect_problem(r, 400).await;
    healthy(&srv).await;
}

/// A ring of `n` vertices around the demo's centre.
fn ring(n: usize, c: (f64, f64), r: f64) -> serde_json::Value {
    let pts: Vec<[f64; 2]> = (0..=n)
        .map(|i| {
            let a = (i % n) as f64 / n as f64 * std::f64::consts::TAU;
            [c.0 + r * a.cos(), c.1 + r * a.sin()]
        })
        .collect();
    json!({"type": "Polygon", "coordinates": [pts]})
}

#[tokio::test]
async fn bounds_on_areas_lists_and_literals() {
    let (_d, srv) = small_server().await;
    let (_, layers) = srv.get_json("/api/layers").await;
    let b = layers
        .as_array()
        .and_then(|a| a.iter().find(|l| l["name"] == "addresses"))
        .map(|l| l["bbox"].clone())
        .expect("addresses bbox");
    let c = (
        (b[0].as_f64().unwrap_or(0.0) + b[2].as_f64().unwrap_or(0.0)) / 2.0,
        (b[1].as_f64().unwrap_or(0.0) + b[3].as_f64().unwrap_or(0.0)) / 2.0,
    );
    let query = |body: serde_json::Value| {
        srv.client
            .post(format!("{}/api/query", srv.base))
            .json(&body)
            .send()
    };
    // The largest area accepted answers; one vertex more is a 400.
    let max = onemap::query::MAX_AREA_VERTICES;
    let r = query(json!({"area": ring(max - 1, c, 0.02), "limit": 0}))
        .await
        .expect("query");
    assert_eq!(r.status(), 200);
    let r = query(json!({"area": ring(max + 10, c, 0.02), "limit": 0}))
        .await
        .expect("query");
    let p = common::expect_problem(r, 400).await;
    assert!(
        p["detail"].as_str().unwrap_or("").contains("at most"),
        "{p}"
    );
    // A self-intersecting many-vertex area is refused, saying where.
    let mut bow = ring(5_000, c, 0.02);
    bow["coordinates"][0][10] = json!([c.0 - 0.03, c.1]);
    let r = query(json!({"area": bow, "limit": 0}))
        .await
        .expect("query");
    let p = common::expect_problem(r, 400).await;
    assert!(p["detail"].as_str().unwrap_or("").contains("near"), "{p}");

    // IN lists: the longest accepted answers, a longer one is a 400.
    let list = |n: usize| {
        let items: Vec<String> = (0..n).map(|i| format!("'c{i}'")).collect();
        format!("category IN ({})", items.join(","))
    };
    let n = onemap::query::filter::MAX_IN_ITEMS;
    let r = query(json!({"area": {"bbox": [-180, -90, 180, 90]}, "layers": ["risks"], "filter": list(n), "limit": 0}))
        .await
        .expect("query");
    assert_eq!(r.status(), 200);
    let r = query(json!({"area": {"bbox": [-180, -90, 180, 90]}, "layers": ["risks"], "filter": list(n + 1), "limit": 0}))
        .await
        .expect("query");
    common::expect_problem(r, 400).await;

    // Geometry literals in a filter: over the bound is a 400.
    let lit = |n: usize| {
        let pts: Vec<String> = (0..=n)
            .map(|i| {
                let a = (i % n) as f64 / n as f64 * std::f64::consts::TAU;
                format!("{} {}", c.0 + 0.02 * a.cos(), c.1 + 0.02 * a.sin())
            })
            .collect();
        format!("S_INTERSECTS(geometry, POLYGON(({})))", pts.join(","))
    };
    let v = onemap::query::filter::MAX_VERTICES;
    let r = query(json!({"area": {"bbox": [-180, -90, 180, 90]}, "layers": ["addresses"], "filter": lit(v - 1), "limit": 0}))
        .await
        .expect("query");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = query(json!({"area": {"bbox": [-180, -90, 180, 90]}, "layers": ["addresses"], "filter": lit(v + 10), "limit": 0}))
        .await
        .expect("query");
    common::expect_problem(r, 400).await;
    healthy(&srv).await;
}

#[tokio::test]
async fn far_back_last_event_id_gets_reset_not_the_log() {
    let (_d, srv) = small_server().await;
    for id in ["-9223372036854775808", "-1", "9223372036854775807"] {
        let mut r = srv
            .client
            .get(format!("{}/api/live", srv.base))
            .header("Last-Event-ID", id)
            .send()
            .await
            .expect("live");
        assert_eq!(r.status(), 200, "{id}");
        let mut got = String::new();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(3) && !got.contains("event: reset") {
            match tokio::time::timeout(Duration::from_millis(500), r.chunk()).await {
                Ok(Ok(Some(b))) => got.push_str(&String::from_utf8_lossy(&b)),
                _ => break,
            }
        }
        assert!(got.contains("event: hello"), "{id}: {got}");
        if id.starts_with('-') {
            assert!(got.contains("event: reset"), "{id}: {got}");
        }
        // Never the log: no replayed `event` messages.
        assert!(
            !got.contains("event: event"),
            "{id}: {}",
            &got[..got.len().min(300)]
        );
        assert!(got.len() < 10_000, "{id}: {} bytes", got.len());
    }
    // Not a number: a 400.
    let r = srv
        .client
        .get(format!("{}/api/live", srv.base))
        .header("Last-Event-ID", "nan")
        .send()
        .await
        .expect("live");
    common::expect_problem(r, 400).await;
}

#[tokio::test]
async fn only_the_web_app_is_served() {
    let (_d, srv) = small_server().await;
    for ok in ["/", "/index.html", "/app/main.js", "/app/app.css"] {
        assert_eq!(srv.get(ok).await.status(), 200, "{ok}");
    }
    for hidden in [
        "/package.json",
        "/package-lock.json",
        "/tests/harness.mjs",
        "/tools/build-style.mjs",
        "/README.md",
        "/node_modules/playwright-core/package.json",
        "/node_modules/.package-lock.json",
        "/app/../package.json",
        "/%2e%2e/Cargo.toml",
    ] {
        let r = srv.get(hidden).await;
        assert_eq!(r.status(), 404, "{hidden} served");
    }
}

/// Reads what the server says on a raw connection until it closes (or 5 s).
async fn read_to_close(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    r.ok().map(|_| String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test]
async fn slow_and_idle_clients_are_closed_and_capped() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 5).await;
    let mut cfg = common::config();
    cfg.limits.header_timeout = Duration::from_millis(500);
    cfg.limits.body_timeout = Duration::from_millis(500);
    cfg.limits.per_client = 50;
    let srv = common::serve(store, cfg).await;
    let addr = srv.running.addr;

    // Headers that never end: closed after the header timeout.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert!(
        read_to_close(&mut s).await.is_some(),
        "slow headers kept open"
    );

    // A body that never arrives: 408 after the body timeout.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"POST /api/query HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"area\":",
    )
    .await
    .expect("write");
    let got = read_to_close(&mut s).await.unwrap_or_default();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");

    // Idle connections beyond the per-client cap are refused with a
    // reason; the ones within it are closed once idle too long.
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let got = read_to_close(&mut s).await.unwrap_or_default();
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("too many connections"), "{got}");
    // Another client address is not affected (127.0.0.2 is loopback too).
    let other = tokio::net::TcpSocket::new_v4().expect("socket");
    other
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut s = other.connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let got = read_to_close(&mut s).await.unwrap_or_default();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // The idle ones are closed by the server after the timeout.
    for mut h in held {
        assert!(read_to_close(&mut h).await.is_some(), "idle kept open");
    }
    healthy(&srv).await;
}

#[tokio::test]
async fn many_idle_connections_leave_healthz_answering() {
    let (_d, srv) = small_server().await;
    let addr = srv.running.addr;
    // 2,000 idle connections spread over 8 loopback addresses (the per
    // client cap is 512).
    let mut held = Vec::new();
    for i in 0..2_000u32 {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        let ip = format!("127.0.1.{}:0", 1 + i % 8);
        sock.bind(ip.parse().expect("addr")).expect("bind");
        match sock.connect(addr).await {
            Ok(s) => held.push(s),
            Err(e) => panic!("connection {i}: {e}"),
        }
    }
    for _ in 0..5 {
        healthy(&srv).await;
    }
    assert_eq!(held.len(), 2_000);
}

#[tokio::test]
async fn huge_and_malformed_bodies_change_nothing() {
    let (_d, srv) = small_server().await;
    let (_, before) = srv.get_json("/healthz").await;
    let big = vec![b'['; onemap::api::DEFAULT_BODY_LIMIT + 10];
    for (path, body) in [
        ("/api/query", big.clone()),
        ("/api/events", big.clone()),
        ("/api/query", b"{\"area\":".to_vec()),
        ("/api/events", "[".repeat(100_000).into_bytes()),
        ("/api/plans", "{".repeat(100_000).into_bytes()),
        (
            "/api/events",
            b"{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1e999,0]}}"
                .to_vec(),
        ),
    ] {
        let r = srv
            .client
            .post(format!("{}{path}", srv.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
    }
    let (_, after) = srv.get_json("/healthz").await;
    assert_eq!(before["seq"], after["seq"], "a refused request wrote");
    healthy(&srv).await;
}

/// A bad filter is a 400 even while the heavy lane is full: short ones are
/// parsed before the query is queued, long ones (over 16 KiB) on the tile
/// lane. A good query at the same moment is a 503 with `Retry-After`.
#[tokio::test]
async fn bad_filters_are_400_while_the_heavy_lane_is_full() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 5).await;
    let mut cfg = common::config();
    cfg.work.threads = 1;
    cfg.work.queue = 0;
    let (app, running) = common::serve_state(store, cfg).await;
    let srv = common::client_for(running);
    // Occupy the heavy lane's one thread (and its empty queue).
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let lane = app.clone();
    let blocker = tokio::spawn(async move {
        lane.work
            .run(onemap::work::Lane::Heavy, move || {
                let _ = started_tx.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(60));
            })
            .await
    });
    tokio::task::spawn_blocking(move || started_rx.recv_timeout(Duration::from_secs(10)))
        .await
        .expect("join")
        .expect("the blocker started");
    let post = |filter: String| {
        srv.client
            .post(format!("{}/api/query", srv.base))
            .json(&json!({"area": {"bbox": [-180, -90, 180, 90]}, "layers": ["risks"], "filter": filter, "limit": 0}))
            .send()
    };
    let short = format!("{}category = 'fire'{}", "(".repeat(100), ")".repeat(100));
    let long = format!(
        "{}category = 'fire'{}",
        "(".repeat(20_000),
        ")".repeat(20_000)
    );
    let long_syntax = format!("category IN ({}) AND", vec!["'a'"; 6_000].join(","));
    assert!(long.len() > onemap::query::QUICK_FILTER && long_syntax.len() > 16 * 1024);
    for f in [short, long, long_syntax] {
        let r = post(f).await.expect("query");
        common::expect_problem(r, 400).await;
    }
    let r = post("category = 'fire'".into()).await.expect("query");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let _ = release_tx.send(());
    let _ = blocker.await;
    healthy(&srv).await;
}
