//! The demo district, checked from the store by computations independent of
//! the generator: geo's boolean operations for the coverage, point-in-polygon
//! for the households, GDAL for interoperability.

mod common;

use geo::{
    Area, BooleanOps, BoundingRect, Contains, Coord, Distance, Euclidean, Geometry, MultiPolygon,
    Point,
};
use onemap::model::{Feature, LayerDef, builtin};
use onemap::store::Store;
use rstar::{AABB, RTree, primitives::GeomWithData, primitives::Rectangle};
use std::collections::{HashMap, HashSet};

struct Grid {
    code: String,
    level: String,
    parent: Option<String>,
    kind: String,
    households: i64,
    geom: MultiPolygon,
}

fn text(f: &Feature, d: &LayerDef, k: &str) -> Option<String> {
    f.get(d, k).and_then(|v| v.as_str()).map(str::to_string)
}

async fn grids(store: &dyn Store) -> Vec<Grid> {
    let d = builtin::layer(builtin::GRIDS).unwrap();
    store
        .load_layer(builtin::GRIDS)
        .await
        .unwrap()
        .into_iter()
        .map(|f| Grid {
            code: text(&f, &d, "code").unwrap(),
            level: text(&f, &d, "level").unwrap(),
            parent: text(&f, &d, "parent"),
            kind: text(&f, &d, "kind").unwrap(),
            households: f.get(&d, "households").and_then(|v| v.as_i64()).unwrap(),
            geom: match f.geometry {
                Geometry::MultiPolygon(m) => m,
                Geometry::Polygon(p) => MultiPolygon(vec![p]),
                g => panic!("grid geometry {g:?}"),
            },
        })
        .collect()
}

fn vertices(m: &MultiPolygon) -> HashSet<(u64, u64)> {
    m.0.iter()
        .flat_map(|p| {
            p.exterior()
                .0
                .iter()
                .chain(p.interiors().iter().flat_map(|r| r.0.iter()))
        })
        .map(|c| (c.x.to_bits(), c.y.to_bits()))
        .collect()
}

fn on_boundary(m: &MultiPolygon, c: Coord) -> bool {
    let p = Point(c);
    m.0.iter().any(|poly| {
        std::iter::once(poly.exterior())
            .chain(poly.interiors())
            .any(|ring| Euclidean.distance(&p, ring) < 1e-10)
    })
}

fn envelopes_meet(a: &MultiPolygon, b: &MultiPolygon) -> bool {
    let (ra, rb) = (a.bounding_rect().unwrap(), b.bounding_rect().unwrap());
    ra.min().x <= rb.max().x
        && rb.min().x <= ra.max().x
        && ra.min().y <= rb.max().y
        && rb.min().y <= ra.max().y
}

