//! The store contract, written against `dyn Store` so that every backend runs
//! the same suite (the PostGIS backend adds its own instantiation).

mod common;

use geo::{Geometry, point, polygon};
use onemap::model::{GeomKind, LayerDef, PropDef, PropType, Value};
use onemap::store::{ChangeSet, Op, Store, StoreError};

fn poi_layer() -> LayerDef {
    LayerDef {
        name: "poi".into(),
        title: "兴趣点 POI".into(),
        geometry: GeomKind::Point,
        properties: vec![
            PropDef::new("name", PropType::Text),
            PropDef::new("floors", PropType::Int),
            PropDef::new("rate", PropType::Float),
            PropDef::new("open", PropType::Bool),
            PropDef::new("since", PropType::DateTime),
            PropDef::new("day", PropType::Date),
        ],
        minzoom: 10,
        maxzoom: 22,
        declared_crs: "wgs84".into(),
    }
}

fn poi(name: &str, x: f64) -> Op {
    Op::Insert {
        layer: "poi".into(),
        id: None,
        geometry: Geometry::Point(point!(x: x, y: 28.2)),
        properties: vec![
            Value::text(name),
            Value::Int(3),
            Value::Float(0.5),
            Value::Bool(true),
            Value::text("2026-05-01T00:30:00Z"),
            Value::text("2026-05-01"),
        ],
    }
}

fn cs(ops: Vec<Op>) -> ChangeSet {
    let mut c = ChangeSet::new("测试员 tester", "contract test");
    c.ops = ops;
    c
}

