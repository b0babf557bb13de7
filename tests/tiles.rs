//! Vector tiles: decoded by GDAL and by an independent decoder, checked
//! against the data; shared grid boundaries; HTTP behaviour and the cache.

mod common;

use common::mvt_decode::{self, Val};
use geo::{Contains, Distance, Euclidean, Geometry, Intersects, Point, Rect};
use onemap::model::builtin;
use onemap::store::Store;
use onemap::tiles::mercator::{TileId, tile_of};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The tile at `z` holding the first micro-grid's first address.
async fn some_tile(store: &dyn Store, z: u8) -> (TileId, Point) {
    let a = &store.load_layer(builtin::ADDRESSES).await.unwrap()[0];
    let Geometry::Point(p) = a.geometry else {
        panic!()
    };
    (tile_of(z, p.x(), p.y()), p)
}

#[tokio::test(flavor = "multi_thread")]
async fn gdal_decodes_tiles_that_match_the_data() {
    let Some(_) = common::ogrinfo() else { return };
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 5).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let (t, _) = some_tile(store.as_ref(), 15).await;
    let r = srv
        .get(&format!("/tiles/all/{}/{}/{}.mvt", t.z, t.x, t.y))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.mapbox-vector-tile"
    );
    let bytes = r.bytes().await.unwrap();
    let path = dir.path().join("t.mvt");
    std::fs::write(&path, &bytes).unwrap();

    let gdal = |layer: &str| -> serde_json::Value {
        let out = std::process::Command::new("ogr2ogr")
            .args(["-f", "GeoJSON", "-t_srs", "EPSG:4326", "/vsistdout/"])
            .args([
                "-oo",
                &format!("Z={}", t.z),
                "-oo",
                &format!("X={}", t.x),
                "-oo",
                &format!("Y={}", t.y),
            ])
            .arg(format!("MVT:{}", path.display()))
            .arg(layer)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ogr2ogr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let info = std::process::Command::new("ogrinfo")
        .args([
            "-ro",
            "-so",
            "-oo",
            &format!("Z={}", t.z),
            "-oo",
            &format!("X={}", t.x),
            "-oo",
            &format!("Y={}", t.y),
        ])
        .arg(format!("MVT:{}", path.display()))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&info.stdout);
    for l in ["grids", "cameras", "addresses", "events"] {
        assert!(
            listing.contains(&format!(": {l}")),
            "layer {l} missing:\n{listing}"
        );
    }

    // Grids: every grid that meets the tile is there (all five levels are
    // visible at z15), with its code and name.
    let bounds = t.bounds(0.0);
    let tile_poly = bounds.to_polygon();
    let gd = builtin::layer(builtin::GRIDS).unwrap();
    let grids = store.load_layer(builtin::GRIDS).await.unwrap();
    let expected: BTreeSet<String> = grids
        .iter()
        .filter(|g| {
            let inner = Rect::new(
                (
                    bounds.min().x + bounds.width() * 0.01,
                    bounds.min().y + bounds.height() * 0.01,
                ),
                (
                    bounds.max().x - bounds.width() * 0.01,
                    bounds.max().y - bounds.height() * 0.01,
                ),
            );
            g.geometry.intersects(&inner.to_polygon())
        })
        .map(|g| g.get(&gd, "code").unwrap().as_str().unwrap().to_string())
        .collect();
    let decoded = gdal("grids");
    let got: BTreeSet<String> = decoded["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["code"].as_str().unwrap().to_string())
        .collect();
    assert!(!expected.is_empty());
    assert!(
        expected.is_subset(&got),
        "missing grids: {:?}",
        expected.difference(&got).collect::<Vec<_>>()
    );
    let by_code: HashMap<String, &onemap::model::Feature> = grids
        .iter()
        .map(|g| (g.get(&gd, "code").unwrap().as_str().unwrap().to_string(), g))
        .collect();
    for f in decoded["features"].as_array().unwrap() {
        let code = f["properties"]["code"].as_str().unwrap();
        let g = by_code[code];
        assert_eq!(
            f["properties"]["name"],
            g.get(&gd, "name").unwrap().to_json()
        );
        assert!(
            g.geometry.intersects(&t.bounds(64.0 / 4096.0).to_polygon()),
            "{code} does not meet the tile"
        );
    }

    // Cameras: exactly those inside the tile, at their positions (within
    // a tile unit), with their names (z15 carries details).
    let cd = builtin::layer(builtin::CAMERAS).unwrap();
    let cams = store.load_layer(builtin::CAMERAS).await.unwrap();
    let inside: Vec<&onemap::model::Feature> = cams
        .iter()
        .filter(|c| matches!(c.geometry, Geometry::Point(p) if tile_poly.contains(&p)))
        .collect();
    let decoded = gdal("cameras");
    let feats = decoded["features"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[]);
    let unit_deg = bounds.width() / 4096.0;
    for c in &inside {
        let Geometry::Point(p) = c.geometry else {
            panic!()
        };
        let name = c.get(&cd, "name").unwrap().to_json();
        let f = feats
            .iter()
            .find(|f| f["properties"]["name"] == name)
            .unwrap_or_else(|| panic!("camera {name} missing"));
        let xy = &f["geometry"]["coordinates"];
        let q = Point::new(xy[0].as_f64().unwrap(), xy[1].as_f64().unwrap());
        assert!(
            Euclidean.distance(p, q) < 2.0 * unit_deg,
            "camera {name} moved"
        );
        assert_eq!(
            f["properties"]["status"],
            c.get(&cd, "status").unwrap().to_json()
        );
    }
    srv.running.stop().await.unwrap();
}

