//! The HTTP server, started for real on a free port over a real demo store.

mod common;

use geo::{Contains, Geometry, Intersects, MultiPolygon};
use onemap::model::builtin;
use onemap::store::Store;
use serde_json::{Value as J, json};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread")]
async fn health_layers_and_static_page() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 2).await;
    let srv = common::serve(store.clone(), common::config()).await;

    let (s, h) = srv.get_json("/healthz").await;
    assert_eq!(s, 200);
    assert_eq!(h["status"], "ok");

    let (s, layers) = srv.get_json("/api/layers").await;
    assert_eq!(s, 200);
    let layers = layers.as_array().unwrap();
    assert_eq!(layers.len(), 8);
    for l in layers {
        let name = l["name"].as_str().unwrap();
        let n = store.load_layer(name).await.unwrap().len();
        assert_eq!(l["count"].as_u64(), Some(n as u64), "count of {name}");
        assert_eq!(l["bbox"].as_array().map(|b| b.len()), Some(4));
        assert!(l["properties"].as_array().is_some_and(|p| !p.is_empty()));
        assert!(l["title"].is_string() && l["geometry"].is_string());
        assert!(l["minzoom"].is_u64() && l["maxzoom"].is_u64());
    }
    let (s, cams) = srv.get_json("/api/layers/cameras").await;
    assert_eq!(s, 200);
    assert_eq!(cams["geometry"], "point");

    let page = srv.get("/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("一张图"));
    srv.running.stop().await.unwrap();
}