/// Everything the contract promises, in one run over a fresh store.
async fn contract(store: &dyn Store) {
    store.create_layer(&poi_layer()).await.unwrap();
    assert!(matches!(
        store.create_layer(&poi_layer()).await,
        Err(StoreError::LayerExists(_))
    ));
    let seq0 = store.last_seq().await.unwrap();

    // Inserts round-trip every type, Chinese text and NULL.
    let mut null_op = poi("空值", 113.0);
    if let Op::Insert { properties, .. } = &mut null_op {
        for v in properties.iter_mut().skip(1) {
            *v = Value::Null;
        }
    }
    let a = store
        .apply(&cs(vec![poi("东湖小学", 112.9), null_op]))
        .await
        .unwrap();
    assert_eq!(a.ids.len(), 2);
    assert_eq!(a.versions, vec![1, 1]);
    assert!(a.first_seq > seq0 && a.last_seq >= a.first_seq);
    // Every row of one change set names the set by its first seq.
    let rows = store.changes_since(seq0, 100).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.txn == a.first_seq && r.author == "测试员 tester")
    );
    let fs = store.load_layer("poi").await.unwrap();
    assert_eq!(fs.len(), 2);
    assert_eq!(fs[0].properties[0], Value::text("东湖小学"));
    assert_eq!(fs[0].properties[3], Value::Bool(true));
    assert_eq!(fs[0].properties[4], Value::text("2026-05-01T00:30:00Z"));
    assert!(fs[1].properties[1..].iter().all(Value::is_null));
    assert_eq!(fs[0].geometry, Geometry::Point(point!(x: 112.9, y: 28.2)));
    let id = a.ids[0];

    // A change set with one bad operation changes nothing.
    let seq1 = store.last_seq().await.unwrap();
    let mut bad = poi("坏", 1.0);
    if let Op::Insert { properties, .. } = &mut bad {
        properties[1] = Value::text("three");
    }
    let err = store
        .apply(&cs(vec![poi("好", 112.8), bad]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { index: 1, .. }), "{err}");
    let wrong_geom = Op::Insert {
        layer: "poi".into(),
        id: None,
        geometry: Geometry::Polygon(polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.)]),
        properties: vec![Value::Null; 6],
    };
    assert!(
        store
            .apply(&cs(vec![poi("好", 112.8), wrong_geom]))
            .await
            .is_err()
    );
    // An update of a missing feature after a good insert: rolled back too.
    let missing = Op::Delete {
        layer: "poi".into(),
        id: 9999,
        expected_version: 1,
    };
    assert!(matches!(
        store.apply(&cs(vec![poi("好", 112.8), missing])).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.load_layer("poi").await.unwrap().len(), 2);
    assert_eq!(store.last_seq().await.unwrap(), seq1);

    // Optimistic locking: the right version wins once, a stale one is refused.
    let update = |v: i64, name: &str| Op::Update {
        layer: "poi".into(),
        id,
        expected_version: v,
        geometry: Geometry::Point(point!(x: 112.91, y: 28.21)),
        properties: vec![
            Value::text(name),
            Value::Int(4),
            Value::Null,
            Value::Bool(false),
            Value::Null,
            Value::Null,
        ],
    };
    let u = store.apply(&cs(vec![update(1, "东湖中学")])).await.unwrap();
    assert_eq!(u.versions, vec![2]);
    let stale = store.apply(&cs(vec![update(1, "旧名")])).await.unwrap_err();
    assert!(
        matches!(
            stale,
            StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{stale}"
    );
    let now = store.load_layer("poi").await.unwrap();
    assert_eq!(now[0].properties[0], Value::text("东湖中学"));
    assert_eq!(now[0].version, 2);

    // Delete, and ids are never reused.
    store
        .apply(&cs(vec![Op::Delete {
            layer: "poi".into(),
            id,
            expected_version: 2,
        }]))
        .await
        .unwrap();
    let again = store.apply(&cs(vec![poi("新", 112.7)])).await.unwrap();
    assert!(again.ids[0] > a.ids[1], "id {} reused", again.ids[0]);
    assert!(matches!(
        store
            .apply(&cs(vec![Op::Insert {
                layer: "poi".into(),
                id: Some(again.ids[0]),
                geometry: Geometry::Point(point!(x: 1., y: 1.)),
                properties: vec![Value::Null; 6],
            }]))
            .await,
        Err(StoreError::Invalid { .. })
    ));

    // The log only grows, in order; the history tells the whole story.
    let log = store.changes_since(0, 1000).await.unwrap();
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(log.last().unwrap().seq, store.last_seq().await.unwrap());
    let h = store.history("poi", id).await.unwrap();
    let ops: Vec<&str> = h.iter().map(|c| c.op.as_str()).collect();
    assert_eq!(ops, ["insert", "update", "delete"]);
    assert_eq!(h[1].author, "测试员 tester");
    assert_eq!(
        h[1].before.as_ref().unwrap()["properties"]["name"],
        "东湖小学"
    );
    assert_eq!(
        h[1].after.as_ref().unwrap()["properties"]["name"],
        "东湖中学"
    );
    assert_eq!(h[2].version, Some(3));
    let tail = store
        .changes_since(log[log.len() - 2].seq, 10)
        .await
        .unwrap();
    assert_eq!(tail.len(), 1);

    // Unknown layers are errors, not panics.
    assert!(matches!(
        store.load_layer("nope").await,
        Err(StoreError::UnknownLayer(_))
    ));
    assert!(
        store
            .apply(&cs(vec![Op::Delete {
                layer: "nope".into(),
                id: 1,
                expected_version: 1
            }]))
            .await
            .is_err()
    );

    // Layer creation inside a change set is atomic with its inserts.
    let mut def = poi_layer();
    def.name = "poi2".into();
    let mut c = cs(vec![poi("x", 1.0), {
        let mut b = poi("y", 1.0);
        if let Op::Insert { properties, .. } = &mut b {
            properties[2] = Value::text("not a float");
        }
        b
    }]);
    for op in c.ops.iter_mut() {
        if let Op::Insert { layer, .. } = op {
            *layer = "poi2".into();
        }
    }
    c.create.push(def);
    assert!(store.apply(&c).await.is_err());
    assert!(
        !store
            .layers()
            .await
            .unwrap()
            .iter()
            .any(|l| l.name == "poi2")
    );

    store.set_meta("k", "v1").await.unwrap();
    store.set_meta("k", "v2").await.unwrap();
    assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(store.meta("absent").await.unwrap(), None);
}

#[tokio::test]
async fn gpkg_store_meets_the_contract() {
    let dir = common::tempdir();
    let store = onemap::store::gpkg::GpkgStore::open(&dir.path().join("c.gpkg"))
        .await
        .unwrap();
    contract(&store).await;
    // And what it wrote survives a reopen.
    store.close().await;
    let again = onemap::store::gpkg::GpkgStore::open(&dir.path().join("c.gpkg"))
        .await
        .unwrap();
    assert_eq!(again.load_layer("poi").await.unwrap().len(), 2);
    assert_eq!(again.layers().await.unwrap()[0], poi_layer());
}

#[tokio::test]
async fn a_sqlite_file_that_is_not_a_geopackage_is_refused() {
    let dir = common::tempdir();
    let path = dir.path().join("other.sqlite");
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let err = onemap::store::gpkg::GpkgStore::open(&path)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a GeoPackage"), "{err}");
}

#[tokio::test]
async fn a_corrupt_geometry_is_an_error_not_a_panic() {
    let dir = common::tempdir();
    let path = dir.path().join("c.gpkg");
    let store = onemap::store::gpkg::GpkgStore::open(&path).await.unwrap();
    store.create_layer(&poi_layer()).await.unwrap();
    store.apply(&cs(vec![poi("a", 1.0)])).await.unwrap();
    store.close().await;
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE poi SET geom = x'47500001E6100000FFFF'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let store = onemap::store::gpkg::GpkgStore::open(&path).await.unwrap();
    let err = store.load_layer("poi").await.unwrap_err();
    assert!(err.to_string().contains("poi feature 1"), "{err}");
}
