//! Two servers on one store: what one writes reaches the other's catalog,
//! tiles and live subscribers through the change log (the follower), and a
//! server that was down catches up. Each test runs on a shared GeoPackage
//! file and on a shared PostGIS database (a throwaway cluster; there the
//! follower wakes on LISTEN/NOTIFY).

mod common;

use common::sse::Sse;
use onemap::store::Store;
use serde_json::{Value as J, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The store both servers open, holding the small demo.
enum Shared {
    Gpkg {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    },
    Postgis(common::pg::PgCluster),
}

impl Shared {
    async fn gpkg(seed: u64) -> Option<Shared> {
        let dir = common::tempdir();
        let (path, store) = common::demo_store(dir.path(), "small", seed).await;
        store.close().await;
        Some(Shared::Gpkg { _dir: dir, path })
    }

    async fn postgis(seed: u64) -> Option<Shared> {
        let pg = common::pg::PgCluster::start().await?;
        common::demo_postgis(&pg.url, "small", seed).await;
        Some(Shared::Postgis(pg))
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Shared::Gpkg { path, .. } => Arc::new(
                onemap::store::gpkg::GpkgStore::open(path)
                    .await
                    .expect("open"),
            ),
            Shared::Postgis(pg) => Arc::new(
                onemap::store::postgis::PostgisStore::open(&pg.url)
                    .await
                    .expect("open"),
            ),
        }
    }
}

async fn server(shared: &Shared) -> (Arc<onemap::app::App>, common::TestServer) {
    let (state, running) = common::serve_state(shared.open().await, common::config()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_one_server_reach_the_other_on_a_geopackage() {
    if let Some(sh) = Shared::gpkg(21).await {
        writes_on_one_server_reach_the_other(sh).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_one_server_reach_the_other_on_postgis() {
    if let Some(sh) = Shared::postgis(21).await {
        writes_on_one_server_reach_the_other(sh).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_was_down_catches_up_on_a_geopackage() {
    if let Some(sh) = Shared::gpkg(22).await {
        a_server_that_was_down_catches_up(sh).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_was_down_catches_up_on_postgis() {
    if let Some(sh) = Shared::postgis(22).await {
        a_server_that_was_down_catches_up(sh).await;
    }
}

async fn writes_on_one_server_reach_the_other(sh: Shared) {
    let (_sa, a) = server(&sh).await;
    let (sb, b) = server(&sh).await;
    // How B follows: LISTEN/NOTIFY on PostGIS, polling on a GeoPackage.
    let listening = common::within(5, async || {
        let (_, h) = b.get_json("/healthz").await;
        match sh {
            Shared::Postgis(_) => {
                h["follow"]["wake"] == "notify" && h["follow"]["listening"] == true
            }
            Shared::Gpkg { .. } => h["follow"]["wake"] == "poll",
        }
    })
    .await;
    assert!(
        listening,
        "B's /healthz: {}",
        b.get_json("/healthz").await.1
    );

    // A point inside a micro-grid, and B's view of it before.
    let (_, list) = b.get_json("/api/grids?level=micro").await;
    let code = list["grids"][0]["code"].as_str().unwrap().to_string();
    let (g, (lon, lat)) = common::grid_and_centre(&b, &code).await;
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
        common::within(2, async || {
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
        common::within(2, async || {
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

async fn a_server_that_was_down_catches_up(sh: Shared) {
    let (_sa, a) = server(&sh).await;
    let (sb, b) = server(&sh).await;
    let seq0 = sb.catalog().seq;
    b.running.stop().await.expect("B stops");
    drop(sb);
    // Written while B is down.
    let (_, list) = a.get_json("/api/grids?level=micro").await;
    let code = list["grids"][1]["code"].as_str().unwrap().to_string();
    let (g, (lon, lat)) = common::grid_and_centre(&a, &code).await;
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
    let (sb, b) = server(&sh).await;
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