/// `/api/grids/{code}` against an independent count over the store.
#[tokio::test(flavor = "multi_thread")]
async fn grid_card_matches_an_independent_count() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 3).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let gd = builtin::layer(builtin::GRIDS).unwrap();
    let grids = store.load_layer(builtin::GRIDS).await.unwrap();
    let text = |f: &onemap::model::Feature, k: &str| {
        f.get(&gd, k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };

    let point_layers = [builtin::ADDRESSES, builtin::CAMERAS, builtin::EVENTS];
    let mut loaded = Vec::new();
    for l in point_layers {
        loaded.push((
            l,
            builtin::layer(l).unwrap(),
            store.load_layer(l).await.unwrap(),
        ));
    }
    // One grid of each level (and a dedicated one).
    let mut picked = Vec::new();
    for level in ["district", "street", "community", "grid", "micro"] {
        picked.push(
            grids
                .iter()
                .find(|g| text(g, "level") == level && text(g, "kind") == "comprehensive")
                .unwrap(),
        );
    }
    for g in picked {
        let code = text(g, "code");
        let (s, card) = srv.get_json(&format!("/api/grids/{code}")).await;
        assert_eq!(s, 200, "{card}");
        assert_eq!(card["code"], code);
        assert_eq!(card["name"], text(g, "name"));
        assert_eq!(card["staff"], text(g, "staff"));
        let poly = match &g.geometry {
            Geometry::MultiPolygon(m) => m.clone(),
            Geometry::Polygon(p) => MultiPolygon(vec![p.clone()]),
            _ => panic!(),
        };
        // Independent: brute force over every point. Points are generated
        // strictly inside micro-grids, so boundary ties do not arise here.
        for (name, def, fs) in &loaded {
            let inside: Vec<&onemap::model::Feature> = fs
                .iter()
                .filter(|f| matches!(&f.geometry, Geometry::Point(p) if poly.intersects(p)))
                .collect();
            assert_eq!(
                card["counts"][*name].as_u64(),
                Some(inside.len() as u64),
                "{name} in {code}"
            );
            if *name == builtin::ADDRESSES {
                let hh: i64 = inside
                    .iter()
                    .filter_map(|f| f.get(def, "households").and_then(|v| v.as_i64()))
                    .sum();
                assert_eq!(card["households"].as_i64(), Some(hh));
                assert_eq!(card["counts"]["households"].as_i64(), Some(hh));
            }
            if *name == builtin::EVENTS {
                let open = inside
                    .iter()
                    .filter(|f| f.get(def, "status").and_then(|v| v.as_str()) != Some("closed"))
                    .count();
                assert_eq!(card["counts"]["events_open"].as_u64(), Some(open as u64));
            }
        }
        // Ancestors: the path runs from the district to this grid, each a
        // prefix of the next.
        let path: Vec<String> = card["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["code"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(path.last(), Some(&code));
        assert_eq!(
            path.len(),
            [6, 9, 12, 16, 19]
                .iter()
                .position(|&n| n == code.len())
                .unwrap()
                + 1
        );
        assert!(path.windows(2).all(|w| w[1].starts_with(&w[0])));
        // Children: exactly the grids whose parent is this one.
        let mut want: Vec<String> = grids
            .iter()
            .filter(|c| text(c, "parent") == code)
            .map(|c| text(c, "code"))
            .collect();
        want.sort();
        let got: Vec<String> = card["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["code"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want);
    }

    // A dedicated grid counts what lies inside it.
    if let Some(d) = grids.iter().find(|g| text(g, "kind") == "dedicated") {
        let (s, card) = srv
            .get_json(&format!("/api/grids/{}", text(d, "code")))
            .await;
        assert_eq!(s, 200);
        assert_eq!(card["kind"], "dedicated");
    }

    // Locate: the micro-grid of an address point, and every level above.
    let (_, ad, addrs) = &loaded[0];
    let a = &addrs[5];
    let Geometry::Point(p) = a.geometry else {
        panic!()
    };
    let (s, loc) = srv
        .get_json(&format!("/api/locate?lon={}&lat={}", p.x(), p.y()))
        .await;
    assert_eq!(s, 200);
    let micro = a.get(ad, "grid").unwrap().as_str().unwrap();
    assert_eq!(loc["grid"], micro);
    assert_eq!(loc["levels"]["micro"]["code"], micro);
    assert_eq!(loc["levels"]["street"]["code"], micro[..9]);
    let mg = grids.iter().find(|g| text(g, "code") == micro).unwrap();
    assert!(matches!(&mg.geometry, Geometry::MultiPolygon(m) if m.contains(&p)));
    let r = srv
        .client
        .post(format!("{}/api/locate", srv.base))
        .json(&json!({"points": [[p.x(), p.y()], [0.0, 0.0]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: J = r.json().await.unwrap();
    assert_eq!(body["results"][0]["grid"], micro);
    assert_eq!(body["results"][1]["grid"], J::Null);

    // Grids of a level, and children of a parent.
    let (s, streets) = srv.get_json("/api/grids?level=street").await;
    assert_eq!(s, 200);
    let n_streets = grids
        .iter()
        .filter(|g| text(g, "level") == "street")
        .count();
    assert_eq!(streets["count"].as_u64(), Some(n_streets as u64));
    srv.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_problem_json_and_change_nothing() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 4).await;
    let seq = store.last_seq().await.unwrap();
    let config = onemap::app::Config {
        body_limit: 64 * 1024,
        ..common::config()
    };
    let srv = common::serve(store.clone() as Arc<dyn Store>, config).await;

    let d = common::expect_problem(srv.get("/api/grids/9999999999999999").await, 404).await;
    assert!(d["detail"].as_str().unwrap().contains("9999999999999999"));
    let d = common::expect_problem(srv.get("/api/grids/12ab").await, 400).await;
    assert!(d["detail"].as_str().unwrap().contains("not a grid code"));
    let d = common::expect_problem(srv.get("/api/layers/nope").await, 404).await;
    assert!(d["detail"].as_str().unwrap().contains("unknown layer"));
    common::expect_problem(srv.get("/api/nothing-here").await, 404).await;
    common::expect_problem(srv.get("/no-such-file.js").await, 404).await;
    common::expect_problem(srv.get("/api/grids?level=planet").await, 400).await;
    common::expect_problem(srv.get("/api/locate?lon=abc&lat=1").await, 400).await;
    common::expect_problem(srv.get("/api/locate?lon=500&lat=1").await, 400).await;
    let r = srv
        .client
        .delete(format!("{}/api/layers", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET,HEAD")
    );
    common::expect_problem(r, 405).await;

    let post = |body: Vec<u8>| {
        srv.client
            .post(format!("{}/api/locate", srv.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    common::expect_problem(post(b"{\"points\": [[1, 2]".to_vec()).await.unwrap(), 400).await;
    common::expect_problem(
        post(b"{\"points\": [[1, 2, 3]]}".to_vec()).await.unwrap(),
        400,
    )
    .await;
    common::expect_problem(
        post(b"{\"points\": [[1, 95]]}".to_vec()).await.unwrap(),
        400,
    )
    .await;
    common::expect_problem(post(b"{\"pts\": []}".to_vec()).await.unwrap(), 400).await;
    let r = srv
        .client
        .post(format!("{}/api/locate", srv.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    common::expect_problem(r, 415).await;
    // A body over the limit: 413, whether its length is declared or not.
    let big = format!("{{\"points\": [{}[0,0]]}}", "[0,0],".repeat(20_000)).into_bytes();
    common::expect_problem(post(big.clone()).await.unwrap(), 413).await;
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(
        big.chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    ));
    let r = srv
        .client
        .post(format!("{}/api/locate", srv.base))
        .header("content-type", "application/json")
        .body(stream)
        .send()
        .await
        .unwrap();
    common::expect_problem(r, 413).await;

    // Still healthy, and nothing changed. (A fresh connection: the server
    // closes one whose request body it refused to read, and a pooled
    // connection may not have noticed yet.)
    let fresh = reqwest::Client::new();
    let r = fresh
        .get(format!("{}/healthz", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(store.last_seq().await.unwrap(), seq);
    srv.running.stop().await.unwrap();
}

/// `onemap serve` as a process: serves, and exits cleanly on SIGTERM.
#[test]
fn serve_shuts_down_gracefully_on_sigterm() {
    let dir = common::tempdir();
    let store = dir.path().join("s.gpkg");
    let bin = env!("CARGO_BIN_EXE_onemap");
    let st = std::process::Command::new(bin)
        .args(["demo", "--scale", "small", "--store"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(st.success());
    // A free port: bind, read, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(bin)
        .args(["serve", "--store"])
        .arg(&store)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut up = false;
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.contains("\"status\":\"ok\"") {
                up = true;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(up, "server did not come up");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server ignored SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("shutting down"), "{err}");

    // A missing store is a clear error, not a panic.
    let out = std::process::Command::new(bin)
        .args(["serve", "--store"])
        .arg(dir.path().join("absent.gpkg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}
