//! Two servers on one store: what one writes reaches the other's catalog,
//! tiles and live subscribers through the change log (the follower), and a
//! server that was down catches up.

mod common;

use common::sse::Sse;
use serde_json::{Value as J, json};
use std::time::{Duration, Instant};

async fn server(
    path: &std::path::Path,
) -> (std::sync::Arc<onemap::api::AppState>, common::TestServer) {
    let store = onemap::store::gpkg::GpkgStore::open(path)
        .await
        .expect("open");
    let (state, running) = common::serve_state(std::sync::Arc::new(store), common::config()).await;
    (state, common::client_for(running))
}

fn order(id: &str, lon: f64, lat: f64) -> J {
    json!({"type": "Feature", "id": id, "geometry": {"type": "Point", "coordinates": [lon, lat]},
           "properties": {"source": "grid_report", "category": "fire", "title": "楼道堆物"}})
}

async fn etag(srv: &common::TestServer, path: &str) -> String {
    let r = srv.get(path).await;
    r.headers()
        .get("etag")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Polls `f` until it is true, for at most `secs`.
async fn within<F: AsyncFnMut() -> bool>(secs: u64, mut f: F) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_one_server_reach_the_other() {
    let dir = common::tempdir();
    let (path, store) = common::demo_store(dir.path(), "small", 21).await;
    drop(store);
    let (_sa, a) = server(&path).await;
    let (sb, b) = server(&path).await;

    // A point inside a micro-grid, and B's view of it before.
    let (_, list) = b.get_json("/api/grids?level=micro").await;
    let code = list["grids"][0]["code"].as_str().unwrap().to_string();
    let (_, g) = b.get_json(&format!("/api/grids/{code}")).await;
    let bb: Vec<f64> = g["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let (lon, lat) = ((bb[0] + bb[2]) / 2.0, (bb[1] + bb[3]) / 2.0);
    let open_before = g["counts"]["events_open"].as_u64().unwrap();
    let t = onemap::tiles::mercator::tile_of(16, lon, lat);
    let tile = format!("/tiles/events/16/{}/{}.mvt", t.x, t.y);
    let tag0 = etag(&b, &tile).await;
    let mut sse = Sse::open(&b, None).await;

    // An order posted on A is on B's stream, with its grid, within 2 s.
    let t0 = Instant::now();
    let r = a
        .client
        .post(format!("{}/api/events", a.base))
        .json(&order("F-1", lon, lat))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let fid = r.json::<J>().await.unwrap()["results"][0]["fid"]
        .as_i64()
        .unwrap();
    let f = sse.until("event", |f| f.data["fid"] == json!(fid)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "reached B in {:?}",
        t0.elapsed()
    );
    assert_eq!(f.data["grids"]["micro"], json!(code));
    assert!(f.id.is_some(), "with its change-log seq as SSE id");
    // B's counts and tiles follow.
    let (_, g) = b.get_json(&format!("/api/grids/{code}")).await;
    assert_eq!(
        g["counts"]["events_open"].as_u64().unwrap(),
        open_before + 1
    );
    assert_ne!(
        etag(&b, &tile).await,
        tag0,
        "B dropped the tile over the new order"
    );
    // B knows the order: a resend to B is a no-op, a PATCH on B works.
    let r = b
        .client
        .post(format!("{}/api/events", b.base))
        .json(&order("F-1", lon, lat))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "idempotent across servers");
    let r = b
        .client
        .patch(format!("{}/api/events/F-1", b.base))
        .json(&json!({"status": "closed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // …and A hears about the close.
    let (sa, _) = (&_sa, ());
    assert!(
        within(2, async || {
            let c = sa.catalog();
            let l = c.layer("events").unwrap();
            l.get(fid)
                .and_then(|f| f.get(&l.def, "status"))
                .and_then(|v| v.as_str())
                == Some("closed")
        })
        .await,
        "A follows B's PATCH"
    );

    // A plan published on A moves B's grids and tiles.
    let cat = sb.catalog();
    let grid = cat
        .grids
        .nodes
        .iter()
        .find(|n| n.level == onemap::model::GridLevel::Grid && n.children.len() >= 3)
        .unwrap();
    let kids: Vec<_> = grid
        .children
        .iter()
        .map(|&c| &cat.grids.nodes[c as usize])
        .collect();
    let v = common::inner_shared_vertex(&cat, grid).expect("an inner shared vertex");
    let to = geo::Coord {
        x: v.x + 0.00002,
        y: v.y + 0.00001,
    };
    let gt = onemap::tiles::mercator::tile_of(16, v.x, v.y);
    let gtile = format!("/tiles/grids/16/{}/{}.mvt", gt.x, gt.y);
    let gtag0 = etag(&b, &gtile).await;
    let post = |path: String, body: J| {
        let c = a.client.clone();
        let url = format!("{}{path}", a.base);
        async move {
            c.post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<J>()
                .await
                .unwrap()
        }
    };
    let id = post(
        "/api/plans".into(),
        json!({"title": "A", "scope": [grid.code.as_str()], "author": "甲"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    post(
        format!("/api/plans/{id}/ops"),
        json!({"op": "move_vertex", "from": [v.x, v.y], "to": [to.x, to.y]}),
    )
    .await;
    let t0 = Instant::now();
    let p = post(
        format!("/api/plans/{id}/publish"),
        json!({"author": "甲", "reason": "跨服务器"}),
    )
    .await;
    assert!(p["seq"].is_i64(), "{p}");
    assert!(
        within(2, async || {
            let c = sb.catalog();
            kids.iter().any(|k| {
                c.grids.get(k.code.as_str()).is_some_and(|(_, n)| {
                    geo::CoordsIter::coords_iter(&n.geometry).any(|c| c == to)
                })
            })
        })
        .await,
        "B has the new boundary"
    );
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_ne!(etag(&b, &gtile).await, gtag0, "B dropped the grid tile");
    sse.until("changed", |f| f.data["layer"] == "grids").await;
    // B's plan book sees A's plan.
    let (s, pl) = b.get_json(&format!("/api/plans/{id}")).await;
    assert_eq!((s, pl["status"].as_str()), (200, Some("published")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_was_down_catches_up() {
    let dir = common::tempdir();
    let (path, store) = common::demo_store(dir.path(), "small", 22).await;
    drop(store);
    let (_sa, a) = server(&path).await;
    let (sb, b) = server(&path).await;
    let seq0 = sb.catalog().seq;
    b.running.stop().await.expect("B stops");
    drop(sb);
    // Written while B is down.
    let (_, list) = a.get_json("/api/grids?level=micro").await;
    let code = list["grids"][1]["code"].as_str().unwrap().to_string();
    let (_, g) = a.get_json(&format!("/api/grids/{code}")).await;
    let bb: Vec<f64> = g["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let (lon, lat) = ((bb[0] + bb[2]) / 2.0, (bb[1] + bb[3]) / 2.0);
    for k in 0..3 {
        let r = a
            .client
            .post(format!("{}/api/events", a.base))
            .json(&order(&format!("D-{k}"), lon, lat))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // B again: its catalog has them, and a screen resuming from where it
    // was gets exactly the three from B's log.
    let (sb, b) = server(&path).await;
    let (_, g2) = b.get_json(&format!("/api/grids/{code}")).await;
    assert_eq!(
        g2["counts"]["events_open"].as_u64().unwrap(),
        g["counts"]["events_open"].as_u64().unwrap() + 3
    );
    let mut sse = Sse::open(&b, Some(seq0)).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let f = sse.next().await.expect("replayed");
        if f.event == "event" {
            got.push(f.data["id"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(got, ["D-0", "D-1", "D-2"]);
    assert!(sb.catalog().seq > seq0);
}
