//! Grid edit plans over HTTP: topological edits, validation with the right
//! geometry, publish (conflicts, re-derived grid codes, exactly the tiles
//! that changed), history and revert, and refusals that change nothing.

mod common;

use geo::{Area, Contains, Coord, Intersects, MultiPolygon, Point};
use serde_json::{Value as J, json};
use std::collections::{BTreeMap, BTreeSet};

struct Env {
    _dir: tempfile::TempDir,
    srv: common::TestServer,
    state: std::sync::Arc<onemap::app::App>,
}

async fn env() -> Env {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 11).await;
    let (state, running) = common::serve_state(store, common::config()).await;
    Env {
        _dir: dir,
        srv: common::client_for(running),
        state,
    }
}

impl Env {
    async fn post(&self, path: &str, body: J) -> reqwest::Response {
        self.srv
            .client
            .post(format!("{}{path}", self.srv.base))
            .json(&body)
            .send()
            .await
            .expect("post")
    }

    async fn ok(&self, path: &str, body: J) -> J {
        let r = self.post(path, body.clone()).await;
        let status = r.status();
        let j: J = r.json().await.unwrap_or(J::Null);
        assert!(status.is_success(), "POST {path} {body} → {status}: {j}");
        j
    }

    async fn get(&self, path: &str) -> J {
        let (s, j) = self.srv.get_json(path).await;
        assert_eq!(s, 200, "GET {path}: {j}");
        j
    }

    async fn seq(&self) -> i64 {
        self.state.store.last_seq().await.expect("seq")
    }

    async fn etag(&self, path: &str) -> String {
        let r = self.srv.get(path).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.headers()
            .get("etag")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }
}

fn multi(g: &J) -> MultiPolygon {
    let g = geojson::Geometry::from_json_value(g.clone()).expect("geojson");
    match geo::Geometry::try_from(g.value).expect("geometry") {
        geo::Geometry::MultiPolygon(m) => m,
        geo::Geometry::Polygon(p) => MultiPolygon(vec![p]),
        other => panic!("not an area: {other:?}"),
    }
}

