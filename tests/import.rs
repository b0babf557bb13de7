//! `onemap import`: good files land whole, bad files land not at all, and the
//! declared CRS is honoured.

mod common;

use geo::{Distance, Geometry, Haversine, Point};
use onemap::import::{Crs, ImportError, import_file};
use onemap::model::{PropType, Value, builtin};
use onemap::store::Store;
use onemap::store::gpkg::GpkgStore;
use serde_json::json;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn fc(features: Vec<serde_json::Value>) -> String {
    json!({"type": "FeatureCollection", "features": features}).to_string()
}

fn point(lon: f64, lat: f64, props: serde_json::Value) -> serde_json::Value {
    json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props})
}

/// Everything observable about a store's contents.
async fn snapshot(store: &dyn Store) -> (Vec<String>, Vec<usize>, i64) {
    let layers = store.layers().await.unwrap();
    let mut counts = Vec::new();
    for l in &layers {
        counts.push(store.load_layer(&l.name).await.unwrap().len());
    }
    (
        layers.into_iter().map(|l| l.name).collect(),
        counts,
        store.last_seq().await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn geojson_into_a_new_layer_infers_the_schema() {
    let dir = common::tempdir();
    let store = GpkgStore::open(&dir.path().join("s.gpkg")).await.unwrap();
    let square = json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[112.9, 28.2], [112.91, 28.2], [112.91, 28.21], [112.9, 28.21], [112.9, 28.2]]]},
        "properties": {"名称": "东湖公园", "面积": 12.5, "开放": true, "等级": 2}});
    let square2 = json!({"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[[[113.0, 28.2], [113.01, 28.2], [113.01, 28.21], [113.0, 28.2]]]]},
        "properties": {"名称": "西湖公园", "面积": 3, "开放": null, "等级": 1}});
    let f = write(dir.path(), "parks.geojson", &fc(vec![square, square2]));
    let r = import_file(&store, "parks", Crs::Cgcs2000, &f, "tester")
        .await
        .unwrap();
    assert!(r.created);
    assert_eq!(r.count, 2);
    let def = store
        .layers()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.name == "parks")
        .unwrap();
    assert_eq!(def.geometry, onemap::model::GeomKind::MultiPolygon);
    assert_eq!(def.declared_crs, "cgcs2000");
    let ty = |n: &str| def.properties.iter().find(|p| p.name == n).unwrap().ty;
    assert_eq!(ty("名称"), PropType::Text);
    assert_eq!(ty("面积"), PropType::Float);
    assert_eq!(ty("开放"), PropType::Bool);
    assert_eq!(ty("等级"), PropType::Int);
    let fs = store.load_layer("parks").await.unwrap();
    assert_eq!(fs[1].get(&def, "名称"), Some(&Value::text("西湖公园")));
    assert_eq!(fs[1].get(&def, "面积"), Some(&Value::Float(3.0)));
    // Logged with the author and the file.
    let log = store.changes_since(0, 100).await.unwrap();
    assert!(
        log.iter()
            .any(|c| c.author == "tester" && c.reason.contains("parks.geojson"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_into_an_existing_layer_gets_grid_codes() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 1).await;
    // A point inside a known micro-grid: the centre of an address of it.
    let ad = builtin::layer(builtin::ADDRESSES).unwrap();
    let addr = &store.load_layer(builtin::ADDRESSES).await.unwrap()[10];
    let Geometry::Point(p) = addr.geometry else {
        panic!()
    };
    let grid = addr.get(&ad, "grid").unwrap().as_str().unwrap().to_string();
    let before = store.load_layer(builtin::CAMERAS).await.unwrap().len();
    let csv = format!(
        "\u{feff}name,kind,status,经度,纬度,fov_deg,installed_on\n\
         东湖路口球机,dome,online,{},{},360,2025-03-01\n\
         西湖路口枪机,bullet,offline,{},{},,\n",
        p.x(),
        p.y(),
        p.x() + 0.0001,
        p.y()
    );
    let f = write(dir.path(), "cams.csv", &csv);
    let r = import_file(store.as_ref(), "cameras", Crs::Wgs84, &f, "tester")
        .await
        .unwrap();
    assert!(!r.created);
    assert_eq!(r.count, 2);
    let cd = builtin::layer(builtin::CAMERAS).unwrap();
    let cams = store.load_layer(builtin::CAMERAS).await.unwrap();
    assert_eq!(cams.len(), before + 2);
    let new = cams
        .iter()
        .find(|c| c.get(&cd, "name") == Some(&Value::text("东湖路口球机")))
        .unwrap();
    assert_eq!(new.get(&cd, "grid").unwrap().as_str(), Some(grid.as_str()));
    assert_eq!(new.get(&cd, "fov_deg"), Some(&Value::Float(360.0)));
    assert_eq!(
        new.get(&cd, "installed_on"),
        Some(&Value::text("2025-03-01"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gcj02_and_bd09_land_within_a_metre_of_the_truth() {
    let dir = common::tempdir();
    let store = GpkgStore::open(&dir.path().join("s.gpkg")).await.unwrap();
    let truth: Vec<(f64, f64)> = (0..50)
        .map(|i| (112.85 + 0.004 * i as f64, 28.12 + 0.003 * i as f64))
        .collect();
    for (crs, fwd) in [
        (
            Crs::Gcj02,
            coordtransform::wgs84_to_gcj02 as fn(f64, f64) -> (f64, f64),
        ),
        (Crs::Bd09, coordtransform::wgs84_to_bd09),
    ] {
        let feats = truth
            .iter()
            .enumerate()
            .map(|(i, (x, y))| {
                let (a, b) = fwd(*x, *y);
                point(a, b, json!({"n": i}))
            })
            .collect();
        let layer = format!("pts_{}", crs.name());
        let f = write(dir.path(), &format!("{layer}.geojson"), &fc(feats));
        import_file(&store, &layer, crs, &f, "t").await.unwrap();
        let fs = store.load_layer(&layer).await.unwrap();
        let mut worst: f64 = 0.0;
        for (feat, (x, y)) in fs.iter().zip(&truth) {
            let Geometry::Point(p) = feat.geometry else {
                panic!()
            };
            let d = Haversine.distance(p, Point::new(*x, *y));
            worst = worst.max(d);
        }
        assert!(worst < 1.0, "{}: worst error {worst} m", crs.name());
        let def = store
            .layers()
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.name == layer)
            .unwrap();
        assert_eq!(def.declared_crs, crs.name());
    }
}

/// Each bad file is refused with the feature's number, and the store is
/// exactly as it was.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_reported_by_feature_and_nothing_is_kept() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 1).await;
    let before = snapshot(store.as_ref()).await;
    let good = point(112.95, 28.2, json!({"name": "ok"}));
    let bowtie = json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[112.9, 28.2], [112.91, 28.21], [112.91, 28.2], [112.9, 28.21], [112.9, 28.2]]]}, "properties": {}});
    let open_ring = json!({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[112.9, 28.2], [112.91, 28.2], [112.91, 28.21], [112.9, 28.21]]]}, "properties": {}});
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "newlayer",
            "a.geojson",
            "{\"type\": \"FeatureCollection\", \"features\": [".into(),
            "malformed JSON",
        ),
        (
            "zones",
            "b.geojson",
            fc(vec![good.clone(), bowtie]),
            "feature 2: invalid geometry",
        ),
        (
            "zones",
            "c.geojson",
            fc(vec![good.clone(), good.clone(), open_ring]),
            "feature 3: exterior ring is not closed",
        ),
        (
            "newpts",
            "d.geojson",
            fc(vec![good.clone(), point(200.0, 28.0, json!({}))]),
            "feature 2: coordinate (200, 28) is out of range",
        ),
        (
            "newpts",
            "e.geojson",
            fc(vec![point(112.9, -91.0, json!({}))]),
            "feature 1: coordinate",
        ),
        (
            "cameras",
            "f.geojson",
            fc(vec![
                point(112.9, 28.2, json!({"name": "x"})),
                point(112.9, 28.2, json!({"fov_deg": "wide"})),
            ]),
            "feature 2: property \"fov_deg\": expected float",
        ),
        (
            "cameras",
            "g.geojson",
            fc(vec![point(112.9, 28.2, json!({"colour": "red"}))]),
            "feature 1: property \"colour\" is not in layer cameras",
        ),
        (
            "cameras",
            "h.geojson",
            fc(vec![
                json!({"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[112.9, 28.2], [112.91, 28.2]]}, "properties": {}}),
            ]),
            "feature 1: geometry is LINESTRING but the layer holds POINT",
        ),
        (
            "newpts",
            "i.geojson",
            fc(vec![
                json!({"type": "Feature", "geometry": null, "properties": {}}),
            ]),
            "feature 1: feature has no geometry",
        ),
        (
            "newpts",
            "j.csv",
            "name,lon,lat\na,112.9,28.2\nb,abc,28.2\n".into(),
            "feature 2 (line 3): longitude \"abc\" is not a number",
        ),
        (
            "newpts",
            "k.csv",
            "name,x1,y1\na,112.9,28.2\n".into(),
            "no longitude column",
        ),
        ("newpts", "l.txt", "whatever".into(), "unknown file type"),
        (
            "newpts",
            "m.geojson",
            json!({"type": "Point", "coordinates": [1, 2]}).to_string(),
            "expected a GeoJSON FeatureCollection",
        ),
        (
            "Bad-Name",
            "n.geojson",
            fc(vec![good.clone()]),
            "invalid layer name",
        ),
        (
            "newpts",
            "o.geojson",
            fc(vec![point(112.9, 28.2, json!({"nested": {"a": 1}}))]),
            "nested",
        ),
    ];
    for (layer, name, body, expect) in cases {
        let f = write(dir.path(), name, &body);
        let err = import_file(store.as_ref(), layer, Crs::Wgs84, &f, "t")
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(expect),
            "{name}: expected {expect:?} in:\n{msg}"
        );
        assert!(
            matches!(err, ImportError::File(_) | ImportError::Features { .. }),
            "{name}: {err:?}"
        );
        assert_eq!(
            snapshot(store.as_ref()).await,
            before,
            "{name} changed the store"
        );
    }
}

#[test]
fn the_cli_reports_problems_and_exits_non_zero() {
    let dir = common::tempdir();
    let store = dir.path().join("s.gpkg");
    let bin = env!("CARGO_BIN_EXE_onemap");
    let f = write(
        dir.path(),
        "p.geojson",
        &fc(vec![
            point(112.9, 28.2, json!({"name": "a"})),
            point(112.9, 95.0, json!({"name": "b"})),
        ]),
    );
    let out = std::process::Command::new(bin)
        .args(["import", "--store"])
        .arg(&store)
        .args(["--layer", "pts", "--crs", "gcj02"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("feature 2: coordinate"), "{err}");

    let out = std::process::Command::new(bin)
        .args(["import", "--store"])
        .arg(&store)
        .args(["--layer", "pts", "--crs", "epsg:3857"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown CRS"));

    let ok = write(
        dir.path(),
        "ok.geojson",
        &fc(vec![point(112.9, 28.2, json!({"name": "a"}))]),
    );
    let out = std::process::Command::new(bin)
        .args(["import", "--store"])
        .arg(&store)
        .args(["--layer", "pts"])
        .arg(&ok)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("imported 1 feature(s) into new layer pts")
    );
}
