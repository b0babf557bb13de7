//! Helpers shared by the integration tests: throwaway stores, a real server
//! on a free port, GDAL, and throwaway PostgreSQL clusters (`pg`).
#![allow(dead_code)]

pub mod pg;

use onemap::store::Store;
use onemap::store::gpkg::GpkgStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A temporary directory that lives as long as the value.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("onemap-test-")
        .tempdir()
        .expect("temp dir")
}

/// Generates the demo at `scale` into `dir/onemap.gpkg` and opens it.
pub async fn demo_store(dir: &Path, scale: &str, seed: u64) -> (PathBuf, Arc<GpkgStore>) {
    let path = dir.join("onemap.gpkg");
    let store = GpkgStore::open(&path).await.expect("open store");
    let g = onemap::demo::generate(&onemap::demo::Scale::parse(scale).expect("scale"), seed)
        .expect("generate");
    onemap::demo::write(&store, g).await.expect("write demo");
    (path, Arc::new(store))
}

/// A running server over `store`, with its base URL.
pub struct TestServer {
    pub base: String,
    pub running: onemap::api::Running,
    pub client: reqwest::Client,
}

/// The default configuration, with the repository's web/ and styles/.
pub fn config() -> onemap::app::Config {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    onemap::app::Config {
        web_dir: root.join("web"),
        styles_dir: root.join("styles"),
        ..Default::default()
    }
}

pub async fn serve(store: Arc<dyn Store>, config: onemap::app::Config) -> TestServer {
    let (_, running) = serve_state(store, config).await;
    client_for(running)
}

/// Starts a server and also returns its state (to reach the catalog and the
/// tile cache directly). The server's test client signs in with an admin
/// token made in the store first ([`token`]).
pub async fn serve_state(
    store: Arc<dyn Store>,
    config: onemap::app::Config,
) -> (Arc<onemap::app::App>, onemap::api::Running) {
    let admin = token(store.as_ref(), onemap::auth::Role::Admin, &[]).await;
    let state = onemap::app::load(store, config).await.expect("load");
    let running = onemap::api::start(state.clone(), "127.0.0.1:0")
        .await
        .expect("start");
    tokens().insert(running.addr, admin);
    (state, running)
}

fn tokens()
-> std::sync::MutexGuard<'static, std::collections::HashMap<std::net::SocketAddr, String>> {
    static T: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<std::net::SocketAddr, String>>,
    > = std::sync::OnceLock::new();
    T.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A new token of `role` (scoped to `scope`) in `store`.
pub async fn token(store: &dyn Store, role: onemap::auth::Role, scope: &[&str]) -> String {
    let (_, secret) = onemap::auth::accounts::create_token(
        store,
        &onemap::auth::Principal::system("test"),
        "test",
        onemap::auth::accounts::NewToken {
            name: format!("test-{}", role.as_str()),
            role,
            scope: scope.iter().map(|s| s.to_string()).collect(),
            expires_days: None,
            kiosk: false,
        },
    )
    .await
    .expect("create a token");
    secret
}

/// A client that sends `Authorization: Bearer TOKEN` on every request.
pub fn bearer_client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .expect("client")
}

/// The admin token of a server started by [`serve_state`].
pub fn admin_token(running: &onemap::api::Running) -> String {
    tokens()
        .get(&running.addr)
        .cloned()
        .expect("a server started by serve_state")
}

pub fn client_for(running: onemap::api::Running) -> TestServer {
    let client = bearer_client(&admin_token(&running));
    TestServer {
        base: format!("http://{}", running.addr),
        running,
        client,
    }
}

impl TestServer {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// Asserts a response is a problem document with `status`; returns it.
pub async fn expect_problem(r: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(r.status().as_u16(), status, "status of {}", r.url());
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        ct.starts_with("application/problem+json"),
        "content type {ct:?}"
    );
    let body: serde_json::Value = r.json().await.expect("problem body");
    assert_eq!(body["status"], status);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(body["title"].is_string() && body["type"].is_string());
    body
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for
/// query strings carrying JSON or CQL2).
pub fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `ogrinfo`, when GDAL is installed. In CI (CI=true) its absence fails the
/// test; on a developer machine the test says it is skipped.
pub mod mvt_decode;
pub mod sse;

pub fn ogrinfo() -> Option<&'static str> {
    let ok = std::process::Command::new("ogrinfo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("ogrinfo");
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("ogrinfo (gdal-bin) is required in CI; .ci/run installs it");
    }
    eprintln!("SKIPPED: ogrinfo not found (apt-get install gdal-bin to run this test)");
    None
}

/// A vertex that two or more children of `grid` share and that is not on
/// the grid's own boundary (moving it keeps the grid's outline).
pub fn inner_shared_vertex(
    cat: &onemap::index::Catalog,
    grid: &onemap::index::grids::GridNode,
) -> Option<geo::Coord> {
    let outer = onemap::plan::to_multi(&grid.geometry);
    let mut count = std::collections::BTreeMap::new();
    let mut order = Vec::new();
    for &c in &grid.children {
        for p in &onemap::plan::to_multi(&cat.grids.nodes[c as usize].geometry).0 {
            for v in p.exterior().0.iter().skip(1) {
                *count.entry((v.x.to_bits(), v.y.to_bits())).or_insert(0) += 1;
                order.push(*v);
            }
        }
    }
    order.into_iter().find(|v| {
        count[&(v.x.to_bits(), v.y.to_bits())] >= 2
            && !onemap::plan::topo::touches_point(&outer, *v, 0.01)
    })
}

/// Polls `f` until it is true, for at most `secs`.
pub async fn within<F: AsyncFnMut() -> bool>(secs: u64, mut f: F) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(secs) {
        if f().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// A grid's `/api/grids/{code}` document and the centre of its bbox.
pub async fn grid_and_centre(srv: &TestServer, code: &str) -> (serde_json::Value, (f64, f64)) {
    let (s, g) = srv.get_json(&format!("/api/grids/{code}")).await;
    assert_eq!(s, 200, "grid {code}: {g}");
    let bb: Vec<f64> = g["bbox"]
        .as_array()
        .expect("bbox")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    let centre = ((bb[0] + bb[2]) / 2.0, (bb[1] + bb[3]) / 2.0);
    (g, centre)
}

/// Writes the demo at `scale` into a PostGIS database.
pub async fn demo_postgis(url: &str, scale: &str, seed: u64) {
    let s = onemap::store::postgis::PostgisStore::open(url)
        .await
        .expect("open postgis");
    let g = onemap::demo::generate(&onemap::demo::Scale::parse(scale).expect("scale"), seed)
        .expect("generate");
    onemap::demo::write(&s, g).await.expect("write demo");
    s.close().await;
}
