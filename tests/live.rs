//! The live path over HTTP: work orders in, SSE out, stats, resume with
//! Last-Event-ID, idempotency, refusals that store nothing, tiles dropped
//! for exactly the changed place, and durability across a kill -9.

mod common;

use common::sse::Sse;

use onemap::store::Store;
use serde_json::{Value as J, json};
use std::time::Duration;

fn order(id: &str, lon: f64, lat: f64, extra: J) -> J {
    let mut props = json!({"source": "hotline_12345", "category": "noise", "title": "噪音扰民"});
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    json!({"type": "Feature", "id": id, "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props})
}

async fn post(srv: &common::TestServer, body: &J) -> reqwest::Response {
    srv.client
        .post(format!("{}/api/events", srv.base))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn patch(srv: &common::TestServer, id: &str, body: &J) -> reqwest::Response {
    srv.client
        .patch(format!("{}/api/events/{id}", srv.base))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A point inside the first micro-grid, and that grid's code.
async fn inside(srv: &common::TestServer) -> (f64, f64, String) {
    let (_, list) = srv.get_json("/api/grids?level=micro").await;
    let code = list["grids"][0]["code"].as_str().unwrap().to_string();
    let (_, g) = srv.get_json(&format!("/api/grids/{code}")).await;
    let b = g["bbox"].as_array().unwrap();
    let (w, s, e, n) = (
        b[0].as_f64().unwrap(),
        b[1].as_f64().unwrap(),
        b[2].as_f64().unwrap(),
        b[3].as_f64().unwrap(),
    );
    // The centre of a micro-grid's bbox is inside it (they are lattice
    // rectangles); checked through /api/locate.
    let (lon, lat) = ((w + e) / 2.0, (s + n) / 2.0);
    let (_, at) = srv
        .get_json(&format!("/api/locate?lon={lon}&lat={lat}"))
        .await;
    assert_eq!(at["grid"].as_str(), Some(code.as_str()), "{at}");
    (lon, lat, code)
}

fn total(stats: &J, k: &str) -> u64 {
    stats["total"][k].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_reach_subscribers_stats_and_tiles() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 31).await;
    let (state, running) = common::serve_state(store.clone(), common::config()).await;
    let srv = common::client_for(running);
    let (lon, lat, micro) = inside(&srv).await;
    let mut sub = Sse::open(&srv, None).await;
    let (_, before) = srv.get_json("/api/stats?level=street").await;

    // A tile over the point and one far from it, cached with their ETags.
    let t = onemap::tiles::mercator::tile_of(16, lon, lat);
    let here = format!("/tiles/events/16/{}/{}.mvt", t.x, t.y);
    let far = {
        let (_, g) = srv.get_json("/api/grids?level=micro").await;
        let last = g["grids"].as_array().unwrap().last().unwrap()["code"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, g) = srv.get_json(&format!("/api/grids/{last}")).await;
        let b = g["bbox"].as_array().unwrap();
        let t2 =
            onemap::tiles::mercator::tile_of(16, b[0].as_f64().unwrap(), b[1].as_f64().unwrap());
        assert_ne!((t2.x, t2.y), (t.x, t.y));
        format!("/tiles/events/16/{}/{}.mvt", t2.x, t2.y)
    };
    let etag = |r: &reqwest::Response| {
        r.headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let here0 = etag(&srv.get(&here).await);
    let far0 = etag(&srv.get(&far).await);
    let rendered0 = state.tiles.rendered();

    // Post one order: acknowledged with its grid codes.
    let r = post(&srv, &order("WO-LIVE-1", lon, lat, json!({}))).await;
    assert_eq!(r.status(), 201);
    let ack: J = r.json().await.unwrap();
    let res = &ack["results"][0];
    assert_eq!(res["result"], "created");
    assert_eq!(res["grids"]["micro"], micro.as_str());
    let seq = ack["seq"].as_i64().unwrap();

    // The subscriber sees it, with the same codes and the log's seq as id.
    let ev = sub.until("event", |f| f.data["id"] == "WO-LIVE-1").await;
    assert_eq!(ev.id, Some(seq));
    assert_eq!(ev.data["op"], "created");
    assert_eq!(ev.data["grids"]["micro"], micro.as_str());
    assert_eq!(ev.data["grids"]["street"], &micro[..9]);
    let ch = sub.until("changed", |_| true).await;
    assert_eq!(ch.data["layer"], "events");
    let st = sub.until("stats", |_| true).await;
    let area = &st.data["areas"][&micro];
    assert!(area["events_open"].as_u64().unwrap() >= 1);
    assert!(area["fid"].is_i64());

    // Stats: one more open order, one more today.
    let (_, after) = srv.get_json("/api/stats?level=street").await;
    assert_eq!(
        total(&after, "events_open"),
        total(&before, "events_open") + 1
    );
    assert_eq!(total(&after, "today_new"), total(&before, "today_new") + 1);
    assert_eq!(after["total"]["today_by_source"]["hotline_12345"], 1);
    assert_eq!(after["total"]["today_by_category"]["noise"], 1);
    let (_, card) = srv.get_json(&format!("/api/grids/{micro}")).await;
    assert!(card["counts"]["events_open"].as_u64().unwrap() >= 1);

    // Tiles: the one over the point changed (re-rendered); the far one is
    // still cached with the same ETag.
    let here1 = etag(&srv.get(&here).await);
    assert_ne!(here0, here1, "the tile over the new order did not change");
    let r = srv.get(&far).await;
    assert_eq!(etag(&r), far0);
    state.tiles.run_pending_tasks().await;
    assert_eq!(
        state.tiles.rendered(),
        rendered0 + 1,
        "only the changed tile is rendered again"
    );

    // Close it: updated message, closure counted.
    let r = patch(&srv, "WO-LIVE-1", &json!({"status": "closed"})).await;
    assert_eq!(r.status(), 200);
    let ev = sub
        .until("event", |f| {
            f.data["id"] == "WO-LIVE-1" && f.data["op"] == "updated"
        })
        .await;
    assert_eq!(ev.data["status"], "closed");
    assert!(ev.data["closed_at"].is_string());
    let (_, closed) = srv.get_json("/api/stats?level=street").await;
    assert_eq!(total(&closed, "events_open"), total(&before, "events_open"));
    assert_eq!(
        total(&closed, "today_closed"),
        total(&before, "today_closed") + 1
    );
    assert_eq!(total(&closed, "closed"), total(&before, "closed") + 1);
    // Stats of one street: its areas add up to the total.
    let street = &micro[..9];
    let (_, under) = srv
        .get_json(&format!("/api/stats?level=community&parent={street}"))
        .await;
    let sum: u64 = under["areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["events_open"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, total(&under, "events_open"));
    for (path, status) in [
        ("/api/stats?level=planet", 400),
        (
            &format!("/api/stats?level=street&parent={micro}") as &str,
            400,
        ),
        ("/api/stats?level=grid&parent=990199999", 404),
        ("/api/stats?colour=1", 400),
    ] {
        common::expect_problem(srv.get(path).await, status).await;
    }
    srv.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnecting_with_last_event_id_gets_exactly_the_missed_messages() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 32).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let (lon, lat, _) = inside(&srv).await;
    let mut sub = Sse::open(&srv, None).await;
    post(&srv, &order("R-0", lon, lat, json!({}))).await;
    let seen = sub.until("event", |f| f.data["id"] == "R-0").await;
    let last = seen.id.unwrap();
    drop(sub); // the screen loses its connection

    // Missed: three orders and a status change.
    let batch = json!({"type": "FeatureCollection", "features": [
        order("R-1", lon, lat, json!({})),
        order("R-2", lon + 1e-5, lat, json!({"source": "police_110"})),
    ]});
    assert_eq!(post(&srv, &batch).await.status(), 201);
    assert_eq!(
        post(&srv, &order("R-3", lon, lat, json!({})))
            .await
            .status(),
        201
    );
    assert_eq!(
        patch(&srv, "R-1", &json!({"status": "dispatched"}))
            .await
            .status(),
        200
    );

    let mut again = Sse::open(&srv, Some(last)).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let f = again.until("event", |_| true).await;
        got.push((
            f.id.unwrap(),
            f.data["id"].as_str().unwrap().to_string(),
            f.data["op"].as_str().unwrap().to_string(),
        ));
    }
    let ids: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > last,
        "{got:?}"
    );
    let names: Vec<(&str, &str)> = got.iter().map(|g| (g.1.as_str(), g.2.as_str())).collect();
    assert_eq!(
        names,
        [
            ("R-1", "created"),
            ("R-2", "created"),
            ("R-3", "created"),
            ("R-1", "updated")
        ]
    );
    // Then live ones, none of the replayed twice.
    post(&srv, &order("R-4", lon, lat, json!({}))).await;
    let next = again.until("event", |_| true).await;
    assert_eq!(next.data["id"], "R-4");
    assert!(next.id.unwrap() > *ids.last().unwrap());
    srv.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_conflicts_and_bad_input_store_nothing() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 33).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let (lon, lat, _) = inside(&srv).await;
    let o = order(
        "D-1",
        lon,
        lat,
        json!({"created_at": "2026-11-22T01:00:00Z"}),
    );
    assert_eq!(post(&srv, &o).await.status(), 201);
    let seq0 = store.last_seq().await.unwrap();

    // The same content again (even after its status moved on): a no-op.
    // The status change is logged with who made it.
    let r = srv
        .client
        .patch(format!("{}/api/events/D-1", srv.base))
        .header(
            "x-onemap-user",
            reqwest::header::HeaderValue::from_bytes("城管局 张三".as_bytes()).unwrap(),
        )
        .json(&json!({"status": "processing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fid = r.json::<J>().await.unwrap()["fid"].as_i64().unwrap();
    let h = store.history("events", fid).await.unwrap();
    // The token's name, with the person its source system named beside it.
    assert_eq!(
        h.last().map(|c| c.author.as_str()),
        Some("token:test-admin[城管局 张三]")
    );
    assert_eq!(
        h.first().map(|c| c.author.as_str()),
        Some("token:test-admin")
    );
    let seq1 = store.last_seq().await.unwrap();
    assert_eq!(seq1, seq0 + 1);
    let r = post(&srv, &o).await;
    assert_eq!(r.status(), 200);
    let j: J = r.json().await.unwrap();
    assert_eq!(j["results"][0]["result"], "unchanged");
    assert_eq!(store.last_seq().await.unwrap(), seq1);
    // The same status again: no new version.
    let r = patch(&srv, "D-1", &json!({"status": "processing"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(store.last_seq().await.unwrap(), seq1);

    // Refusals: each a 4xx naming the fault, and the log does not move.
    let cases: Vec<(&str, J, u16, &str)> = vec![
        (
            "post",
            order("D-1", lon + 0.001, lat, json!({})),
            409,
            "different content",
        ),
        (
            "post",
            json!({"type": "FeatureCollection", "features": [order("D-2", lon, lat, json!({})), order("D-1", lon, lat, json!({"category": "traffic"}))]}),
            409,
            "D-1",
        ),
        (
            "post",
            order("D-3", 512.0, lat, json!({})),
            400,
            "out of range",
        ),
        (
            "post",
            order("D-3", 0.0, 0.0, json!({})),
            400,
            "outside every grid",
        ),
        (
            "post",
            order("D-3", lon, lat, json!({"status": "overdue"})),
            400,
            "unknown status",
        ),
        (
            "post",
            order("D-3", lon, lat, json!({"source": "fax"})),
            400,
            "source",
        ),
        ("post", json!({"type": "Feature"}), 400, "id"),
        ("post", json!("nope"), 400, "Feature"),
        (
            "patch D-1",
            json!({"status": "new"}),
            409,
            "cannot go from processing to new",
        ),
        (
            "patch D-1",
            json!({"status": "archived"}),
            400,
            "unknown status",
        ),
        ("patch D-1", json!({"colour": "red"}), 400, "colour"),
        ("patch D-1", json!({}), 400, "nothing to change"),
        ("patch NOPE", json!({"status": "closed"}), 404, "NOPE"),
    ];
    for (what, body, status, expect) in cases {
        let r = match what.strip_prefix("patch ") {
            Some(id) => patch(&srv, id, &body).await,
            None => post(&srv, &body).await,
        };
        let d = common::expect_problem(r, status).await;
        let detail = d["detail"].as_str().unwrap();
        assert!(
            detail.contains(expect),
            "{what} {body}: {detail:?} does not name {expect:?}"
        );
        assert_eq!(
            store.last_seq().await.unwrap(),
            seq1,
            "{what} {body} stored something"
        );
    }
    // Malformed JSON and a body over the limit.
    let r = srv
        .client
        .post(format!("{}/api/events", srv.base))
        .header("content-type", "application/json")
        .body("{\"type\": \"Feature\",")
        .send()
        .await
        .unwrap();
    common::expect_problem(r, 400).await;
    let many: Vec<J> = (0..1001)
        .map(|i| order(&format!("M-{i}"), lon, lat, json!({})))
        .collect();
    let r = post(
        &srv,
        &json!({"type": "FeatureCollection", "features": many}),
    )
    .await;
    let d = common::expect_problem(r, 400).await;
    assert!(d["detail"].as_str().unwrap().contains("at most 1000"));
    assert_eq!(store.last_seq().await.unwrap(), seq1);
    srv.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_past_its_deadline_turns_overdue_on_the_stream() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 34).await;
    let mut config = common::config();
    config.clock_tick = Duration::from_millis(200);
    let srv = common::serve(store.clone(), config).await;
    let (lon, lat, micro) = inside(&srv).await;
    let mut sub = Sse::open(&srv, None).await;
    let due = chrono::Utc::now() + chrono::Duration::seconds(1);
    let o = order(
        "O-1",
        lon,
        lat,
        json!({"deadline": due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
    );
    assert_eq!(post(&srv, &o).await.status(), 201);
    let created = sub.until("event", |f| f.data["id"] == "O-1").await;
    assert_eq!(created.data["overdue"], false);
    let (_, before) = srv.get_json(&format!("/api/grids/{micro}")).await;
    let turned = sub
        .until("event", |f| {
            f.data["id"] == "O-1" && f.data["op"] == "overdue"
        })
        .await;
    assert_eq!(turned.data["overdue"], true);
    assert_eq!(turned.id, None, "derived, not in the log");
    let (_, after) = srv.get_json(&format!("/api/grids/{micro}")).await;
    assert_eq!(
        after["counts"]["events_overdue"].as_u64().unwrap(),
        before["counts"]["events_overdue"].as_u64().unwrap() + 1
    );
    let (_, stats) = srv.get_json("/api/stats?level=grid").await;
    assert!(stats["overdue_list"].as_array().unwrap().iter().all(|o| {
        o["deadline"].as_str()
            <= Some(
                due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    .as_str(),
            )
    }));
    srv.running.stop().await.unwrap();
}

/// `onemap replay` posts the demo's orders and replays their statuses.
#[tokio::test(flavor = "multi_thread")]
async fn replay_brings_the_demo_alive() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 35).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let (_, before) = srv.get_json("/api/stats?level=street").await;
    let opts = onemap::live::replay::Options {
        url: srv.base.clone(),
        rate: 500.0,
        speed: 1e7,
        limit: Some(40),
        token: Some(common::admin_token(&srv.running)),
        wait: std::time::Duration::from_secs(5),
    };
    let sum = onemap::live::replay::run(store.as_ref(), &opts)
        .await
        .unwrap();
    assert_eq!((sum.posted, sum.failed), (40, 0), "{sum:?}");
    assert!(sum.patched > 40, "{sum:?}");
    let (_, after) = srv.get_json("/api/stats?level=street").await;
    assert_eq!(total(&after, "today_new"), total(&before, "today_new") + 40);
    assert!(total(&after, "today_closed") > total(&before, "today_closed"));
    // A second run replays the demo's orders again, not the first run's.
    let again = onemap::live::replay::run(store.as_ref(), &opts).await;
    assert!(again.is_ok_and(|s| s.failed == 0 && s.posted == 40));
    srv.running.stop().await.unwrap();
}

/// `onemap replay` started before its server (as `make run REPLAY=2` does)
/// waits for `/readyz` instead of dying; with no server at all it gives up
/// after `wait`, saying where it looked.
#[tokio::test(flavor = "multi_thread")]
async fn replay_waits_for_the_server_to_be_ready() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 36).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = |wait: u64| onemap::live::replay::Options {
        url: format!("http://127.0.0.1:{port}"),
        rate: 500.0,
        speed: 1e7,
        limit: Some(5),
        token: None,
        wait: std::time::Duration::from_secs(wait),
    };
    let err = onemap::live::replay::run(store.as_ref(), &opts(1))
        .await
        .expect_err("no server");
    assert!(
        err.to_string().contains("no ready onemap server")
            && err.to_string().contains(&port.to_string()),
        "{err}"
    );
    // The replay starts first; the server comes 2 s later on that port.
    let token = common::token(store.as_ref(), onemap::auth::Role::Operator, &[]).await;
    let mut o = opts(60);
    o.token = Some(token);
    let st = store.clone();
    let replay = tokio::spawn(async move { onemap::live::replay::run(st.as_ref(), &o).await });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !replay.is_finished(),
        "the replay gave up before the server came"
    );
    let state = onemap::app::load(store.clone(), common::config())
        .await
        .unwrap();
    let running = onemap::api::start(state, &format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let sum = replay.await.unwrap().unwrap();
    assert_eq!((sum.posted, sum.failed), (5, 0), "{sum:?}");
    running.stop().await.unwrap();
}

/// `onemap serve` killed with SIGKILL right after acknowledging: the order
/// is there after a restart, and a resend is still recognised.
#[test]
fn an_acknowledged_order_survives_kill_9() {
    let dir = common::tempdir();
    let store = dir.path().join("s.gpkg");
    let bin = env!("CARGO_BIN_EXE_onemap");
    let st = std::process::Command::new(bin)
        .args(["demo", "--scale", "small", "--store"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(st.success());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = |port: u16| {
        let child = std::process::Command::new(bin)
            .args(["serve", "--store"])
            .arg(&store)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        rt.block_on(async {
            for _ in 0..300 {
                if reqwest::get(format!("{base}/healthz"))
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("server did not come up");
        });
        (child, base)
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let made = std::process::Command::new(bin)
        .args(["token", "create", "--role", "admin", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(made.status.success());
    let token = String::from_utf8_lossy(&made.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let (mut child, base) = start(port);
    let client = common::bearer_client(&token);
    let o = rt.block_on(async {
        let g: J = client
            .get(format!("{base}/api/grids?level=micro"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let code = g["grids"][0]["code"].as_str().unwrap().to_string();
        let g: J = client
            .get(format!("{base}/api/grids/{code}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let b: Vec<f64> = g["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let o = order("K-1", (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, json!({}));
        let r = client
            .post(format!("{base}/api/events"))
            .json(&o)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        o
    });
    // No graceful shutdown: SIGKILL right after the acknowledgement.
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, base) = start(port);
    rt.block_on(async {
        let q = json!({"area": {"bbox": [100, 20, 130, 40]}, "layers": ["events"], "filter": "ext_id = 'K-1'"});
        let j: J = client
            .post(format!("{base}/api/query"))
            .json(&q)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(j["layers"]["events"]["count"], 1, "{j}");
        let r = client
            .post(format!("{base}/api/events"))
            .json(&o)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let j: J = r.json().await.unwrap();
        assert_eq!(j["results"][0]["result"], "unchanged");
    });
    child.kill().unwrap();
    child.wait().unwrap();
}