fn grids_of(plan: &J) -> BTreeMap<String, J> {
    plan["grids"]["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| (f["id"].as_str().expect("code").to_string(), f.clone()))
        .collect()
}

fn vertices(m: &MultiPolygon) -> Vec<Coord> {
    m.0.iter()
        .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
        .flat_map(|r| r.0.iter().copied())
        .collect()
}

fn on_boundary(m: &MultiPolygon, c: Coord) -> bool {
    let p = Point(c);
    m.0.iter().any(|poly| {
        std::iter::once(poly.exterior())
            .chain(poly.interiors())
            .any(|r| r.intersects(&p))
    })
}

/// A grid-level code of the demo with micro-grids, and a vertex shared by
/// two or more of them away from the grid's own boundary.
async fn grid_with_inner_vertex(e: &Env, skip: usize) -> (String, Coord, Vec<String>) {
    let cat = e.state.catalog();
    let mut found = 0;
    for n in &cat.grids.nodes {
        if n.level != onemap::model::GridLevel::Grid || n.children.len() < 3 || n.dedicated {
            continue;
        }
        let outer = onemap::plan::to_multi(&n.geometry);
        let kids: Vec<(String, MultiPolygon)> = n
            .children
            .iter()
            .map(|&c| &cat.grids.nodes[c as usize])
            .filter(|c| !c.dedicated)
            .map(|c| (c.code.to_string(), onemap::plan::to_multi(&c.geometry)))
            .collect();
        let mut count: BTreeMap<(u64, u64), (Coord, BTreeSet<String>)> = BTreeMap::new();
        for (code, m) in &kids {
            for v in vertices(m) {
                count
                    .entry((v.x.to_bits(), v.y.to_bits()))
                    .or_insert((v, BTreeSet::new()))
                    .1
                    .insert(code.clone());
            }
        }
        if let Some((v, who)) = count
            .values()
            .find(|(v, who)| who.len() >= 2 && !on_boundary(&outer, *v))
        {
            if found == skip {
                return (n.code.to_string(), *v, who.iter().cloned().collect());
            }
            found += 1;
        }
    }
    panic!("no grid with an inner shared vertex");
}

/// A small move (about 3 m) that keeps the rings simple.
fn nudge(c: Coord) -> Coord {
    Coord {
        x: c.x + 0.00003,
        y: c.y + 0.00002,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_vertex_moves_both_grids_publishes_and_reverts() {
    let e = env().await;
    let (grid, v, sharing) = grid_with_inner_vertex(&e, 0).await;
    let plan = e
        .ok(
            "/api/plans",
            json!({"title": "微网格边界微调", "scope": [grid], "author": "张规划"}),
        )
        .await;
    let id = plan["id"].as_i64().expect("id");
    let before = grids_of(&plan);
    let cat = e.state.catalog();
    let node = cat.grids.get(&grid).expect("grid").1;
    assert_eq!(
        before.len(),
        1 + node.children.len(),
        "the grid and its micro-grids"
    );
    assert!(
        before
            .values()
            .all(|f| f["properties"]["state"] == "unchanged")
    );

    // Tiles over the vertex and far away, cached.
    let t = onemap::tiles::mercator::tile_of(16, v.x, v.y);
    let here = format!("/tiles/grids/16/{}/{}.mvt", t.x, t.y);
    let far_pt = cat
        .grids
        .nodes
        .iter()
        .rev()
        .find(|n| n.level == onemap::model::GridLevel::Micro && !n.code.as_str().starts_with(&grid))
        .and_then(|n| n.label)
        .expect("far grid");
    let tf = onemap::tiles::mercator::tile_of(16, far_pt.x(), far_pt.y());
    assert_ne!((tf.x, tf.y), (t.x, t.y));
    let far = format!("/tiles/grids/16/{}/{}.mvt", tf.x, tf.y);
    let (here0, far0) = (e.etag(&here).await, e.etag(&far).await);

    let to = nudge(v);
    let r = e
        .ok(
            &format!("/api/plans/{id}/ops"),
            json!({"op": "move_vertex", "from": [v.x, v.y], "to": [to.x, to.y]}),
        )
        .await;
    let changed: BTreeSet<String> = r["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    for c in &sharing {
        assert!(changed.contains(c), "{c} shares the vertex and must follow");
    }
    let after = grids_of(&r["plan"]);
    for c in &sharing {
        let m = multi(&after[c]["geometry"]);
        let vs = vertices(&m);
        assert!(vs.contains(&to) && !vs.contains(&v), "{c} moved its vertex");
        assert_eq!(after[c]["properties"]["state"], "changed");
    }
    // The coverage is exact: the micro-grids' areas still sum to the grid's.
    let sum = |g: &BTreeMap<String, J>| -> f64 {
        g.iter()
            .filter(|(c, f)| c.len() == 19 && f["properties"]["kind"] != "dedicated")
            .map(|(_, f)| multi(&f["geometry"]).unsigned_area())
            .sum()
    };
    let parent_area = multi(&after[&grid]["geometry"]).unsigned_area();
    assert!(
        (sum(&after) - parent_area).abs() < parent_area * 1e-9,
        "coverage kept"
    );
    assert!((sum(&after) - sum(&before)).abs() < parent_area * 1e-9);

    let val = e.get(&format!("/api/plans/{id}/validate")).await;
    assert_eq!(
        val["ok"], true,
        "a moved shared vertex keeps the plan valid: {}",
        val["violations"]
    );
    assert!(val["impact"]["moved"].is_object());

    let pubd = e
        .ok(
            &format!("/api/plans/{id}/publish"),
            json!({"author": "张规划", "reason": "按小区围墙调整"}),
        )
        .await;
    assert_eq!(
        pubd["grids"]["updated"].as_array().unwrap().len(),
        changed.len()
    );
    let plan = e.get(&format!("/api/plans/{id}")).await;
    assert_eq!(plan["status"], "published");
    // Only the tile over the change is new.
    assert_ne!(
        e.etag(&here).await,
        here0,
        "the tile over the vertex changed"
    );
    assert_eq!(e.etag(&far).await, far0, "a far tile is untouched");
    // Published: the catalog has the new boundary.
    let cat = e.state.catalog();
    for c in &sharing {
        let m = onemap::plan::to_multi(&cat.grids.get(c).unwrap().1.geometry);
        assert!(vertices(&m).contains(&to));
    }
    // A published plan no longer changes.
    let r = e
        .post(&format!("/api/plans/{id}/ops"), json!({"op": "undo"}))
        .await;
    common::expect_problem(r, 409).await;

    // History: the import and the plan's version, with author and reason.
    let c0 = &sharing[0];
    let h = e.get(&format!("/api/grids/{c0}/history")).await;
    let vs = h["versions"].as_array().unwrap();
    assert_eq!(vs.len(), 2, "{h}");
    assert_eq!(vs[0]["op"], "import");
    assert_eq!(vs[1]["op"], "update");
    assert_eq!(vs[1]["plan"], id);
    // The author is the principal (the test's admin token), not the body's.
    assert_eq!(vs[1]["author"], "token:test-admin");
    assert_eq!(vs[1]["reason"], "按小区围墙调整");
    assert_eq!(vs[1]["revert"], false);
    let original = vs[0]["geometry"].clone();

    // A dry run first: what would go back and what would be undone,
    // nothing written.
    let seq = e.state.store.last_seq().await.unwrap();
    let dry = e
        .ok(
            &format!("/api/grids/{c0}/revert"),
            json!({"version": 1, "author": "李科长", "reason": "恢复原边界", "dry_run": true}),
        )
        .await;
    assert_eq!(
        (dry["dry_run"].as_bool(), dry["ok"].as_bool()),
        (Some(true), Some(true)),
        "{dry}"
    );
    let undone = dry["undone"].as_array().unwrap();
    assert_eq!(undone.len(), 1, "{dry}");
    assert_eq!(
        (
            undone[0]["plan"].as_i64(),
            undone[0]["author"].as_str(),
            undone[0]["reason"].as_str()
        ),
        (Some(id), Some("token:test-admin"), Some("按小区围墙调整"))
    );
    assert!(
        dry["grids"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["action"] == "restore"),
        "{dry}"
    );
    assert!(dry["impact"]["grids"].is_array(), "{dry}");
    assert_eq!(
        e.state.store.last_seq().await.unwrap(),
        seq,
        "a dry run writes nothing"
    );

    // Revert to version 1: every grid of that publish goes back, exactly.
    let rv = e
        .ok(
            &format!("/api/grids/{c0}/revert"),
            json!({"version": 1, "author": "李科长", "reason": "恢复原边界"}),
        )
        .await;
    let reverted: BTreeSet<String> = rv["reverted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    for c in &sharing {
        assert!(reverted.contains(c));
    }
    assert_eq!(
        rv["reverted"], dry["reverted"],
        "the dry run named what the revert did"
    );
    let h = e.get(&format!("/api/grids/{c0}/history")).await;
    let vs = h["versions"].as_array().unwrap();
    assert_eq!(vs.len(), 3);
    assert_eq!(
        vs[2]["geometry"], original,
        "revert restores the exact geometry"
    );
    assert_eq!(vs[2]["author"], "token:test-admin");
    assert_eq!(
        (vs[2]["reason"].as_str(), vs[2]["revert"].as_bool()),
        (Some("恢复原边界"), Some(true))
    );
    let cat = e.state.catalog();
    for c in &sharing {
        let m = onemap::plan::to_multi(&cat.grids.get(c).unwrap().1.geometry);
        let vs = vertices(&m);
        assert!(vs.contains(&v) && !vs.contains(&to), "{c} is back");
    }
    // Reverting to the current version is refused.
    let r = e
        .post(
            &format!("/api/grids/{c0}/revert"),
            json!({"version": 3, "author": "李科长", "reason": "x"}),
        )
        .await;
    common::expect_problem(r, 400).await;
}

fn scaled(m: &MultiPolygon, k: f64) -> MultiPolygon {
    use geo::{Centroid, Scale};
    let c = m.centroid().expect("centroid");
    m.scale_around_point(k, k, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_overlaps_and_households_are_reported_and_block_publish() {
    let e = env().await;
    let (grid, _, sharing) = grid_with_inner_vertex(&e, 1).await;
    let plan = e
        .ok(
            "/api/plans",
            json!({"title": "缩小微网格", "scope": [grid], "author": "王"}),
        )
        .await;
    let id = plan["id"].as_i64().unwrap();
    let grids = grids_of(&plan);
    let m = &sharing[0];
    let orig = multi(&grids[m]["geometry"]);

    // Shrink one micro-grid: a gap opens where it was.
    let small = scaled(&orig, 0.7);
    let g = geojson::Geometry::from(&geo::Geometry::MultiPolygon(small.clone()));
    e.ok(
        &format!("/api/plans/{id}/ops"),
        json!({"op": "replace_geometry", "grids": [{"code": m, "geometry": g}]}),
    )
    .await;
    let val = e.get(&format!("/api/plans/{id}/validate")).await;
    assert_eq!(val["ok"], false);
    let gaps: Vec<&J> = val["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "gap")
        .collect();
    assert_eq!(gaps.len(), 1, "{}", val["violations"]);
    let gap = multi(&gaps[0]["geometry"]);
    let expect = orig.unsigned_area() - small.unsigned_area();
    assert!(
        (gap.unsigned_area() - expect).abs() < expect * 1e-6,
        "the gap is the ring between old and new"
    );
    assert!(
        gaps[0]["grids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == &json!(grid))
    );
    assert!(gap.intersects(&orig) && !small.contains(&gap));
    // Publish is refused with the reasons; nothing is written.
    let seq = e.seq().await;
    let r = e
        .post(
            &format!("/api/plans/{id}/publish"),
            json!({"author": "王", "reason": "试试"}),
        )
        .await;
    let body = common::expect_problem(r, 409).await;
    assert!(body["violations"].as_array().is_some_and(|v| !v.is_empty()));
    assert_eq!(e.seq().await, seq, "a refused publish writes nothing");

    // Undo, then grow it: overlaps with its neighbours, and outside the grid.
    let r = e
        .ok(&format!("/api/plans/{id}/ops"), json!({"op": "undo"}))
        .await;
    assert_eq!(
        multi(&grids_of(&r["plan"])[m]["geometry"]),
        orig,
        "undo restores the geometry"
    );
    let val = e.get(&format!("/api/plans/{id}/validate")).await;
    assert_eq!(val["ok"], true, "{}", val["violations"]);
    let big = scaled(&orig, 1.3);
    let g = geojson::Geometry::from(&geo::Geometry::MultiPolygon(big.clone()));
    e.ok(
        &format!("/api/plans/{id}/ops"),
        json!({"op": "replace_geometry", "grids": [{"code": m, "geometry": g}]}),
    )
    .await;
    let val = e.get(&format!("/api/plans/{id}/validate")).await;
    let kinds: BTreeSet<&str> = val["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains("overlap"), "{kinds:?}");
    for v in val["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "overlap")
    {
        let codes: Vec<&str> = v["grids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(codes.contains(&m.as_str()));
        let other = codes.iter().find(|c| **c != m.as_str()).unwrap();
        let o = multi(&grids_of(&e.get(&format!("/api/plans/{id}")).await)[*other]["geometry"]);
        let piece = multi(&v["geometry"]);
        // The overlap lies in both grids.
        let inside = |a: &MultiPolygon| {
            geo::BooleanOps::difference(&piece, a).unsigned_area() < piece.unsigned_area() * 1e-6
        };
        assert!(
            inside(&big) && inside(&o),
            "overlap geometry is the shared part"
        );
    }
    e.ok(&format!("/api/plans/{id}/ops"), json!({"op": "undo"}))
        .await;

    // Split a thin slice off a micro-grid: it holds under 30 households.
    let mut reported = false;
    let micros: Vec<String> = grids.keys().filter(|c| c.len() == 19).cloned().collect();
    for c in &micros {
        let g = multi(&grids_of(&e.get(&format!("/api/plans/{id}")).await)[c]["geometry"]);
        let b = geo::BoundingRect::bounding_rect(&g).unwrap();
        let x = b.min().x + 0.12 * b.width();
        let r = e
            .post(
                &format!("/api/plans/{id}/ops"),
                json!({"op": "split", "code": c, "line": [[x, b.min().y - 0.001], [x, b.max().y + 0.001]]}),
            )
            .await;
        if r.status() != 200 {
            continue; // a line that crosses this outline more than twice
        }
        let r: J = r.json().await.unwrap();
        let new = r["created"][0].as_str().unwrap().to_string();
        assert_eq!(new.len(), 19);
        assert!(
            new.starts_with(&grid),
            "the new code is under the same parent"
        );
        let halves = grids_of(&r["plan"]);
        let (a, b2) = (
            multi(&halves[c]["geometry"]),
            multi(&halves[&new]["geometry"]),
        );
        assert!(
            (a.unsigned_area() + b2.unsigned_area() - g.unsigned_area()).abs()
                < g.unsigned_area() * 1e-9
        );
        assert!(
            a.unsigned_area() >= b2.unsigned_area(),
            "the larger part keeps the code"
        );
        let val = e.get(&format!("/api/plans/{id}/validate")).await;
        let low: Vec<&J> = val["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["kind"] == "households")
            .collect();
        if low.is_empty() {
            e.ok(&format!("/api/plans/{id}/ops"), json!({"op": "undo"}))
                .await;
            continue; // this slice happens to hold 30 households
        }
        assert!(
            low.iter().any(|v| v["grids"][0] == json!(new)),
            "{}",
            val["violations"]
        );
        assert!(low[0]["detail"].as_str().unwrap().contains("households"));
        // No gap or overlap: the halves tile the old micro-grid.
        assert!(
            val["violations"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["kind"] == "households"),
            "{}",
            val["violations"]
        );
        reported = true;
        break;
    }
    assert!(
        reported,
        "no micro-grid split gave a slice under 30 households"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_after_a_concurrent_publish_of_the_same_grids_is_refused() {
    let e = env().await;
    let (grid, v, _) = grid_with_inner_vertex(&e, 2).await;
    let a = e
        .ok(
            "/api/plans",
            json!({"title": "A", "scope": [grid], "author": "甲"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let b = e
        .ok(
            "/api/plans",
            json!({"title": "B", "scope": [grid], "author": "乙"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let to = nudge(v);
    for id in [a, b] {
        e.ok(
            &format!("/api/plans/{id}/ops"),
            json!({"op": "move_vertex", "from": [v.x, v.y], "to": [to.x, to.y]}),
        )
        .await;
    }
    e.ok(
        &format!("/api/plans/{a}/publish"),
        json!({"author": "甲", "reason": "先发布"}),
    )
    .await;
    let seq = e.seq().await;
    let r = e
        .post(
            &format!("/api/plans/{b}/publish"),
            json!({"author": "乙", "reason": "后发布"}),
        )
        .await;
    let body = common::expect_problem(r, 409).await;
    assert!(
        body["conflicts"].as_array().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
    assert_eq!(e.seq().await, seq);
    assert_eq!(e.get(&format!("/api/plans/{b}")).await["status"], "draft");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rederives_the_grid_of_a_camera_that_crossed_the_line() {
    let e = env().await;
    let cat = e.state.catalog();
    let cams = cat.layer("cameras").unwrap();
    // A camera inside a micro-grid next to a sibling it shares an edge
    // with; the shared vertex V moves so that the camera ends up in the
    // triangle the sibling gains (its centroid is the camera).
    let mut tried = 0;
    for (i, f) in cams.features.iter().enumerate() {
        let node = cams.grid_node(i);
        if node == onemap::index::NO_GRID {
            continue;
        }
        let m1 = &cat.grids.nodes[node as usize];
        if m1.level != onemap::model::GridLevel::Micro {
            continue;
        }
        let geo::Geometry::Point(p) = f.geometry else {
            continue;
        };
        let parent = &cat.grids.nodes[m1.parent as usize];
        let g1 = onemap::plan::to_multi(&m1.geometry);
        let outer = onemap::plan::to_multi(&parent.geometry);
        for &s in &parent.children {
            let m2 = &cat.grids.nodes[s as usize];
            if m2.code == m1.code || m2.dedicated {
                continue;
            }
            let g2 = onemap::plan::to_multi(&m2.geometry);
            let v2: BTreeSet<(u64, u64)> = vertices(&g2)
                .iter()
                .map(|c| (c.x.to_bits(), c.y.to_bits()))
                .collect();
            let ring = &g1.0[0].exterior().0;
            for w in ring.windows(2) {
                let (a, b) = (w[0], w[1]);
                if !v2.contains(&(a.x.to_bits(), a.y.to_bits()))
                    || !v2.contains(&(b.x.to_bits(), b.y.to_bits()))
                    || on_boundary(&outer, a)
                {
                    continue;
                }
                let to = Coord {
                    x: 3.0 * p.x() - a.x - b.x,
                    y: 3.0 * p.y() - a.y - b.y,
                };
                if !g1.contains(&Point(to)) || tried > 40 {
                    continue;
                }
                tried += 1;
                let id = e.ok("/api/plans", json!({"title": "摄像头跨线", "scope": [parent.code.to_string()], "author": "赵"})).await["id"].as_i64().unwrap();
                e.ok(
                    &format!("/api/plans/{id}/ops"),
                    json!({"op": "move_vertex", "from": [a.x, a.y], "to": [to.x, to.y]}),
                )
                .await;
                let val = e.get(&format!("/api/plans/{id}/validate")).await;
                let moved = val["impact"]["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| {
                        m["layer"] == "cameras"
                            && m["id"] == f.id
                            && m["to"] == json!(m2.code.as_str())
                    });
                if val["ok"] != true || !moved {
                    e.srv
                        .client
                        .delete(format!("{}/api/plans/{id}", e.srv.base))
                        .send()
                        .await
                        .unwrap();
                    continue;
                }
                let before = e.get(&format!("/api/grids/{}", m2.code)).await["counts"]["cameras"]
                    .as_i64()
                    .unwrap();
                e.ok(
                    &format!("/api/plans/{id}/publish"),
                    json!({"author": "赵", "reason": "摄像头划入相邻微网格"}),
                )
                .await;
                let item = e
                    .get(&format!("/ogc/collections/cameras/items/{}", f.id))
                    .await;
                assert_eq!(
                    item["properties"]["grid"],
                    json!(m2.code.as_str()),
                    "the stored grid code follows"
                );
                let after = e.get(&format!("/api/grids/{}", m2.code)).await["counts"]["cameras"]
                    .as_i64()
                    .unwrap();
                assert_eq!(after, before + 1);
                let located = e
                    .get(&format!("/api/locate?lon={}&lat={}", p.x(), p.y()))
                    .await;
                assert!(located.to_string().contains(m2.code.as_str()), "{located}");
                return;
            }
        }
    }
    panic!("no camera could be moved across a line with a valid plan ({tried} tried)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plans_and_operations_are_refused_and_change_nothing() {
    let e = env().await;
    let (grid, v, sharing) = grid_with_inner_vertex(&e, 0).await;
    let community = &grid[..12];
    for (body, status) in [
        (json!({"title": "x", "scope": [], "author": "a"}), 400),
        (json!({"title": "x", "scope": ["12"], "author": "a"}), 400),
        (
            json!({"title": "x", "scope": ["9999999999999999"], "author": "a"}),
            404,
        ),
        (
            json!({"title": "x", "scope": [community, grid], "author": "a"}),
            400,
        ),
        (json!({"title": "", "scope": [grid], "author": "a"}), 400),
        // The author is the signed-in principal: a body's is ignored.
        (
            json!({"title": "x", "scope": [grid], "author": "a", "extra": 1}),
            400,
        ),
    ] {
        let r = e.post("/api/plans", body.clone()).await;
        common::expect_problem(r, status).await;
    }
    let id = e
        .ok(
            "/api/plans",
            json!({"title": "x", "scope": [grid], "author": "a"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let plan0 = e.get(&format!("/api/plans/{id}")).await;
    let seq = e.seq().await;
    let far = sharing.iter().find(|c| c.len() == 19).unwrap();
    let other_grid = e
        .state
        .catalog()
        .grids
        .nodes
        .iter()
        .find(|n| n.level == onemap::model::GridLevel::Micro && !n.code.as_str().starts_with(&grid))
        .unwrap()
        .code
        .to_string();
    let bowtie = json!({"type": "Polygon", "coordinates": [[[v.x, v.y], [v.x + 0.001, v.y + 0.001], [v.x + 0.001, v.y], [v.x, v.y + 0.001], [v.x, v.y]]]});
    for body in [
        json!({"op": "explode"}),
        json!({"op": "move_vertex", "from": [v.x + 0.01, v.y + 0.01], "to": [v.x, v.y]}),
        json!({"op": "move_vertex", "from": [v.x, v.y], "to": [500.0, 0.0]}),
        json!({"op": "move_vertex", "from": [v.x, v.y]}),
        json!({"op": "split", "code": far, "line": [[0.0, 0.0], [1.0, 1.0]]}),
        json!({"op": "merge", "codes": [far, other_grid]}),
        json!({"op": "merge", "codes": [far]}),
        json!({"op": "reassign", "code": far, "parent": "990000000000"}),
        json!({"op": "attributes", "code": far, "set": {"code": "1"}}),
        json!({"op": "attributes", "code": far, "set": {"population": -3}}),
        json!({"op": "replace_geometry", "grids": [{"code": far, "geometry": bowtie}]}),
        json!({"op": "replace_geometry", "grids": [{"code": far, "geometry": {"type": "Point", "coordinates": [v.x, v.y]}}]}),
        json!({"op": "replace_geometry", "grids": [{"code": far, "geometry": {"type": "Polygon", "coordinates": [[[v.x, v.y], [v.x, v.y + 0.001]]]}}]}),
        json!({"op": "replace_geometry", "grids": [{"code": "9901", "geometry": bowtie}]}),
        json!({"op": "undo"}),
    ] {
        let r = e.post(&format!("/api/plans/{id}/ops"), body.clone()).await;
        let p = common::expect_problem(r, 400).await;
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{body}");
    }
    let r = e
        .srv
        .client
        .post(format!("{}/api/plans/{id}/ops", e.srv.base))
        .header("content-type", "application/json")
        .body("{\"op\": \"move_vertex\", ")
        .send()
        .await
        .unwrap();
    common::expect_problem(r, 400).await;
    let r = e.post("/api/plans/999/ops", json!({"op": "undo"})).await;
    common::expect_problem(r, 404).await;
    let r = e
        .post(&format!("/api/plans/{id}/publish"), json!({"author": "a"}))
        .await;
    common::expect_problem(r, 400).await;
    let r = e
        .post(
            &format!("/api/plans/{id}/publish"),
            json!({"author": "a", "reason": "无变化"}),
        )
        .await;
    common::expect_problem(r, 400).await;
    let r = e.srv.get("/api/grids/123/history").await;
    common::expect_problem(r, 400).await;
    let r = e.srv.get("/api/grids/9999999999999999/history").await;
    common::expect_problem(r, 404).await;
    assert_eq!(e.seq().await, seq, "refusals wrote nothing");
    assert_eq!(
        e.get(&format!("/api/plans/{id}")).await,
        plan0,
        "the plan is unchanged"
    );
    // Rename, then discard: a discarded plan no longer changes.
    let r = e
        .srv
        .client
        .patch(format!("{}/api/plans/{id}", e.srv.base))
        .json(&json!({"title": "新名字"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(e.get(&format!("/api/plans/{id}")).await["title"], "新名字");
    let r = e
        .srv
        .client
        .patch(format!("{}/api/plans/{id}", e.srv.base))
        .json(&json!({"title": ""}))
        .send()
        .await
        .unwrap();
    common::expect_problem(r, 400).await;
    let r = e
        .srv
        .client
        .delete(format!("{}/api/plans/{id}", e.srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        e.get(&format!("/api/plans/{id}")).await["status"],
        "discarded"
    );
    let r = e
        .post(
            &format!("/api/plans/{id}/ops"),
            json!({"op": "move_vertex", "from": [v.x, v.y], "to": [v.x, v.y]}),
        )
        .await;
    common::expect_problem(r, 409).await;
    let r = e
        .srv
        .client
        .delete(format!("{}/api/plans/{id}", e.srv.base))
        .send()
        .await
        .unwrap();
    common::expect_problem(r, 409).await;
    // Plans survive a restart of the book (they are in the store).
    let again = onemap::plan::Plans::default();
    let book = again.book(e.state.store.as_ref()).await.expect("book");
    let p = book.get(id).expect("plan");
    assert_eq!(p.grids.len(), grids_of(&plan0).len());
    assert_eq!(
        (p.title.as_str(), p.status.as_str()),
        ("新名字", "discarded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ogc_part4_edits_a_plans_grids_with_and_without_if_match() {
    let e = env().await;
    let (grid, _, sharing) = grid_with_inner_vertex(&e, 0).await;
    let id = e
        .ok(
            "/api/plans",
            json!({"title": "QGIS 编辑", "scope": [grid], "author": "孙"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let cid = format!("plan-{id}-grids");
    let cols = e.get("/ogc/collections").await;
    assert!(
        cols["collections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == json!(cid))
    );
    let conf = e.get("/ogc/conformance").await.to_string();
    assert!(
        conf.contains("ogcapi-features-4/1.0/conf/create-replace-delete")
            && conf.contains("ogcapi-features-4/1.0/conf/update")
    );
    let url = |p: &str| format!("{}/ogc/collections/{cid}/items{p}", e.srv.base);
    let c = &e.srv.client;
    let allow = |r: &reqwest::Response| {
        r.headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let r = c
        .request(reqwest::Method::OPTIONS, url(""))
        .send()
        .await
        .unwrap();
    assert!(allow(&r).contains("POST"), "{}", allow(&r));
    let m = sharing[0].clone();
    let r = c
        .request(reqwest::Method::OPTIONS, url(&format!("/{m}")))
        .send()
        .await
        .unwrap();
    for verb in ["PUT", "PATCH", "DELETE"] {
        assert!(allow(&r).contains(verb));
    }
    let tag = |r: &reqwest::Response| {
        r.headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string())
            .expect("etag")
    };
    let r = c.get(url(&format!("/{m}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let t1 = tag(&r);
    let f1: J = r.json().await.unwrap();
    assert_eq!(f1["id"], json!(m));
    let items: J = c.get(url("")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        items["features"].as_array().unwrap().len(),
        items["numberMatched"].as_u64().unwrap() as usize
    );

    // PATCH without If-Match (as QGIS sends it): applies.
    let r = c
        .patch(url(&format!("/{m}")))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"properties": {"staff": "刘网格员"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t2 = tag(&r);
    assert_ne!(t1, t2);
    let plan = e.get(&format!("/api/plans/{id}")).await;
    assert_eq!(grids_of(&plan)[&m]["properties"]["staff"], "刘网格员");
    // A stale If-Match: 412, nothing changes.
    let seq = e.seq().await;
    let r = c
        .patch(url(&format!("/{m}")))
        .header("if-match", &t1)
        .body(json!({"properties": {"staff": "别人"}}).to_string())
        .send()
        .await
        .unwrap();
    common::expect_problem(r, 412).await;
    assert_eq!(e.seq().await, seq);
    // PUT with the current ETag: replaces the whole feature.
    let mut f = f1.clone();
    f["properties"]["name"] = json!("改名微网格");
    f["properties"]["staff"] = json!("刘网格员");
    let r = c
        .put(url(&format!("/{m}")))
        .header("if-match", &t2)
        .json(&f)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t3 = tag(&r);
    let plan = e.get(&format!("/api/plans/{id}")).await;
    assert_eq!(grids_of(&plan)[&m]["properties"]["name"], "改名微网格");
    let r = c
        .put(url(&format!("/{m}")))
        .header("if-match", &t2)
        .json(&f)
        .send()
        .await
        .unwrap();
    common::expect_problem(r, 412).await;
    let mut bad = f.clone();
    bad["geometry"] = json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]});
    common::expect_problem(
        c.put(url(&format!("/{m}")))
            .json(&bad)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    let mut bad = f.clone();
    bad["properties"]["parent"] = json!("990000000000");
    common::expect_problem(
        c.put(url(&format!("/{m}")))
            .json(&bad)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    common::expect_problem(
        c.put(url(&format!("/{m}")))
            .body("{not json")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(
        tag(&c.get(url(&format!("/{m}"))).send().await.unwrap()),
        t3,
        "refused writes change nothing"
    );

    // POST a new micro-grid under the grid; then DELETE it.
    let mut n = f1.clone();
    n["properties"] = json!({"parent": grid, "name": "新建微网格"});
    let r = c.post(url("")).json(&n).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let loc = r
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let created: J = r.json().await.unwrap();
    let code = created["id"].as_str().unwrap().to_string();
    assert!(code.starts_with(&grid) && code.len() == 19 && loc.ends_with(&code));
    let stale = tag(&c.get(url(&format!("/{code}"))).send().await.unwrap());
    c.patch(url(&format!("/{code}")))
        .json(&json!({"properties": {"phone": "12345"}}))
        .send()
        .await
        .unwrap();
    common::expect_problem(
        c.delete(url(&format!("/{code}")))
            .header("if-match", &stale)
            .send()
            .await
            .unwrap(),
        412,
    )
    .await;
    let r = c.delete(url(&format!("/{code}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        c.get(url(&format!("/{code}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // The grid itself has children in the plan: not deletable alone.
    common::expect_problem(
        c.delete(url(&format!("/{grid}"))).send().await.unwrap(),
        409,
    )
    .await;

    // Every edit is a plan operation: undo goes back one.
    let plan = e.get(&format!("/api/plans/{id}")).await;
    let kinds: Vec<&str> = plan["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ogc_update",
            "ogc_replace",
            "ogc_create",
            "ogc_update",
            "ogc_delete"
        ]
    );
    let r = e
        .ok(&format!("/api/plans/{id}/ops"), json!({"op": "undo"}))
        .await;
    assert!(
        grids_of(&r["plan"]).contains_key(&code),
        "undo of the delete brings the grid back"
    );

    // Published collections are read-only.
    let fid = e.get(&format!("/api/grids/{m}")).await["id"]
        .as_i64()
        .unwrap();
    let r = c
        .put(format!("{}/ogc/collections/grids/items/{fid}", e.srv.base))
        .json(&f)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(allow(&r).contains("GET") && !allow(&r).contains("PUT"));
    let r = c
        .post(format!("{}/ogc/collections/grids/items", e.srv.base))
        .json(&n)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_and_reassign_recode_and_are_validated() {
    let e = env().await;
    let (grid, _, sharing) = grid_with_inner_vertex(&e, 0).await;
    let community = grid[..12].to_string();
    let id = e
        .ok(
            "/api/plans",
            json!({"title": "合并与调整", "scope": [community], "author": "周"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let plan = e.get(&format!("/api/plans/{id}")).await;
    let before = grids_of(&plan);
    // Merge two micro-grids that share an edge: one outline, the area of both.
    let (a, b) = (&sharing[0], &sharing[1]);
    let (ga, gb) = (multi(&before[a]["geometry"]), multi(&before[b]["geometry"]));
    let r = e
        .ok(
            &format!("/api/plans/{id}/ops"),
            json!({"op": "merge", "codes": [a, b]}),
        )
        .await;
    assert_eq!(r["deleted"], json!([b]));
    let after = grids_of(&r["plan"]);
    assert!(!after.contains_key(b));
    let m = multi(&after[a]["geometry"]);
    assert!(
        (m.unsigned_area() - ga.unsigned_area() - gb.unsigned_area()).abs()
            < ga.unsigned_area() * 1e-9
    );
    assert_eq!(m.0.len(), 1, "one outline");
    let val = e.get(&format!("/api/plans/{id}/validate")).await;
    let kinds: BTreeSet<&str> = val["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.iter().all(|k| *k == "households"),
        "a merge leaves no gap or overlap: {kinds:?}"
    );
    let row = val["impact"]["grids"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["code"] == json!(a))
        .expect("impact row");
    let cat = e.state.catalog();
    let hh = |c: &str| cat.stats[cat.grids.get(c).unwrap().0 as usize].households;
    assert_eq!(
        row["after"]["households"].as_i64().unwrap(),
        hh(a) + hh(b),
        "households add up"
    );
    e.ok(&format!("/api/plans/{id}/ops"), json!({"op": "undo"}))
        .await;

    // Reassign a grid (with its micro-grids) to another grid... of the
    // community: it gets a new code under the new parent, its subtree too,
    // and validation reports it outside its new parent and the gaps.
    let grids: Vec<String> = before.keys().filter(|c| c.len() == 16).cloned().collect();
    assert!(grids.len() >= 2);
    let (g, p) = (&grids[0], &grids[1]);
    let other_community = cat
        .grids
        .nodes
        .iter()
        .find(|n| n.level == onemap::model::GridLevel::Community && n.code.as_str() != community)
        .unwrap()
        .code
        .to_string();
    let r = e
        .post(
            &format!("/api/plans/{id}/ops"),
            json!({"op": "reassign", "code": g, "parent": other_community}),
        )
        .await;
    common::expect_problem(r, 400).await; // not in this plan
    // Micro-grid of g under another grid of the plan.
    let micro = before
        .keys()
        .find(|c| c.len() == 19 && c.starts_with(g.as_str()))
        .unwrap()
        .clone();
    let r = e
        .ok(
            &format!("/api/plans/{id}/ops"),
            json!({"op": "reassign", "code": micro, "parent": p}),
        )
        .await;
    let new = r["created"][0].as_str().unwrap().to_string();
    assert!(new.starts_with(p.as_str()) && new.len() == 19);
    let after = grids_of(&r["plan"]);
    assert!(!after.contains_key(&micro) && after[&new]["properties"]["parent"] == json!(p));
    assert_eq!(
        after[&new]["geometry"], before[&micro]["geometry"],
        "same outline, new code"
    );
    let val = e.get(&format!("/api/plans/{id}/validate")).await;
    let v = val["violations"].as_array().unwrap();
    assert!(
        v.iter()
            .any(|x| x["kind"] == "outside_parent" && x["grids"][0] == json!(new)),
        "{val}"
    );
    assert!(
        v.iter()
            .any(|x| x["kind"] == "gap" && x["grids"][0] == json!(g)),
        "{val}"
    );
    // Every feature of the micro-grid now reports the new code.
    let moved: Vec<&J> = val["impact"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["from"] == json!(micro))
        .collect();
    assert!(!moved.is_empty() && moved.iter().all(|m| m["to"] == json!(new)));
}