/// Every edge of a grid that does not lie on the tile border or the
/// district outline is walked exactly twice, in opposite directions: by the
/// grid and by its neighbour. That is "no gap, no overlap" in the tile.
#[tokio::test(flavor = "multi_thread")]
async fn neighbouring_grids_share_identical_boundaries_at_every_zoom() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "district", 6).await;
    let (state, running) = common::serve_state(store.clone(), common::config()).await;
    let srv = common::client_for(running);
    let cat = state.catalog();
    let district = cat
        .grids
        .nodes
        .iter()
        .find(|n| n.level == onemap::model::GridLevel::District)
        .unwrap();
    let (_, p) = some_tile(store.as_ref(), 0).await;
    let mut checked_edges = 0usize;
    for z in [10u8, 11, 13, 15, 16] {
        let t = tile_of(z, p.x(), p.y());
        let r = srv
            .get(&format!("/tiles/grids/{}/{}/{}.mvt", t.z, t.x, t.y))
            .await;
        assert_eq!(r.status(), 200, "z{z}");
        let layers = mvt_decode::decode(&r.bytes().await.unwrap());
        let l = layers.iter().find(|l| l.name == "grids").unwrap();
        assert_eq!((l.name.as_str(), l.extent, l.version), ("grids", 4096, 2));
        // The district outline in tile coordinates, to excuse its edges.
        let pr = t.projector(4096.0);
        let outline: Vec<geo::LineString> = match &district.geometry {
            Geometry::MultiPolygon(m) => m.0.iter().map(|p| p.exterior().clone()).collect(),
            Geometry::Polygon(p) => vec![p.exterior().clone()],
            _ => panic!(),
        }
        .into_iter()
        .map(|ring| {
            ring.0
                .iter()
                .map(|c| {
                    let q = pr.project(c.x, c.y);
                    geo::coord! { x: q[0], y: q[1] }
                })
                .collect()
        })
        .collect();
        let mut levels: BTreeSet<String> = BTreeSet::new();
        for level in ["district", "street", "community", "grid", "micro"] {
            let polys: Vec<&mvt_decode::Feature> = l
                .features
                .iter()
                .filter(|f| {
                    f.props.get("level") == Some(&Val::Str(level.into()))
                        && f.props.get("kind") == Some(&Val::Str("comprehensive".into()))
                })
                .collect();
            if polys.is_empty() {
                continue;
            }
            levels.insert(level.to_string());
            let mut directed: HashMap<([i64; 2], [i64; 2]), usize> = HashMap::new();
            for f in &polys {
                assert_eq!(f.kind, 3);
                for ring in &f.parts {
                    assert!(ring.len() >= 3);
                    for i in 0..ring.len() {
                        let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
                        *directed.entry((a, b)).or_default() += 1;
                    }
                }
                // The first ring is an exterior: clockwise in tile space.
                assert!(mvt_decode::area2(&f.parts[0]) > 0, "exterior ring winding");
            }
            let border = |q: [i64; 2]| q[0] <= -64 || q[0] >= 4160 || q[1] <= -64 || q[1] >= 4160;
            for (&(a, b), &n) in &directed {
                assert_eq!(
                    n, 1,
                    "z{z} {level}: edge {a:?}-{b:?} walked {n} times in one direction"
                );
                if directed.contains_key(&(b, a)) {
                    checked_edges += 1;
                    continue;
                }
                if (border(a) && border(b)) && (a[0] == b[0] || a[1] == b[1]) {
                    continue;
                }
                let mid = Point::new((a[0] + b[0]) as f64 / 2.0, (a[1] + b[1]) as f64 / 2.0);
                let near_outline = outline.iter().any(|o| Euclidean.distance(&mid, o) < 20.0);
                assert!(
                    near_outline,
                    "z{z} {level}: edge {a:?}-{b:?} has no neighbour and is not on the district outline: a gap or overlap"
                );
            }
        }
        assert!(levels.len() >= 2 || z < 11, "z{z}: levels {levels:?}");
        // Zoom ranges per level.
        assert_eq!(levels.contains("micro"), z >= 15, "z{z}: {levels:?}");
        assert_eq!(levels.contains("street"), z >= 9);
    }
    assert!(checked_edges > 1000, "only {checked_edges} shared edges");

    // Each grid's label point is in exactly one tile of a zoom.
    let c = tile_of(13, p.x(), p.y());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for dx in 0..3u32 {
        for dy in 0..3u32 {
            let r = srv
                .get(&format!(
                    "/tiles/grids/13/{}/{}.mvt",
                    c.x + dx - 1,
                    c.y + dy - 1
                ))
                .await;
            if r.status() != 200 {
                continue;
            }
            for l in mvt_decode::decode(&r.bytes().await.unwrap()) {
                if l.name == "grid_labels" {
                    for f in l.features {
                        assert_eq!(f.kind, 1);
                        let Some(Val::Str(code)) = f.props.get("code") else {
                            panic!()
                        };
                        *seen.entry(code.clone()).or_default() += 1;
                    }
                }
            }
        }
    }
    assert!(seen.len() > 20, "{} labels", seen.len());
    assert!(seen.values().all(|&n| n == 1), "a grid labelled twice");
    srv.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn http_errors_empty_tiles_etags_gzip_and_tilejson() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 7).await;
    let srv = common::serve(store.clone(), common::config()).await;

    for (path, status) in [
        ("/tiles/all/23/0/0.mvt", 400),
        ("/tiles/all/3/8/0.mvt", 400),
        ("/tiles/all/3/0/8.mvt", 400),
        ("/tiles/all/-1/0/0.mvt", 400),
        ("/tiles/all/a/0/0.mvt", 400),
        ("/tiles/all/3/0/0.png", 404),
        ("/tiles/nope/3/0/0.mvt", 404),
        ("/tiles/grids,nope/3/0/0.mvt", 404),
        ("/tiles/nope.json", 404),
        ("/tiles/all.xml", 404),
        ("/styles/nope.json", 404),
        ("/styles/..%2Fsecret.json", 404),
    ] {
        let d = common::expect_problem(srv.get(path).await, status).await;
        assert!(!d["detail"].as_str().unwrap().is_empty(), "{path}");
    }
    // Far from the data: no features, 204.
    let r = srv.get("/tiles/all/10/0/0.mvt").await;
    assert_eq!(r.status(), 204);

    let (t, _) = some_tile(store.as_ref(), 14).await;
    let url = format!("{}/tiles/all/{}/{}/{}.mvt", srv.base, t.z, t.x, t.y);
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        "authorization",
        format!("Bearer {}", common::admin_token(&srv.running))
            .parse()
            .unwrap(),
    );
    let plain = reqwest::Client::builder()
        .no_gzip()
        .default_headers(auth)
        .build()
        .unwrap();
    let r = plain
        .get(&url)
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-encoding").is_none());
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let raw = r.bytes().await.unwrap();
    let layers: Vec<String> = mvt_decode::decode(&raw)
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert!(
        layers.contains(&"grids".to_string()) && layers.contains(&"events".to_string()),
        "{layers:?}"
    );

    // gzip: the same bytes compressed, same ETag.
    let r = plain
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    let gz = r.bytes().await.unwrap();
    let mut unz = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unz).unwrap();
    assert_eq!(unz, raw);
    assert!(gz.len() < raw.len());

    // Conditional requests.
    let r = plain
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = plain
        .get(&url)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Layer subsets are their own tiles; order and duplicates do not matter.
    let a = plain
        .get(format!(
            "{}/tiles/events,grids/{}/{}/{}.mvt",
            srv.base, t.z, t.x, t.y
        ))
        .send()
        .await
        .unwrap();
    let b = plain
        .get(format!(
            "{}/tiles/grids,events,grids/{}/{}/{}.mvt",
            srv.base, t.z, t.x, t.y
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(a.headers()["etag"], b.headers()["etag"]);
    let names: Vec<String> = mvt_decode::decode(&a.bytes().await.unwrap())
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["grids", "grid_labels", "events"]);

    // TileJSON 3.0.0 with this server's URL.
    let (s, tj) = srv.get_json("/tiles/all.json").await;
    assert_eq!(s, 200);
    assert_eq!(tj["tilejson"], "3.0.0");
    assert_eq!(
        tj["tiles"][0],
        format!(
            "{}/tiles/water,roads,grids,buildings,risks,cameras,addresses,events/{{z}}/{{x}}/{{y}}.mvt",
            srv.base
        )
    );
    let ids: Vec<&str> = tj["vector_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 9);
    assert!(ids.contains(&"grid_labels"));
    assert!(tj["bounds"].as_array().unwrap().len() == 4);
    let grids_vl = tj["vector_layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "grids")
        .unwrap();
    assert_eq!(grids_vl["fields"]["code"], "String");

    // The style, with this server's origin filled in.
    let (s, style) = srv.get_json("/styles/screen.json").await;
    assert_eq!(s, 200);
    assert_eq!(style["version"], 8);
    let text = style.to_string();
    assert!(!text.contains("{{origin}}"));
    assert!(text.contains(&format!("{}/tiles/", srv.base)));
    srv.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_render_once_and_invalidation_is_exact() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 8).await;
    let (state, running) =
        common::serve_state(store.clone() as Arc<dyn Store>, common::config()).await;
    let srv = common::client_for(running);
    let (t, p) = some_tile(store.as_ref(), 15).await;
    let before = state.tiles.rendered();
    let url = format!("{}/tiles/all/{}/{}/{}.mvt", srv.base, t.z, t.x, t.y);
    let reqs = (0..16).map(|_| srv.client.get(&url).send());
    let res = futures::future::join_all(reqs).await;
    let etags: BTreeSet<String> = res
        .iter()
        .map(|r| {
            r.as_ref().unwrap().headers()["etag"]
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(etags.len(), 1);
    assert_eq!(
        state.tiles.rendered() - before,
        1,
        "16 concurrent misses rendered more than once"
    );

    // Warm a column of tiles at every zoom over the point, plus tiles far
    // away, then invalidate a tiny area around the point.
    let mut near = Vec::new();
    let mut far = Vec::new();
    for z in 0..=16u8 {
        near.push(tile_of(z, p.x(), p.y()));
        if z >= 12 {
            let o = tile_of(z, p.x() + 0.05, p.y() + 0.05);
            far.push(o);
        }
    }
    for t in near.iter().chain(&far) {
        let r = srv
            .get(&format!("/tiles/all/{}/{}/{}.mvt", t.z, t.x, t.y))
            .await;
        assert!(r.status() == 200 || r.status() == 204);
    }
    let key = |t: &TileId| onemap::tiles::cache::TileKey {
        layers: onemap::tiles::resolve_layers(&state.catalog(), "all")
            .unwrap()
            .join(",")
            .into(),
        tile: *t,
    };
    state.tiles.run_pending_tasks().await;
    assert!(
        near.iter()
            .chain(&far)
            .all(|t| state.tiles.contains(&key(t)))
    );
    let r0 = state.tiles.rendered();
    let eps = 1e-6;
    state.tiles.invalidate_bbox(Rect::new(
        (p.x() - eps, p.y() - eps),
        (p.x() + eps, p.y() + eps),
    ));
    state.tiles.run_pending_tasks().await;
    for t in &near {
        assert!(
            !state.tiles.contains(&key(t)),
            "z{} tile over the change still cached",
            t.z
        );
    }
    for t in &far {
        assert!(
            state.tiles.contains(&key(t)),
            "z{} tile away from the change was dropped",
            t.z
        );
    }
    // Refetching re-renders exactly the invalidated tiles; same data, same ETag.
    for t in near.iter().chain(&far) {
        srv.get(&format!("/tiles/all/{}/{}/{}.mvt", t.z, t.x, t.y))
            .await;
    }
    assert_eq!(state.tiles.rendered() - r0, near.len() as u64);
    srv.running.stop().await.unwrap();
}

/// Dense layers are clusters below their zoom, coarser at overview zooms,
/// and counts add up to the features in the tile.
#[tokio::test(flavor = "multi_thread")]
async fn clusters_count_what_they_stand_for() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 15).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let events = store.load_layer(builtin::EVENTS).await.unwrap();
    let (_, p) = some_tile(store.as_ref(), 0).await;
    for (z, max_cells) in [(11u8, 64usize), (13, 256)] {
        let t = tile_of(z, p.x(), p.y());
        let r = srv
            .get(&format!("/tiles/events/{}/{}/{}.mvt", t.z, t.x, t.y))
            .await;
        assert_eq!(r.status(), 200);
        let layers = mvt_decode::decode(&r.bytes().await.unwrap());
        let l = &layers[0];
        assert!(
            l.features.len() <= max_cells,
            "z{z}: {} clusters",
            l.features.len()
        );
        assert!(
            l.features
                .iter()
                .all(|f| f.props.get("cluster") == Some(&Val::B(true)))
        );
        let total: i64 = l
            .features
            .iter()
            .map(|f| match f.props["count"] {
                Val::I(n) => n,
                _ => 0,
            })
            .sum();
        // Every event inside the tile proper is in exactly one cluster.
        let b = t.bounds(0.0);
        let inside = events
            .iter()
            .filter(|e| matches!(e.geometry, Geometry::Point(q) if q.x() >= b.min().x && q.x() < b.max().x && q.y() > b.min().y && q.y() <= b.max().y))
            .count();
        assert_eq!(total as usize, inside, "z{z}");
    }
    srv.running.stop().await.unwrap();
}
