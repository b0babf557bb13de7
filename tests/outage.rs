//! PostGIS going away: at start (`onemap serve --database` retries while the
//! database cannot be reached, and says clearly why it gives up) and while
//! serving (reads go on from memory, writes are refused with 503 and
//! nothing half-written, `/healthz` says so, and everything resumes, the
//! followers' LISTEN included, when the database is back).

mod common;

use common::sse::Sse;
use onemap::store::Store;
use onemap::store::postgis::PostgisStore;
use serde_json::{Value as J, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn server(pg: &common::pg::PgCluster) -> (Arc<onemap::app::App>, common::TestServer) {
    let store: Arc<dyn Store> = Arc::new(PostgisStore::open(&pg.url).await.expect("open"));
    let (state, running) = common::serve_state(store, common::config()).await;
    (state, common::client_for(running))
}

fn order(id: &str, lon: f64, lat: f64) -> J {
    json!({"type": "Feature", "id": id, "geometry": {"type": "Point", "coordinates": [lon, lat]},
           "properties": {"source": "hotline_12345", "category": "noise", "title": "夜间施工噪音"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgis_down_while_serving() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    common::demo_postgis(&pg.url, "small", 31).await;
    let (sa, a) = server(&pg).await;
    let (_sb, b) = server(&pg).await;
    let (s, h) = a.get_json("/healthz").await;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")), "{h}");

    let (_, list) = a.get_json("/api/grids?level=micro").await;
    let code = list["grids"][0]["code"].as_str().unwrap().to_string();
    let (g, (lon, lat)) = common::grid_and_centre(&a, &code).await;
    let t = onemap::tiles::mercator::tile_of(15, lon, lat);
    let tile = format!("/tiles/events/15/{}/{}.mvt", t.x, t.y);
    let mut sse = Sse::open(&b, None).await;
    // Nothing is written while the database is down: quiet stretches.
    sse.patience = Duration::from_secs(30);
    let seq = sa.catalog().seq;

    pg.stop();

    // /healthz says so, and what still works.
    assert!(
        common::within(15, async || a.get("/healthz").await.status() == 503).await,
        "healthz turns 503 while the database is down"
    );
    let r = a.get("/healthz").await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.status(), 503);
    let h = common::expect_problem(r, 503).await;
    assert_eq!(h["health"], "store_unreachable", "{h}");
    assert!(h["error"].as_str().is_some_and(|e| !e.is_empty()), "{h}");
    assert!(h["since"].is_string() && h["outages"] == 1, "{h}");
    assert!(h["reads"].as_str().is_some(), "{h}");
    // Still ready for a load balancer: reads are served.
    let (s, ready) = a.get_json("/readyz").await;
    assert_eq!(s, 200, "{ready}");
    assert_eq!(
        (ready["store"].as_str(), ready["writes"].as_bool()),
        (Some("unreachable"), Some(false)),
        "{ready}"
    );
    // Screens on B are told their figures are frozen.
    let f = sse
        .until("health", |f| f.data["store"] == "unreachable")
        .await;
    assert!(f.data["since"].is_string(), "{:?}", f.data);
    let during = Sse::open(&b, None).await;
    assert_eq!(
        during.hello.map(|h| h.data["store"].clone()),
        Some(json!("unreachable")),
        "a screen connecting during the outage is told at once"
    );

    // Reads are served from memory.
    let (s, g_down) = a.get_json(&format!("/api/grids/{code}")).await;
    assert_eq!(s, 200);
    assert_eq!(g_down["counts"], g["counts"]);
    assert_eq!(a.get(&tile).await.status(), 200);
    let r = a
        .client
        .post(format!("{}/api/query", a.base))
        .json(&json!({"area": {"grid": code}, "layers": ["addresses", "cameras"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // Writes are refused, clearly, and nothing is half-done.
    let r = a
        .client
        .post(format!("{}/api/events", a.base))
        .timeout(Duration::from_secs(60))
        .json(&order("OUT-1", lon, lat))
        .send()
        .await
        .unwrap();
    let p = common::expect_problem(r, 503).await;
    assert!(
        p["detail"].as_str().unwrap_or("").contains("unreachable"),
        "{p}"
    );
    let r = a
        .client
        .post(format!("{}/api/plans", a.base))
        .timeout(Duration::from_secs(60))
        .json(&json!({"title": "停机", "scope": [code.as_str()], "author": "甲"}))
        .send()
        .await
        .unwrap();
    common::expect_problem(r, 503).await;
    assert_eq!(sa.catalog().seq, seq, "the catalog did not move");

    // Back up: health, writes and following resume; B's stream stayed open.
    pg.restart();
    assert!(
        common::within(30, async || a.get("/healthz").await.status() == 200).await,
        "healthz back to 200 after the restart"
    );
    let (_, h) = a.get_json("/healthz").await;
    assert_eq!(h["outages"], 1, "{h}");
    let (_, ready) = a.get_json("/readyz").await;
    assert_eq!(ready["writes"], true, "{ready}");
    sse.until("health", |f| f.data["store"] == "ok").await;
    let fresh = Sse::open(&b, None).await;
    assert_eq!(
        fresh.hello.map(|h| h.data["store"].clone()),
        Some(json!("ok"))
    );
    let r = a
        .client
        .post(format!("{}/api/events", a.base))
        .json(&order("OUT-2", lon, lat))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let f = sse.until("event", |f| f.data["id"] == "OUT-2").await;
    assert_eq!(f.data["grids"]["micro"], json!(code));
    // The refused order was never written anywhere.
    let s = PostgisStore::open(&pg.url).await.unwrap();
    let rows = s.changes_since(seq, 1000).await.unwrap();
    assert!(
        rows.iter().all(|r| !r
            .after
            .as_ref()
            .is_some_and(|a| a.to_string().contains("OUT-1"))),
        "OUT-1 was refused and is not in the change log"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r
                .after
                .as_ref()
                .is_some_and(|a| a.to_string().contains("OUT-2")))
            .count(),
        1
    );
    s.close().await;
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(url: &str, port: u16, wait: u64) -> Serving {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let child = Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(["serve", "--database", url, "--bind"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--web")
        .arg(root.join("web"))
        .arg("--styles")
        .arg(root.join("styles"))
        .args(["--store-wait", &wait.to_string()])
        .env_remove("ONEMAP_STORE")
        .env("RUST_LOG", "onemap=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn onemap serve");
    Serving(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits for the process to exit, for at most `secs`; its stderr.
fn exit_within(s: &mut Serving, secs: u64) -> (std::process::ExitStatus, String) {
    let t = Instant::now();
    loop {
        if let Some(status) = s.0.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = s.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return (status, err);
        }
        assert!(t.elapsed() < Duration::from_secs(secs), "still running");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_postgis_down_at_start() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    common::demo_postgis(&pg.url, "small", 32).await;
    let token = {
        let s = onemap::store::postgis::PostgisStore::open(&pg.url)
            .await
            .expect("open");
        let t = common::token(&s, onemap::auth::Role::Viewer, &[]).await;
        s.close().await;
        t
    };
    let with_password = pg.url.replace("postgres@", "postgres:s3cret@");

    // A database that does not exist: refused at once, not retried.
    let missing = pg.url.replace("/onemap", "/nosuchdb");
    let mut s = serve(&missing, free_port(), 60);
    let (status, err) = exit_within(&mut s, 30);
    assert!(!status.success());
    assert!(err.contains("nosuchdb"), "{err}");

    pg.stop();

    // Down, no waiting: a clear message at once, the password masked.
    let mut s = serve(&with_password, free_port(), 0);
    let (status, err) = exit_within(&mut s, 30);
    assert!(!status.success());
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(err.contains("gave up"), "{err}");
    assert!(!err.contains("s3cret"), "password shown: {err}");

    // Down, waiting: it retries and serves once the database is up.
    let port = free_port();
    let mut s = serve(&with_password, port, 120);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(s.0.try_wait().expect("wait").is_none(), "still retrying");
    pg.restart();
    let base = format!("http://127.0.0.1:{port}");
    let up = common::within(60, async || {
        reqwest::get(format!("{base}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(up, "serving after the database came up");
    let layers: J = common::bearer_client(&token)
        .get(format!("{base}/api/layers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(layers.as_array().map(Vec::len), Some(8));
    let h: J = reqwest::get(format!("{base}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        h["store"]
            .as_str()
            .is_some_and(|d| d.starts_with("postgis:") && !d.contains("s3cret")),
        "{h}"
    );
}
