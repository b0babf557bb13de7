//! `/api/query` and `/api/nearest` against a brute-force oracle over every
//! feature read back from the store.

mod common;

use geo::{Distance, Geometry, Haversine, Intersects, LineString, Point, Polygon, Rect};
use onemap::demo::rng::Rng;
use onemap::model::{Feature, builtin};
use onemap::store::Store;
use serde_json::{Value as J, json};
use std::collections::{BTreeMap, BTreeSet};

const LAYERS: [&str; 5] = [
    builtin::ADDRESSES,
    builtin::CAMERAS,
    builtin::RISKS,
    builtin::BUILDINGS,
    builtin::EVENTS,
];

async fn post(srv: &common::TestServer, body: J) -> reqwest::Response {
    srv.client
        .post(format!("{}/api/query", srv.base))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// All ids per layer a query returns, following `next` cursors.
async fn ids(srv: &common::TestServer, area: &J) -> BTreeMap<String, BTreeSet<i64>> {
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body = json!({"area": area, "layers": LAYERS, "limit": 5000});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let r = post(srv, body).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let j: J = r.json().await.unwrap();
        let mut next = None;
        for l in LAYERS {
            let e = &j["layers"][l];
            let set = out.entry(l.to_string()).or_default();
            for f in e["features"]["features"].as_array().unwrap() {
                assert!(
                    set.insert(f["id"].as_i64().unwrap()),
                    "duplicate across pages"
                );
            }
            if let Some(n) = e["next"].as_str() {
                next = Some(n.to_string());
            }
            if cursor.is_none() {
                assert!(e["count"].as_u64().unwrap() as usize >= set.len());
            }
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    out
}

/// GeoJSON for a polygon, written with serde_json (exact round trip of
/// every coordinate, which boundary tests depend on).
fn poly_json(polys: &[Polygon]) -> J {
    let ring = |l: &LineString| -> J { J::Array(l.0.iter().map(|c| json!([c.x, c.y])).collect()) };
    let rings = |p: &Polygon| -> J {
        let mut v = vec![ring(p.exterior())];
        v.extend(p.interiors().iter().map(ring));
        J::Array(v)
    };
    if polys.len() == 1 {
        json!({"type": "Polygon", "coordinates": rings(&polys[0])})
    } else {
        json!({"type": "MultiPolygon", "coordinates": J::Array(polys.iter().map(rings).collect())})
    }
}

fn oracle(
    all: &BTreeMap<String, Vec<Feature>>,
    pred: impl Fn(&Geometry) -> bool,
) -> BTreeMap<String, BTreeSet<i64>> {
    all.iter()
        .map(|(l, fs)| {
            (
                l.clone(),
                fs.iter()
                    .filter(|f| pred(&f.geometry))
                    .map(|f| f.id)
                    .collect(),
            )
        })
        .collect()
}

fn star(rng: &mut Rng, c: (f64, f64), r: f64, hole: bool) -> Polygon {
    let n = if rng.chance(0.5) {
        rng.int(5, 14)
    } else {
        rng.int(40, 400)
    } as usize;
    let ring: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            let rr = r * rng.range(0.5, 1.0);
            (c.0 + rr * a.cos(), c.1 + rr * a.sin())
        })
        .collect();
    let mut ext: Vec<geo::Coord> = ring
        .iter()
        .map(|&(x, y)| geo::coord! {x: x, y: y})
        .collect();
    ext.push(ext[0]);
    let holes = if hole {
        let h = r * 0.2;
        vec![LineString::from(vec![
            (c.0 - h, c.1 - h),
            (c.0 - h, c.1 + h),
            (c.0 + h, c.1 + h),
            (c.0 + h, c.1 - h),
            (c.0 - h, c.1 - h),
        ])]
    } else {
        vec![]
    };
    Polygon::new(LineString(ext), holes)
}