#[tokio::test(flavor = "multi_thread")]
async fn district_grids_tile_their_parents_and_households_add_up() {
    let dir = common::tempdir();
    let t0 = std::time::Instant::now();
    let (_, store) = common::demo_store(dir.path(), "district", 1).await;
    eprintln!("district demo generated and written in {:?}", t0.elapsed());
    let grids = grids(store.as_ref()).await;

    // Scale of one real district (DESIGN §4).
    let count = |lvl: &str| {
        grids
            .iter()
            .filter(|g| g.level == lvl && g.kind == "comprehensive")
            .count()
    };
    assert_eq!(count("district"), 1);
    assert!(
        (6..=10).contains(&count("street")),
        "streets {}",
        count("street")
    );
    assert!((60..=100).contains(&count("community")));
    assert!((1000..=1200).contains(&count("grid")));
    assert!((10_000..=12_000).contains(&count("micro")));
    assert!(grids.iter().any(|g| g.kind == "dedicated"));

    let by_code: HashMap<&str, &Grid> = grids.iter().map(|g| (g.code.as_str(), g)).collect();
    let mut children: HashMap<&str, Vec<&Grid>> = HashMap::new();
    for g in grids.iter().filter(|g| g.kind == "comprehensive") {
        if let Some(p) = &g.parent {
            assert!(
                by_code.contains_key(p.as_str()),
                "{} has unknown parent {p}",
                g.code
            );
            assert!(
                g.code.starts_with(p.as_str()),
                "code {} not under {p}",
                g.code
            );
            children.entry(p.as_str()).or_default().push(g);
        }
    }

    // Exact cover: children inside the parent, pairwise disjoint, and their
    // areas add up to the parent's. Together: no gap, no overlap.
    let mut pairs_checked = 0;
    for (pcode, kids) in &children {
        let parent = by_code[pcode];
        let parea = parent.geom.unsigned_area();
        let sum: f64 = kids.iter().map(|k| k.geom.unsigned_area()).sum();
        assert!(
            ((sum - parea) / parea).abs() < 1e-9,
            "children of {pcode} cover {sum} of {parea}"
        );
        for k in kids {
            let outside = k.geom.difference(&parent.geom).unsigned_area();
            assert!(
                outside < 1e-13,
                "{} sticks out of {pcode} by {outside}",
                k.code
            );
        }
        for (i, a) in kids.iter().enumerate() {
            for b in &kids[i + 1..] {
                if !envelopes_meet(&a.geom, &b.geom) {
                    continue;
                }
                pairs_checked += 1;
                let overlap = a.geom.intersection(&b.geom).unsigned_area();
                assert!(
                    overlap < 1e-13,
                    "{} overlaps {} by {overlap}",
                    a.code,
                    b.code
                );
            }
        }
        // Shared vertices: a vertex of one child on a sibling's (or the
        // parent's) boundary is a vertex of that sibling (or parent) too,
        // so no T-junction opens a sliver when either is edited or simplified.
        let pv = vertices(&parent.geom);
        for a in kids {
            let av = vertices(&a.geom);
            for c in a.geom.0.iter().flat_map(|p| p.exterior().0.iter()) {
                if on_boundary(&parent.geom, *c) {
                    assert!(
                        pv.contains(&(c.x.to_bits(), c.y.to_bits())),
                        "T-junction of {} on {pcode}",
                        a.code
                    );
                }
            }
            for b in kids {
                if a.code == b.code || !envelopes_meet(&a.geom, &b.geom) {
                    continue;
                }
                for c in b.geom.0.iter().flat_map(|p| p.exterior().0.iter()) {
                    if on_boundary(&a.geom, *c) {
                        assert!(
                            av.contains(&(c.x.to_bits(), c.y.to_bits())),
                            "vertex of {} lies on {}'s edge without being its vertex",
                            b.code,
                            a.code
                        );
                    }
                }
            }
        }
    }
    assert!(
        pairs_checked > 10_000,
        "only {pairs_checked} sibling pairs checked"
    );

    // Households: every address point lies strictly inside exactly one
    // micro-grid; each micro-grid's households is the sum over its points
    // and lies in 30..=100; every level's is the sum of its children's.
    let micros: Vec<&Grid> = grids.iter().filter(|g| g.level == "micro").collect();
    let tree = RTree::bulk_load(
        micros
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let r = g.geom.bounding_rect().unwrap();
                GeomWithData::new(
                    Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
                    i,
                )
            })
            .collect(),
    );
    let ad = builtin::layer(builtin::ADDRESSES).unwrap();
    let addresses = store.load_layer(builtin::ADDRESSES).await.unwrap();
    assert!((90_000..=110_000).contains(&addresses.len()));
    let mut sums = vec![0i64; micros.len()];
    for a in &addresses {
        let Geometry::Point(p) = a.geometry else {
            panic!("address geometry")
        };
        let inside: Vec<usize> = tree
            .locate_in_envelope_intersecting(&AABB::from_point([p.x(), p.y()]))
            .map(|e| e.data)
            .filter(|&i| micros[i].geom.contains(&p))
            .collect();
        assert_eq!(
            inside.len(),
            1,
            "address {} is in {} micro-grids",
            a.id,
            inside.len()
        );
        sums[inside[0]] += a.get(&ad, "households").and_then(|v| v.as_i64()).unwrap();
        assert_eq!(
            text(a, &ad, "grid").as_deref(),
            Some(micros[inside[0]].code.as_str())
        );
    }
    for (m, s) in micros.iter().zip(&sums) {
        assert_eq!(m.households, *s, "households of {}", m.code);
        assert!((30..=100).contains(s), "{} holds {s} households", m.code);
    }
    let total: i64 = sums.iter().sum();
    assert!((600_000..=800_000).contains(&total), "{total} households");
    for (pcode, kids) in &children {
        let s: i64 = kids.iter().map(|k| k.households).sum();
        assert_eq!(by_code[pcode].households, s, "households of {pcode}");
    }
}