#[tokio::test(flavor = "multi_thread")]
async fn query_matches_brute_force() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 11).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let mut all = BTreeMap::new();
    for l in LAYERS {
        all.insert(l.to_string(), store.load_layer(l).await.unwrap());
    }
    let grids = store.load_layer(builtin::GRIDS).await.unwrap();
    let gd = builtin::layer(builtin::GRIDS).unwrap();
    let bbox = geo::BoundingRect::bounding_rect(&grids[0].geometry).unwrap();
    let mut rng = Rng::new(42, "query-test");
    let mut nonempty = 0;

    // Random polygons, some with holes.
    for k in 0..16 {
        let c = (
            rng.range(bbox.min().x, bbox.max().x),
            rng.range(bbox.min().y, bbox.max().y),
        );
        let r = rng.range(0.002, 0.02);
        let p = star(&mut rng, c, r, k % 3 == 0);
        let got = ids(&srv, &poly_json(std::slice::from_ref(&p))).await;
        let want = oracle(&all, |g| match g {
            Geometry::Point(q) => p.intersects(q),
            g => p.intersects(g),
        });
        assert_eq!(got, want, "polygon {k}");
        nonempty += usize::from(want.values().any(|s| !s.is_empty()));
    }
    // Random bboxes.
    for k in 0..6 {
        let (x, y) = (
            rng.range(bbox.min().x, bbox.max().x),
            rng.range(bbox.min().y, bbox.max().y),
        );
        let (w, h) = (rng.range(0.001, 0.02), rng.range(0.001, 0.02));
        let r = Rect::new((x, y), (x + w, y + h));
        let got = ids(&srv, &json!({"bbox": [x, y, x + w, y + h]})).await;
        let poly = r.to_polygon();
        let want = oracle(&all, |g| poly.intersects(g));
        assert_eq!(got, want, "bbox {k}");
    }
    // Random radii around random points (haversine metres for points).
    for k in 0..6 {
        let c = Point::new(
            rng.range(bbox.min().x, bbox.max().x),
            rng.range(bbox.min().y, bbox.max().y),
        );
        let r = rng.range(50.0, 1500.0);
        let got = ids(&srv, &json!({"point": [c.x(), c.y()], "radius_m": r})).await;
        for l in [builtin::ADDRESSES, builtin::CAMERAS, builtin::EVENTS] {
            let want: BTreeSet<i64> = all[l]
                .iter()
                .filter(
                    |f| matches!(f.geometry, Geometry::Point(q) if Haversine.distance(c, q) <= r),
                )
                .map(|f| f.id)
                .collect();
            assert_eq!(got[l], want, "radius {k} {l}");
        }
    }
    // Grids: brute force by geometry, and by the stored grid code prefix.
    for level in ["street", "community", "grid", "micro"] {
        let g = grids
            .iter()
            .find(|g| g.get(&gd, "level").and_then(|v| v.as_str()) == Some(level))
            .unwrap();
        let code = g.get(&gd, "code").unwrap().as_str().unwrap();
        let got = ids(&srv, &json!({"grid": code})).await;
        let want = oracle(&all, |x| g.geometry.intersects(x));
        assert_eq!(got, want, "grid {code}");
        let ad = builtin::layer(builtin::ADDRESSES).unwrap();
        let by_code: BTreeSet<i64> = all[builtin::ADDRESSES]
            .iter()
            .filter(|f| {
                f.get(&ad, "grid")
                    .and_then(|v| v.as_str())
                    .is_some_and(|s| s.starts_with(code))
            })
            .map(|f| f.id)
            .collect();
        assert_eq!(
            got[builtin::ADDRESSES],
            by_code,
            "addresses of {code} by code"
        );
    }
    assert!(nonempty >= 6, "too many empty random areas");

    // A point exactly on the boundary counts: a square whose bottom edge
    // runs through a camera, and a triangle with a camera as a vertex.
    let cam = &all[builtin::CAMERAS][3];
    let Geometry::Point(p) = cam.geometry else {
        panic!()
    };
    let sq = Polygon::new(
        LineString::from(vec![
            (p.x() - 0.001, p.y()),
            (p.x() + 0.001, p.y()),
            (p.x() + 0.001, p.y() + 0.001),
            (p.x() - 0.001, p.y() + 0.001),
            (p.x() - 0.001, p.y()),
        ]),
        vec![],
    );
    let tri = Polygon::new(
        LineString::from(vec![
            (p.x(), p.y()),
            (p.x() + 0.001, p.y() + 0.0005),
            (p.x() + 0.001, p.y() - 0.0005),
            (p.x(), p.y()),
        ]),
        vec![],
    );
    for (which, poly) in [("square", sq), ("triangle", tri)] {
        let area = poly_json(std::slice::from_ref(&poly));
        let got = ids(&srv, &area).await;
        assert!(
            got[builtin::CAMERAS].contains(&cam.id),
            "camera {} ({:?}) on the {which}'s boundary missed: {area} got {:?}",
            cam.id,
            cam.geometry,
            got[builtin::CAMERAS]
        );
    }
    // A hole excludes what it holds.
    let outer = Rect::new(
        (p.x() - 0.002, p.y() - 0.002),
        (p.x() + 0.002, p.y() + 0.002),
    )
    .to_polygon();
    let hole = Rect::new(
        (p.x() - 0.0005, p.y() - 0.0005),
        (p.x() + 0.0005, p.y() + 0.0005),
    )
    .to_polygon();
    let holed = Polygon::new(outer.exterior().clone(), vec![hole.exterior().clone()]);
    let area = poly_json(&[holed, Rect::new((0.0, 0.0), (0.001, 0.001)).to_polygon()]);
    assert!(!ids(&srv, &area).await[builtin::CAMERAS].contains(&cam.id));

    // Groups: by category and by street add up to the count.
    let r = post(&srv, json!({"area": {"bbox": [bbox.min().x, bbox.min().y, bbox.max().x, bbox.max().y]}, "layers": ["events"], "group_by": "category", "limit": 0})).await;
    let j: J = r.json().await.unwrap();
    let e = &j["layers"]["events"];
    let sum: u64 = e["groups"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sum, e["count"].as_u64().unwrap());
    assert!(e["groups"].as_object().unwrap().len() > 3);
    assert!(e["features"]["features"].as_array().unwrap().is_empty());
    let r = post(&srv, json!({"area": {"bbox": [bbox.min().x, bbox.min().y, bbox.max().x, bbox.max().y]}, "layers": ["addresses"], "group_by": "street", "limit": 0})).await;
    let j: J = r.json().await.unwrap();
    for (code, n) in j["layers"]["addresses"]["groups"].as_object().unwrap() {
        assert_eq!(code.len(), 9, "street code {code}");
        let ad = builtin::layer(builtin::ADDRESSES).unwrap();
        let want = all[builtin::ADDRESSES]
            .iter()
            .filter(|f| {
                f.get(&ad, "grid")
                    .and_then(|v| v.as_str())
                    .is_some_and(|s| s.starts_with(code.as_str()))
            })
            .count();
        assert_eq!(n.as_u64().unwrap() as usize, want, "street {code}");
    }

    // Buildings carry the area inside the query area.
    let b = &all[builtin::BUILDINGS][0];
    let bb = geo::BoundingRect::bounding_rect(&b.geometry).unwrap();
    let half = Rect::new((bb.min().x, bb.min().y), (bb.center().x, bb.max().y));
    let r = post(&srv, json!({"area": {"bbox": [half.min().x, half.min().y, half.max().x, half.max().y]}, "layers": ["buildings"]})).await;
    let j: J = r.json().await.unwrap();
    let f = j["layers"]["buildings"]["features"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == b.id)
        .unwrap();
    let part = f["properties"]["intersection_area_m2"].as_f64().unwrap();
    let whole = geo::GeodesicArea::geodesic_area_unsigned(&b.geometry);
    assert!(
        part > 0.05 * whole && part < 0.95 * whole,
        "{part} of {whole}"
    );
    srv.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn nearest_matches_brute_force() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 12).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let mut rng = Rng::new(9, "nearest-test");
    for layer in [builtin::CAMERAS, builtin::BUILDINGS, builtin::RISKS] {
        let fs = store.load_layer(layer).await.unwrap();
        let bbox = geo::BoundingRect::bounding_rect(&geo::GeometryCollection(
            fs.iter().map(|f| f.geometry.clone()).collect(),
        ))
        .unwrap();
        for _ in 0..5 {
            let p = Point::new(
                rng.range(bbox.min().x, bbox.max().x),
                rng.range(bbox.min().y, bbox.max().y),
            );
            let k = rng.int(1, 12) as usize;
            let (s, j) = srv
                .get_json(&format!(
                    "/api/nearest?lon={}&lat={}&layer={layer}&k={k}",
                    p.x(),
                    p.y()
                ))
                .await;
            assert_eq!(s, 200);
            let got: Vec<(i64, f64)> = j["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["id"].as_i64().unwrap(),
                        f["properties"]["distance_m"].as_f64().unwrap(),
                    )
                })
                .collect();
            let mut want: Vec<(i64, f64)> = fs
                .iter()
                .map(|f| {
                    let d = match f.geometry {
                        Geometry::Point(q) => Haversine.distance(p, q),
                        ref g => onemap::query::local_distance_m(p, g),
                    };
                    (f.id, d)
                })
                .collect();
            want.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            want.truncate(k);
            assert_eq!(got.len(), k);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g.1 - w.1).abs() < 0.02,
                    "{layer}: distance {} vs {}",
                    g.1,
                    w.1
                );
            }
            let gi: Vec<i64> = got.iter().map(|g| g.0).collect();
            let wi: Vec<i64> = want.iter().map(|w| w.0).collect();
            assert_eq!(gi, wi, "{layer} nearest to {p:?}");
        }
    }
    srv.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_queries_are_400_naming_the_fault() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 13).await;
    let seq = store.last_seq().await.unwrap();
    let srv = common::serve(store.clone(), common::config()).await;
    let bowtie = json!({"type": "Polygon", "coordinates": [[[112.9, 28.2], [112.91, 28.21], [112.91, 28.2], [112.9, 28.21], [112.9, 28.2]]]});
    let huge: Vec<[f64; 2]> = (0..100_001)
        .map(|i| {
            let a = i as f64 / 100_001.0 * std::f64::consts::TAU;
            [112.9 + 0.01 * a.cos(), 28.2 + 0.01 * a.sin()]
        })
        .collect();
    let mut huge_ring = huge.clone();
    huge_ring.push(huge[0]);
    for (body, expect) in [
        (
            json!({"area": {"type": "Polygon", "coordinates": [[[1, 2]]]}}),
            "area",
        ),
        (json!({"area": bowtie}), "not a valid polygon"),
        (
            json!({"area": {"type": "Polygon", "coordinates": [huge_ring]}}),
            "vertices",
        ),
        (
            json!({"area": {"point": [112.9, 28.2], "radius_m": 0}}),
            "radius_m",
        ),
        (
            json!({"area": {"point": [112.9, 28.2], "radius_m": -5}}),
            "radius_m",
        ),
        (
            json!({"area": {"point": [112.9, 28.2], "radius_m": 1e9}}),
            "radius_m",
        ),
        (json!({"area": {"point": [112.9, 28.2]}}), "radius_m"),
        (
            json!({"area": {"point": [512.9, 28.2], "radius_m": 10}}),
            "out of range",
        ),
        (json!({"area": {"bbox": [113, 28, 112, 29]}}), "west < east"),
        (json!({"area": {"grid": "990101999"}}), "no grid"),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "layers": ["nope"]}),
            "unknown layer",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "limit": 10001}),
            "limit",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "cursor": "x"}),
            "cursor",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "layers": ["cameras"], "group_by": "colour"}),
            "group_by",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "layers": ["cameras"], "filter": "colour = 'red'"}),
            "unknown property \"colour\"",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "layers": ["cameras"], "filter": "status = "}),
            "cql2-text",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "layers": ["cameras"], "filter": "status = 3"}),
            "types differ",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "layers": ["cameras"],
                   "filter": "S_INTERSECTS(geometry, POLYGON((112 28, 113 29, 113 28, 112 29, 112 28)))"}),
            "invalid",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "layers": ["cameras"], "filter": {"op": "=", "args": [{"property": "nope"}, 1]}}),
            "unknown property",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "layers": ["cameras"], "filter": {"risks": "level = 1"}}),
            "does not ask for",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "layers": ["cameras"], "filter": 5}),
            "filter must be",
        ),
        (
            json!({"area": {"bbox": [112, 28, 113, 29]}, "colour": 1}),
            "unknown field",
        ),
        (json!({"layers": ["cameras"]}), "area"),
        (
            json!({"area": {"type": "LineString", "coordinates": [[1, 2], [3, 4]]}}),
            "LineString",
        ),
    ] {
        let r = post(&srv, body.clone()).await;
        let d = common::expect_problem(r, 400).await;
        let detail = d["detail"].as_str().unwrap();
        assert!(
            detail.contains(expect),
            "{body}: {detail:?} does not name {expect:?}"
        );
    }
    for (path, status) in [
        ("/api/nearest?lon=112.9&lat=28.2&layer=nope", 404),
        ("/api/nearest?lon=112.9&lat=28.2&layer=cameras&k=0", 400),
        ("/api/nearest?lon=112.9&lat=28.2&layer=cameras&k=5000", 400),
        ("/api/nearest?lon=912.9&lat=28.2&layer=cameras", 400),
        ("/api/nearest?lat=28.2&layer=cameras", 400),
    ] {
        common::expect_problem(srv.get(path).await, status).await;
    }
    assert_eq!(store.last_seq().await.unwrap(), seq);
    srv.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exports_stream_the_same_rows_as_the_query() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 14).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let grids = store.load_layer(builtin::GRIDS).await.unwrap();
    let bbox = geo::BoundingRect::bounding_rect(&grids[0].geometry).unwrap();
    let area = json!({"bbox": [bbox.min().x, bbox.min().y, bbox.max().x, bbox.max().y]});
    let count = |j: &J, l: &str| j["layers"][l]["count"].as_u64().unwrap() as usize;
    let r = post(
        &srv,
        json!({"area": area, "layers": ["addresses", "cameras"], "limit": 0}),
    )
    .await;
    let q: J = r.json().await.unwrap();
    let n_addr = count(&q, "addresses");
    assert!(n_addr > 2000, "{n_addr}: want more than one chunk");

    // CSV: a BOM, a header, one row per match, Chinese text intact.
    let enc = |v: &J| common::url_escape(&v.to_string());
    let r = srv
        .get(&format!(
            "/api/query.csv?q={}",
            enc(&json!({"area": area, "layers": ["addresses"]}))
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("onemap-addresses.csv")
    );
    let body = r.bytes().await.unwrap();
    assert!(body.starts_with("\u{feff}".as_bytes()), "no BOM");
    let mut rdr = csv::Reader::from_reader(&body[3..]);
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(&header[..3], ["id", "lon", "lat"]);
    assert!(header.contains(&"address".to_string()) && header.contains(&"micro_code".to_string()));
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), n_addr);
    let ai = header.iter().position(|h| h == "address").unwrap();
    assert!(
        rows[0][ai]
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "{}",
        &rows[0][ai]
    );
    let ids: BTreeSet<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(ids.len(), n_addr);

    // GeoJSON: every match of every layer, each with its layer.
    let r = srv
        .get(&format!(
            "/api/query.geojson?q={}",
            enc(&json!({"area": area, "layers": ["addresses", "cameras"]}))
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/geo+json");
    let fc: J = r.json().await.unwrap();
    let feats = fc["features"].as_array().unwrap();
    assert_eq!(feats.len(), n_addr + count(&q, "cameras"));
    assert!(feats.iter().all(|f| {
        f["properties"]["layer"].is_string()
            && f["properties"]["micro_code"]
                .as_str()
                .is_some_and(|c| c.len() == 19)
    }));
    // An empty answer is still a valid document.
    let r = srv
        .get(&format!(
            "/api/query.geojson?q={}",
            enc(&json!({"area": {"bbox": [0, 0, 0.1, 0.1]}}))
        ))
        .await;
    let fc: J = r.json().await.unwrap();
    assert_eq!(fc["features"].as_array().unwrap().len(), 0);

    // Browsers ask for gzip: both downloads arrive whole and compressed
    // (a stream polled after its end once cut them off).
    for (path, layers) in [
        ("/api/query.csv", json!(["addresses"])),
        ("/api/query.geojson", json!(["addresses", "cameras"])),
    ] {
        let r = srv
            .client
            .get(format!(
                "{}{path}?q={}",
                srv.base,
                enc(&json!({"area": area, "layers": layers}))
            ))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-encoding"], "gzip", "{path}");
        let gz = r.bytes().await.unwrap();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut body)
            .unwrap_or_else(|e| panic!("{path}: gzip body cut short: {e}"));
        if path.ends_with("csv") {
            assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), n_addr + 1);
        } else {
            let fc: J = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                fc["features"].as_array().unwrap().len(),
                n_addr + count(&q, "cameras")
            );
        }
    }

    // Bad exports: 400 naming the fault.
    for (path, expect) in [
        ("/api/query.csv".to_string(), "q="),
        ("/api/query.csv?q=notjson".to_string(), "not a valid query"),
        (
            format!("/api/query.csv?q={}", enc(&json!({"area": area}))),
            "one layer",
        ),
        (
            format!(
                "/api/query.geojson?q={}",
                enc(&json!({"area": {"point": [1, 2], "radius_m": -1}}))
            ),
            "radius_m",
        ),
    ] {
        let d = common::expect_problem(srv.get(&path).await, 400).await;
        assert!(
            d["detail"].as_str().unwrap().contains(expect),
            "{path}: {}",
            d["detail"]
        );
    }
    srv.running.stop().await.unwrap();
}

/// CQL2 filters (text and JSON, per layer) give exactly the ids a
/// brute-force predicate written here in Rust gives, through the query, the
/// CSV export and nearest.
#[tokio::test(flavor = "multi_thread")]
async fn filters_match_brute_force() {
    use onemap::model::Value;
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 12).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let grids = store.load_layer(builtin::GRIDS).await.unwrap();
    let bbox = geo::BoundingRect::bounding_rect(&grids[0].geometry).unwrap();
    let whole = json!({"bbox": [bbox.min().x, bbox.min().y, bbox.max().x, bbox.max().y]});
    let (cx, cy) = (bbox.center().x, bbox.center().y);
    let (w, h) = (bbox.width() / 4.0, bbox.height() / 4.0);
    let inner = Polygon::new(
        LineString::from(vec![
            (cx - w, cy - h),
            (cx + w, cy - h),
            (cx + w, cy + h),
            (cx - w, cy + h),
            (cx - w, cy - h),
        ]),
        vec![],
    );
    let inner_wkt = format!(
        "POLYGON(({} {}, {} {}, {} {}, {} {}, {} {}))",
        cx - w,
        cy - h,
        cx + w,
        cy - h,
        cx + w,
        cy + h,
        cx - w,
        cy + h,
        cx - w,
        cy - h
    );
    let text = |f: &Feature, l: &str, p: &str| -> Option<String> {
        let d = builtin::layer(l).unwrap();
        match f.get(&d, p) {
            Some(Value::Text(s)) => Some(s.to_string()),
            _ => None,
        }
    };
    let int = |f: &Feature, l: &str, p: &str| -> Option<i64> {
        let d = builtin::layer(l).unwrap();
        f.get(&d, p).and_then(|v| v.as_i64())
    };
    let events = store.load_layer(builtin::EVENTS).await.unwrap();
    let cameras = store.load_layer(builtin::CAMERAS).await.unwrap();
    let risks = store.load_layer(builtin::RISKS).await.unwrap();
    let addresses = store.load_layer(builtin::ADDRESSES).await.unwrap();
    let category = text(&events[0], "events", "category").unwrap();
    let prefix: String = category.chars().take(1).collect();

    type Pred<'a> = Box<dyn Fn(&Feature) -> bool + 'a>;
    let cases: Vec<(&str, &Vec<Feature>, J, Pred)> = vec![
        (
            "events",
            &events,
            json!(format!("status <> 'closed' AND category = '{category}'")),
            Box::new(|f: &Feature| {
                text(f, "events", "status").as_deref() != Some("closed")
                    && text(f, "events", "category").as_deref() == Some(category.as_str())
            }),
        ),
        (
            "events",
            &events,
            json!("closed_at IS NULL AND created_at >= TIMESTAMP('2026-10-01T00:00:00Z')"),
            Box::new(|f: &Feature| {
                text(f, "events", "closed_at").is_none()
                    && text(f, "events", "created_at").unwrap().as_str() >= "2026-10-01T00:00:00Z"
            }),
        ),
        (
            "events",
            &events,
            json!(format!("category LIKE '{prefix}%' OR status IN ('closed')")),
            Box::new(|f: &Feature| {
                text(f, "events", "category").unwrap().starts_with(&prefix)
                    || text(f, "events", "status").as_deref() == Some("closed")
            }),
        ),
        (
            "events",
            &events,
            json!(format!(
                "S_WITHIN(geometry, {inner_wkt}) AND NOT status = 'closed'"
            )),
            Box::new(|f: &Feature| {
                let Geometry::Point(p) = f.geometry else {
                    return false;
                };
                geo::Contains::contains(&inner, &p)
                    && text(f, "events", "status").as_deref() != Some("closed")
            }),
        ),
        (
            "cameras",
            &cameras,
            json!({"op": "and", "args": [
                {"op": "in", "args": [{"property": "status"}, ["offline", "fault"]]},
                {"op": "s_intersects", "args": [{"property": "geometry"},
                    {"bbox": [cx - w, cy - h, cx + w, cy + h]}]}]}),
            Box::new(|f: &Feature| {
                let s = text(f, "cameras", "status");
                matches!(s.as_deref(), Some("offline" | "fault"))
                    && f.geometry
                        .intersects(&Rect::new((cx - w, cy - h), (cx + w, cy + h)))
            }),
        ),
        (
            "risks",
            &risks,
            json!("level BETWEEN 1 AND 2"),
            Box::new(|f: &Feature| matches!(int(f, "risks", "level"), Some(1..=2))),
        ),
        (
            "addresses",
            &addresses,
            json!("households * 2 > 30 AND id % 2 = 0"),
            Box::new(|f: &Feature| {
                int(f, "addresses", "households").unwrap() * 2 > 30 && f.id % 2 == 0
            }),
        ),
    ];
    for (layer, feats, filter, pred) in &cases {
        let want: BTreeSet<i64> = feats.iter().filter(|f| pred(f)).map(|f| f.id).collect();
        assert!(
            !want.is_empty() && want.len() < feats.len(),
            "{filter}: {} of {}",
            want.len(),
            feats.len()
        );
        // Once for the layer, once as a per-layer filter beside another layer.
        for body in [
            json!({"area": whole, "layers": [layer], "filter": filter, "limit": 10000}),
            json!({"area": whole, "layers": [layer, "buildings"], "filter": {*layer: filter}, "limit": 10000}),
        ] {
            let r = post(&srv, body.clone()).await;
            assert_eq!(r.status(), 200, "{body}: {}", r.text().await.unwrap());
            let j: J = r.json().await.unwrap();
            let got: BTreeSet<i64> = j["layers"][layer]["features"]["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_i64().unwrap())
                .collect();
            assert_eq!(got, want, "{filter}");
            assert_eq!(
                j["layers"][layer]["count"].as_u64().unwrap() as usize,
                want.len()
            );
            if body["layers"].as_array().unwrap().len() == 2 {
                assert!(j["layers"]["buildings"]["count"].as_u64().unwrap() > 0);
            }
        }
        // The CSV export of the same query has the same rows.
        let r = srv
            .get(&format!(
                "/api/query.csv?q={}",
                common::url_escape(
                    &json!({"area": whole, "layers": [layer], "filter": filter}).to_string()
                )
            ))
            .await;
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        let mut rdr = csv::Reader::from_reader(&body[3..]);
        let got: BTreeSet<i64> = rdr
            .records()
            .map(|r| r.unwrap()[0].parse().unwrap())
            .collect();
        assert_eq!(got, want, "CSV of {filter}");
    }

    // Nearest with a filter: the k nearest offline cameras.
    let (lon, lat) = (cx, cy);
    let mut want: Vec<(f64, i64)> = cameras
        .iter()
        .filter(|f| text(f, "cameras", "status").as_deref() == Some("offline"))
        .map(|f| {
            let Geometry::Point(p) = f.geometry else {
                unreachable!()
            };
            (Haversine.distance(p, Point::new(lon, lat)), f.id)
        })
        .collect();
    want.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let r = srv
        .get(&format!(
            "/api/nearest?lon={lon}&lat={lat}&layer=cameras&k=5&filter={}",
            common::url_escape("status = 'offline'")
        ))
        .await;
    assert_eq!(r.status(), 200);
    let j: J = r.json().await.unwrap();
    let got: Vec<i64> = j["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, want.iter().take(5).map(|w| w.1).collect::<Vec<_>>());
    let r = srv
        .get(&format!(
            "/api/nearest?lon={lon}&lat={lat}&layer=cameras&filter={}",
            common::url_escape("colour = 1")
        ))
        .await;
    let d = common::expect_problem(r, 400).await;
    assert!(d["detail"].as_str().unwrap().contains("colour"));
    srv.running.stop().await.unwrap();
}

/// What a department's query page needs beyond the query itself: grid
/// search, a grid's outline, exports of a query too big for a URL, and
/// grouping per layer.
#[tokio::test(flavor = "multi_thread")]
async fn grid_search_outlines_post_exports_and_per_layer_groups() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 15).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let grids = store.load_layer(builtin::GRIDS).await.unwrap();
    let gd = builtin::layer(builtin::GRIDS).unwrap();
    let text = |f: &Feature, k: &str| f.get(&gd, k).and_then(|v| v.as_str()).unwrap().to_string();

    // ── search by name and by code ──
    let micro = grids.iter().find(|f| text(f, "level") == "micro").unwrap();
    let (name, code) = (text(micro, "name"), text(micro, "code"));
    let (s, r) = srv
        .get_json(&format!("/api/grids?q={}", common::url_escape(&name)))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["grids"][0]["name"],
        json!(name),
        "the exact name first: {r}"
    );
    assert!(
        r["grids"][0]["path"].as_str().unwrap().contains(" › "),
        "{r}"
    );
    assert_eq!(r["grids"][0]["bbox"].as_array().map(Vec::len), Some(4));
    // A code prefix: every grid under that community, coarse levels first.
    let prefix = &code[..12];
    let (_, r) = srv
        .get_json(&format!("/api/grids?q={prefix}&limit=200"))
        .await;
    let want: BTreeSet<String> = grids
        .iter()
        .map(|f| text(f, "code"))
        .filter(|c| c.starts_with(prefix) || c == prefix)
        .collect();
    let got: BTreeSet<String> = r["grids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["code"].as_str().unwrap().to_string())
        .collect();
    let by_name: BTreeSet<String> = grids
        .iter()
        .filter(|f| text(f, "name").contains(prefix))
        .map(|f| text(f, "code"))
        .collect();
    assert_eq!(got, &want | &by_name, "{r}");
    assert_eq!(r["grids"][0]["code"], json!(prefix), "the exact code first");
    assert_eq!(r["matched"].as_u64(), Some(got.len() as u64));
    // Filtered by level, and limited.
    let (_, r) = srv
        .get_json(&format!("/api/grids?q={prefix}&level=micro&limit=2"))
        .await;
    assert_eq!(r["count"], 2);
    assert!(r["matched"].as_u64().unwrap() >= 2);
    assert!(
        r["grids"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["level"] == "micro")
    );
    let (_, r) = srv
        .get_json("/api/grids?q=%E6%B2%A1%E6%9C%89%E8%BF%99%E4%B8%AA")
        .await;
    assert_eq!(r["count"], 0, "no such grid: an empty list");
    for bad in [
        "/api/grids?q=",
        "/api/grids?q=1&limit=0",
        "/api/grids?q=1&limit=201",
        &format!("/api/grids?q=1&parent={code}"),
        "/api/grids?level=micro&limit=5",
        "/api/grids?q=1&colour=red",
    ] {
        common::expect_problem(srv.get(bad).await, 400).await;
    }

    // ── a grid's outline, when asked ──
    let (_, g) = srv.get_json(&format!("/api/grids/{code}")).await;
    assert!(g.get("geometry").is_none(), "not by default");
    let (_, g) = srv
        .get_json(&format!("/api/grids/{code}?geometry=true"))
        .await;
    let geom: geo::Geometry = geojson::Geometry::from_json_value(g["geometry"].clone())
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(geom, micro.geometry, "the stored outline, exactly");
    common::expect_problem(
        srv.get(&format!("/api/grids/{code}?geometry=maybe")).await,
        400,
    )
    .await;

    // ── exports by POST: the same bytes as by GET, and big areas fit ──
    let q = json!({"area": {"grid": code}, "layers": ["addresses"]});
    for path in ["/api/query.csv", "/api/query.geojson"] {
        let by_get = srv
            .get(&format!("{path}?q={}", common::url_escape(&q.to_string())))
            .await;
        assert_eq!(by_get.status(), 200);
        let by_get = by_get.bytes().await.unwrap();
        let r = srv
            .client
            .post(format!("{}{path}", srv.base))
            .json(&q)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .contains("attachment")
        );
        assert_eq!(
            r.bytes().await.unwrap(),
            by_get,
            "{path}: POST and GET agree"
        );
        let r = srv
            .client
            .post(format!("{}{path}", srv.base))
            .header("content-type", "application/json")
            .body("{\"area\": ")
            .send()
            .await
            .unwrap();
        common::expect_problem(r, 400).await;
    }
    // A circle drawn as a 20,000-vertex polygon: about 800 KB of JSON.
    let c = geo::BoundingRect::bounding_rect(&micro.geometry)
        .unwrap()
        .center();
    let ring: Vec<[f64; 2]> = (0..=20_000)
        .map(|k| {
            let a = std::f64::consts::TAU * f64::from(k % 20_000) / 20_000.0;
            [c.x + 0.004 * a.cos(), c.y + 0.003 * a.sin()]
        })
        .collect();
    let big = json!({"area": {"type": "Polygon", "coordinates": [ring]}, "layers": ["addresses"]});
    let counted: J = post(
        &srv,
        json!({"area": big["area"], "layers": ["addresses"], "limit": 0}),
    )
    .await
    .json()
    .await
    .unwrap();
    let r = srv
        .client
        .post(format!("{}/api/query.csv", srv.base))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let n = counted["layers"]["addresses"]["count"].as_u64().unwrap() as usize;
    assert!(n > 0);
    assert_eq!(
        body.lines().count(),
        n + 1,
        "a header and one row per match"
    );

    // ── group_by per layer ──
    let body = json!({"area": {"grid": grids[0].get(&gd, "code").unwrap().as_str().unwrap()},
        "layers": ["risks", "cameras", "addresses"], "limit": 0,
        "group_by": {"risks": "category", "cameras": "status"}});
    let r: J = post(&srv, body.clone()).await.json().await.unwrap();
    let risks = store.load_layer(builtin::RISKS).await.unwrap();
    let rd = builtin::layer(builtin::RISKS).unwrap();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for f in &risks {
        *want
            .entry(
                f.get(&rd, "category")
                    .and_then(|v| v.as_str())
                    .unwrap_or("null")
                    .to_string(),
            )
            .or_default() += 1;
    }
    let got: BTreeMap<String, u64> =
        serde_json::from_value(r["layers"]["risks"]["groups"].clone()).unwrap();
    let in_area = r["layers"]["risks"]["count"].as_u64().unwrap();
    assert_eq!(got.values().sum::<u64>(), in_area);
    assert!(got.keys().all(|k| want.contains_key(k)), "{got:?}");
    assert!(r["layers"]["cameras"]["groups"].is_object(), "{r}");
    assert!(
        r["layers"]["addresses"].get("groups").is_none(),
        "not named: not grouped"
    );
    for bad in [
        json!({"risks": "category", "water": "name"}),
        json!({"cameras": "category"}),
        json!(["category"]),
    ] {
        let mut b = body.clone();
        b["group_by"] = bad;
        common::expect_problem(post(&srv, b).await, 400).await;
    }
}