/// A digest of every layer as read back from a store.
async fn digest(store: &dyn Store) -> Vec<(String, usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    for d in store.layers().await.unwrap() {
        let fs = store.load_layer(&d.name).await.unwrap();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for f in &fs {
            f.id.hash(&mut h);
            onemap::store::wkb::to_wkb(&f.geometry).hash(&mut h);
            for v in &f.properties {
                v.to_json().to_string().hash(&mut h);
            }
        }
        out.push((d.name, fs.len(), h.finish()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn same_seed_same_data_other_seed_other_data() {
    let (d1, d2, d3) = (common::tempdir(), common::tempdir(), common::tempdir());
    let (_, a) = common::demo_store(d1.path(), "small", 7).await;
    let (_, b) = common::demo_store(d2.path(), "small", 7).await;
    let (_, c) = common::demo_store(d3.path(), "small", 8).await;
    let (da, db, dc) = (
        digest(a.as_ref()).await,
        digest(b.as_ref()).await,
        digest(c.as_ref()).await,
    );
    assert_eq!(da.len(), 8);
    assert_eq!(da, db);
    assert_ne!(da, dc);
    for name in builtin::GOVERNANCE {
        assert!(
            da.iter().any(|(n, c, _)| n == name && *c > 0),
            "layer {name} empty"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn realistic_attributes() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "district", 3).await;
    let share = |fs: &[Feature], d: &LayerDef, k: &str, v: &str| {
        fs.iter()
            .filter(|f| text(f, d, k).as_deref() == Some(v))
            .count() as f64
            / fs.len() as f64
    };
    let cd = builtin::layer(builtin::CAMERAS).unwrap();
    let cams = store.load_layer(builtin::CAMERAS).await.unwrap();
    assert_eq!(cams.len(), 3000);
    let online = share(&cams, &cd, "status", "online");
    assert!((0.8..0.95).contains(&online), "online share {online}");
    assert!(share(&cams, &cd, "status", "fault") > 0.0);

    let rd = builtin::layer(builtin::RISKS).unwrap();
    let risks = store.load_layer(builtin::RISKS).await.unwrap();
    let mut levels = [0usize; 4];
    for r in &risks {
        levels[(r.get(&rd, "level").and_then(|v| v.as_i64()).unwrap() - 1) as usize] += 1;
    }
    // Four-colour grading: fewest red, most blue.
    assert!(
        levels[0] > 0 && levels[0] < levels[1] && levels[1] < levels[2] && levels[2] < levels[3]
    );
    assert!(
        risks
            .iter()
            .any(|r| matches!(r.geometry, Geometry::Polygon(_)))
    );

    let bd = builtin::layer(builtin::BUILDINGS).unwrap();
    let blds = store.load_layer(builtin::BUILDINGS).await.unwrap();
    let taxes: Vec<f64> = blds
        .iter()
        .filter_map(|b| b.get(&bd, "tax_10k_cny").and_then(|v| v.as_f64()))
        .collect();
    let max = taxes.iter().cloned().fold(0.0, f64::max);
    let min = taxes.iter().cloned().fold(f64::MAX, f64::min);
    assert!(max / min > 50.0, "tax spread {min}..{max}");
    assert!(blds.iter().any(|b| !b.get(&bd, "alert").unwrap().is_null()));

    let ed = builtin::layer(builtin::EVENTS).unwrap();
    let events = store.load_layer(builtin::EVENTS).await.unwrap();
    assert_eq!(events.len(), 60_000);
    for s in [
        "hotline_12345",
        "police_110",
        "grid_report",
        "camera_alarm",
        "resident_app",
        "petition",
    ] {
        assert!(share(&events, &ed, "source", s) > 0.0, "no {s} events");
    }
    for s in ["new", "dispatched", "processing", "closed"] {
        assert!(share(&events, &ed, "status", s) > 0.0, "no {s} events");
    }
    // Overdue is derived (open and past the deadline), never stored.
    assert_eq!(share(&events, &ed, "status", "overdue"), 0.0);
    let reference = onemap::model::value::parse_instant("2026-11-15T00:00:00Z").unwrap();
    assert!(
        events
            .iter()
            .any(|e| onemap::index::event_overdue(&ed, e, reference)),
        "no overdue work orders at the reference time"
    );
    assert!(share(&events, &ed, "status", "closed") > 0.8);
    let times: Vec<String> = events
        .iter()
        .map(|e| text(e, &ed, "created_at").unwrap())
        .collect();
    let (first, last) = (times.iter().min().unwrap(), times.iter().max().unwrap());
    let span = chrono::DateTime::parse_from_rfc3339(last).unwrap()
        - chrono::DateTime::parse_from_rfc3339(first).unwrap();
    assert!(
        span.num_days() >= 175 && span.num_days() <= 184,
        "events span {} days",
        span.num_days()
    );
    // Closed ones close after they were created.
    for e in &events {
        if let Some(c) = text(e, &ed, "closed_at") {
            assert!(c > text(e, &ed, "created_at").unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gdal_reads_the_demo_store() {
    let Some(ogrinfo) = common::ogrinfo() else {
        return;
    };
    let dir = common::tempdir();
    let (path, store) = common::demo_store(dir.path(), "small", 1).await;
    store.close().await;
    let want = [
        (builtin::GRIDS, "Multi Polygon"),
        (builtin::ADDRESSES, "Point"),
        (builtin::CAMERAS, "Point"),
        (builtin::RISKS, "Unknown (any)"),
        (builtin::BUILDINGS, "Multi Polygon"),
        (builtin::EVENTS, "Point"),
        (builtin::ROADS, "Line String"),
        (builtin::WATER, "Multi Polygon"),
    ];
    let reopened = onemap::store::gpkg::GpkgStore::open(&path).await.unwrap();
    for (layer, geom) in want {
        let expected = reopened.load_layer(layer).await.unwrap().len();
        // GDAL 3.6 (Debian 12) has no `ogrinfo -json`: read its summary.
        let out = std::process::Command::new(ogrinfo)
            .args(["-so"])
            .arg(&path)
            .arg(layer)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ogrinfo failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("ERROR"), "ogrinfo complained: {stderr}");
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {k} in ogrinfo output:\n{text}"))
        };
        assert!(text.contains("using driver `GPKG' successful"), "{text}");
        assert_eq!(field("Layer name:"), layer);
        assert_eq!(
            field("Feature Count:"),
            expected.to_string(),
            "count of {layer}"
        );
        assert_eq!(field("Geometry:"), geom, "geometry type of {layer}");
        assert!(
            text.contains("ID[\"EPSG\",4326]"),
            "SRS of {layer}:\n{text}"
        );
    }
    // GDAL's own validity check of the GeoPackage structure.
    let out = std::process::Command::new(ogrinfo)
        .args(["-so", "-oo", "LIST_ALL_TABLES=NO"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        !stderr.contains("Warning") && !stderr.contains("ERROR"),
        "{stderr}"
    );
}
