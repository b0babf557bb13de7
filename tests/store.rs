//! The store contract, written against `dyn Store` so that every backend runs
//! the same suite: each test body takes a [`Backend`] and `for_each_store!`
//! instantiates it for the GeoPackage and the PostGIS store (the latter on a
//! throwaway cluster, skipped outside CI when PostgreSQL is not installed).

mod common;

use geo::{Geometry, point, polygon};
use onemap::model::{GeomKind, LayerDef, PropDef, PropType, Value};
use onemap::store::gpkg::GpkgStore;
use onemap::store::postgis::PostgisStore;
use onemap::store::{ChangeSet, LogDetail, Op, Store, StoreError};

/// Where a backend's store lives, so that a test can open it again.
enum Backend {
    Gpkg(tempfile::TempDir),
    Postgis(common::pg::PgCluster),
}

/// An open store of either kind.
enum Opened {
    Gpkg(GpkgStore),
    Postgis(Box<PostgisStore>),
}

impl Backend {
    async fn gpkg() -> Option<Backend> {
        Some(Backend::Gpkg(common::tempdir()))
    }

    async fn postgis() -> Option<Backend> {
        common::pg::PgCluster::start().await.map(Backend::Postgis)
    }

    async fn open(&self) -> Opened {
        match self {
            Backend::Gpkg(dir) => Opened::Gpkg(
                GpkgStore::open(&dir.path().join("c.gpkg"))
                    .await
                    .expect("open gpkg"),
            ),
            Backend::Postgis(pg) => Opened::Postgis(Box::new(
                PostgisStore::open(&pg.url).await.expect("open postgis"),
            )),
        }
    }
}

impl Opened {
    fn store(&self) -> &dyn Store {
        match self {
            Opened::Gpkg(s) => s,
            Opened::Postgis(s) => s.as_ref(),
        }
    }

    async fn close(self) {
        match self {
            Opened::Gpkg(s) => s.close().await,
            Opened::Postgis(s) => s.close().await,
        }
    }
}

/// Runs each named `async fn(&Backend)` against every store, as the tests
/// `<name>::gpkg` and `<name>::postgis`.
macro_rules! for_each_store {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn gpkg() {
                if let Some(b) = super::Backend::gpkg().await {
                    super::$name(&b).await;
                }
            }

            #[tokio::test]
            async fn postgis() {
                if let Some(b) = super::Backend::postgis().await {
                    super::$name(&b).await;
                }
            }
        }
    )*};
}

for_each_store!(meets_the_contract, bulk_loads_log_a_summary);

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

    // Deleting the newest feature does not free its id either.
    store
        .apply(&cs(vec![Op::Delete {
            layer: "poi".into(),
            id: again.ids[0],
            expected_version: 1,
        }]))
        .await
        .unwrap();
    let newer = store.apply(&cs(vec![poi("更新", 112.6)])).await.unwrap();
    assert!(newer.ids[0] > again.ids[0], "id {} reused", newer.ids[0]);

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
    // The GeoJSON keeps its order: properties in schema order.
    let keys: Vec<&str> = h[0].after.as_ref().unwrap()["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["name", "floors", "rate", "open", "since", "day"]);
    // By a property's text value before or after; numbers are not text.
    let by_name = |v: &'static str| async move {
        let rows = store.history_where("poi", "name", v).await.unwrap();
        rows.iter().map(|c| c.op.clone()).collect::<Vec<_>>()
    };
    assert_eq!(by_name("东湖小学").await, ["insert", "update"]);
    assert_eq!(by_name("东湖中学").await, ["update", "delete"]);
    assert!(by_name("无").await.is_empty());
    assert!(
        store
            .history_where("poi", "floors", "4")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.history_where("nope", "name", "x").await,
        Err(StoreError::UnknownLayer(_))
    ));
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

async fn meets_the_contract(b: &Backend) {
    let s = b.open().await;
    contract(s.store()).await;
    s.close().await;
    // And what it wrote survives a reopen.
    let again = b.open().await;
    let store = again.store();
    assert_eq!(store.load_layer("poi").await.unwrap().len(), 2);
    assert_eq!(store.layers().await.unwrap()[0], poi_layer());
    let last = store.changes_since(0, 1000).await.unwrap();
    assert_eq!(last.last().unwrap().seq, store.last_seq().await.unwrap());
    let newest = last.iter().filter_map(|c| c.fid).max().unwrap();
    let next = store.apply(&cs(vec![poi("重开", 112.5)])).await.unwrap();
    assert!(next.ids[0] > newest);
    assert!(next.first_seq > last.last().unwrap().seq);
    again.close().await;
}

/// A bulk load writes its rows through the fast path and logs one summary
/// row per layer; a layer created in the same change set comes first.
async fn bulk_loads_log_a_summary(b: &Backend) {
    let s = b.open().await;
    let store = s.store();
    let seq0 = store.last_seq().await.unwrap();
    let mut c = cs((0..1500)
        .map(|k| poi(&format!("点{k}"), 112.0 + k as f64 * 1e-4))
        .collect());
    c.detail = LogDetail::Summary;
    c.create.push(poi_layer());
    // An explicit id in the middle; the allocator continues past it.
    if let Op::Insert { id, .. } = &mut c.ops[700] {
        *id = Some(5000);
    }
    let a = store.apply(&c).await.unwrap();
    assert_eq!(a.ids.len(), 1500);
    assert_eq!(a.ids[0], 1);
    assert_eq!(a.ids[700], 5000);
    assert_eq!(a.ids[701], 5001);
    assert_eq!(a.ids[1499], 5799);
    let log = store.changes_since(seq0, 100).await.unwrap();
    let ops: Vec<&str> = log.iter().map(|c| c.op.as_str()).collect();
    assert_eq!(ops, ["create_layer", "bulk_insert"]);
    assert!(log.iter().all(|r| r.txn == a.first_seq));
    assert_eq!((a.first_seq, a.last_seq), (log[0].seq, log[1].seq));
    assert_eq!(log[0].after.as_ref().unwrap()["name"], "poi");
    assert_eq!(
        log[1].after,
        Some(serde_json::json!({"count": 1500, "first_fid": 1, "last_fid": 5799}))
    );
    assert_eq!(log[1].fid, None);
    let fs = store.load_layer("poi").await.unwrap();
    assert_eq!(fs.len(), 1500);
    assert!(fs.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(fs[699].id, 700);
    assert_eq!(fs[699].properties[0], Value::text("点699"));
    assert_eq!(fs[700].id, 5000);
    assert_eq!(fs[700].properties[0], Value::text("点700"));
    assert_eq!(fs[1499].id, 5799);
    assert_eq!(fs[1499].properties[0], Value::text("点1499"));
    assert_eq!(
        fs[1499].geometry,
        Geometry::Point(point!(x: 112.0 + 1499.0 * 1e-4, y: 28.2))
    );
    assert!(fs.iter().all(|f| f.version == 1));

    // Per-feature logging of a run of inserts: one row each, consecutive.
    let seq1 = store.last_seq().await.unwrap();
    let b2 = store
        .apply(&cs((0..300)
            .map(|k| poi(&format!("新{k}"), 113.0))
            .collect()))
        .await
        .unwrap();
    assert_eq!(b2.last_seq - b2.first_seq, 299);
    let rows = store.changes_since(seq1, 1000).await.unwrap();
    assert_eq!(rows.len(), 300);
    assert!(
        rows.iter()
            .all(|r| r.op == "insert" && r.txn == b2.first_seq)
    );
    assert_eq!(rows[299].fid, Some(b2.ids[299]));
    assert_eq!(
        rows[299].after.as_ref().unwrap()["properties"]["name"],
        "新299"
    );
    assert_eq!(store.load_layer("poi").await.unwrap().len(), 1800);

    // Explicit ids already taken, or twice in one set, are refused.
    let taken = |id: i64| Op::Insert {
        layer: "poi".into(),
        id: Some(id),
        geometry: Geometry::Point(point!(x: 1., y: 1.)),
        properties: vec![Value::Null; 6],
    };
    assert!(matches!(
        store.apply(&cs(vec![taken(9000), taken(5000)])).await,
        Err(StoreError::Invalid { index: 1, .. })
    ));
    assert!(matches!(
        store.apply(&cs(vec![taken(9000), taken(9000)])).await,
        Err(StoreError::Invalid { index: 1, .. })
    ));
    assert_eq!(store.load_layer("poi").await.unwrap().len(), 1800);
    s.close().await;
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
        // A tool that knows nothing of the R-tree's triggers (it could
        // not call their functions) drops them and writes garbage.
        let triggers: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'poi'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for t in triggers {
            sqlx::query(&format!("DROP TRIGGER \"{t}\""))
                .execute(&pool)
                .await
                .unwrap();
        }
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

async fn notification(l: &mut sqlx::postgres::PgListener) -> sqlx::postgres::PgNotification {
    tokio::time::timeout(std::time::Duration::from_secs(10), l.recv())
        .await
        .expect("a notification within 10 s")
        .unwrap()
}

#[tokio::test]
async fn postgis_notifies_each_committed_change_set() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    let store = PostgisStore::open(&pg.url).await.unwrap();
    store.create_layer(&poi_layer()).await.unwrap();
    let mut listener = sqlx::postgres::PgListener::connect(&pg.url).await.unwrap();
    listener.listen("onemap_changes").await.unwrap();
    let a = store
        .apply(&cs(vec![poi("a", 1.0), poi("b", 2.0)]))
        .await
        .unwrap();
    let n = notification(&mut listener).await;
    assert_eq!(n.channel(), "onemap_changes");
    assert_eq!(n.payload(), a.last_seq.to_string());
    // A refused change set notifies nothing: the next one is the next set.
    let mut bad = poi("c", 1.0);
    if let Op::Insert { properties, .. } = &mut bad {
        properties[1] = Value::text("three");
    }
    assert!(store.apply(&cs(vec![bad])).await.is_err());
    let missing = Op::Delete {
        layer: "poi".into(),
        id: 9999,
        expected_version: 1,
    };
    assert!(
        store
            .apply(&cs(vec![poi("d", 1.0), missing]))
            .await
            .is_err()
    );
    let b = store.apply(&cs(vec![poi("e", 3.0)])).await.unwrap();
    let n = notification(&mut listener).await;
    assert_eq!(n.payload(), b.last_seq.to_string());
    store.close().await;
}

#[tokio::test]
async fn postgis_stores_sharing_a_database_write_in_turn() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    let one = std::sync::Arc::new(PostgisStore::open(&pg.url).await.unwrap());
    let two = std::sync::Arc::new(PostgisStore::open(&pg.url).await.unwrap());
    one.create_layer(&poi_layer()).await.unwrap();
    // The second store learns of the layer from the database.
    assert_eq!(two.layers().await.unwrap(), vec![poi_layer()]);
    let write = |s: std::sync::Arc<PostgisStore>, who: usize| async move {
        let mut out = Vec::new();
        for k in 0..10 {
            let name = format!("{who}-{k}");
            let ops = vec![poi(&name, 1.0), poi(&name, 2.0), poi(&name, 3.0)];
            out.push(s.apply(&cs(ops)).await.unwrap());
        }
        out
    };
    let (a, b) = tokio::join!(write(one.clone(), 1), write(two.clone(), 2));
    let mut ids = std::collections::BTreeSet::new();
    for applied in a.iter().chain(&b) {
        // Each change set's rows are consecutive and name the set.
        assert_eq!(applied.last_seq - applied.first_seq, 2);
        let rows = one.changes_since(applied.first_seq - 1, 3).await.unwrap();
        assert!(rows.iter().all(|r| r.txn == applied.first_seq));
        assert!(
            rows.iter()
                .map(|r| r.fid.unwrap())
                .eq(applied.ids.iter().copied())
        );
        ids.extend(applied.ids.iter().copied());
    }
    assert_eq!(ids.len(), 60, "an id was given twice");
    assert_eq!(two.load_layer("poi").await.unwrap().len(), 60);
    one.close().await;
    two.close().await;
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("postgres://onemap:hunter2@127.0.0.1:{port}/onemap");
    let err = match onemap::store::open(&url).await {
        Ok(_) => panic!("nothing listens on {port}"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(
        err.contains(&format!("onemap:***@127.0.0.1:{port}/onemap")),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

/// The small demo written to both stores reads back the same: layers,
/// features (values, types, geometry coercions) and the change log.
#[tokio::test]
async fn both_stores_read_back_the_same_demo() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    let dir = common::tempdir();
    let gpkg = GpkgStore::open(&dir.path().join("d.gpkg")).await.unwrap();
    let postgis = PostgisStore::open(&pg.url).await.unwrap();
    for s in [&gpkg as &dyn Store, &postgis] {
        let g = onemap::demo::generate(&onemap::demo::Scale::parse("small").unwrap(), 7).unwrap();
        onemap::demo::write(s, g).await.unwrap();
    }
    let layers = gpkg.layers().await.unwrap();
    assert_eq!(postgis.layers().await.unwrap(), layers);
    for l in &layers {
        let a = gpkg.load_layer(&l.name).await.unwrap();
        let b = postgis.load_layer(&l.name).await.unwrap();
        assert_eq!(a.len(), b.len(), "{}", l.name);
        assert!(a == b, "{} differs", l.name);
    }
    let strip = |mut cs: Vec<onemap::store::Change>| {
        for c in &mut cs {
            c.time.clear();
        }
        cs
    };
    assert_eq!(
        strip(postgis.changes_since(0, 100).await.unwrap()),
        strip(gpkg.changes_since(0, 100).await.unwrap())
    );
    for k in ["demo_seed", "demo_scale", "datum", "absent"] {
        assert_eq!(postgis.meta(k).await.unwrap(), gpkg.meta(k).await.unwrap());
    }
    gpkg.close().await;
    postgis.close().await;
}

#[tokio::test]
async fn a_database_without_postgis_says_how_to_enable_it() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    // A database whose owner may not create the (untrusted) extension.
    let admin = sqlx::PgPool::connect(&pg.url).await.unwrap();
    for sql in [
        "CREATE ROLE plain LOGIN",
        "CREATE DATABASE bare OWNER plain",
    ] {
        sqlx::query(sql).execute(&admin).await.unwrap();
    }
    admin.close().await;
    let url = format!("postgres://plain@127.0.0.1:{}/bare", pg.port);
    let err = match onemap::store::open(&url).await {
        Ok(_) => panic!("opened a database without PostGIS"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("CREATE EXTENSION postgis"), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}/bare", pg.port)),
        "{err}"
    );
}

/// Waits until the wake-ups satisfy `pred`, for at most 20 s.
async fn wakeups_until(
    rx: &mut tokio::sync::watch::Receiver<onemap::store::Wakeups>,
    what: &str,
    pred: impl Fn(&onemap::store::Wakeups) -> bool,
) -> onemap::store::Wakeups {
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        rx.wait_for(|w| pred(w)).await.map(|w| *w)
    })
    .await;
    match r {
        Ok(w) => w.expect("listener alive"),
        Err(_) => panic!("wake-ups: {what} within 20 s (now {:?})", *rx.borrow()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_notifications_wake_followers_and_survive_a_database_restart() {
    // The GeoPackage cannot tell: its followers poll.
    let dir = common::tempdir();
    let g = GpkgStore::open(&dir.path().join("n.gpkg")).await.unwrap();
    assert!(g.change_notifications().is_none());
    g.close().await;

    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    let writer = PostgisStore::open(&pg.url).await.unwrap();
    let follower = PostgisStore::open(&pg.url).await.unwrap();
    writer.create_layer(&poi_layer()).await.unwrap();
    let mut rx = follower.change_notifications().expect("PostGIS notifies");
    let up = wakeups_until(&mut rx, "listening", |w| w.listening).await;
    // Another store's commit wakes this one.
    writer.apply(&cs(vec![poi("a", 1.0)])).await.unwrap();
    let after = wakeups_until(&mut rx, "a wake-up for the commit", |w| w.count > up.count).await;
    // The database goes away: the listener says so, and comes back with it
    // (waking once more, since notifications may have been missed).
    pg.stop();
    wakeups_until(&mut rx, "not listening while down", |w| !w.listening).await;
    let err = writer.apply(&cs(vec![poi("b", 2.0)])).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    pg.restart();
    let back = wakeups_until(&mut rx, "listening again", |w| w.listening).await;
    assert!(back.count > after.count);
    writer.apply(&cs(vec![poi("c", 3.0)])).await.unwrap();
    wakeups_until(&mut rx, "a wake-up after the restart", |w| {
        w.count > back.count
    })
    .await;
    // Dropping the receiver stops the listener (its connection goes back).
    drop(rx);
    writer.close().await;
    follower.close().await;
}

/// What is worth a retry: SQLite's "database is locked" (another writer
/// holds it) is the retryable kind (503 over HTTP); "no such function" is
/// not (500), retrying would only fail again.
#[tokio::test]
async fn sqlite_busy_is_retryable_and_a_missing_function_is_not() {
    let dir = common::tempdir();
    let path = dir.path().join("busy.sqlite");
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .busy_timeout(std::time::Duration::ZERO);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (x)")
        .execute(&pool)
        .await
        .unwrap();
    let mut holder = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let busy = sqlx::query("INSERT INTO t VALUES (2)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(onemap::store::unreachable_error(&busy), "{busy}");
    assert!(matches!(StoreError::from(busy), StoreError::Unreachable(_)));
    holder.rollback().await.unwrap();
    let missing = sqlx::query("SELECT no_such_function(1)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(!onemap::store::unreachable_error(&missing), "{missing}");
    assert!(matches!(StoreError::from(missing), StoreError::Backend(_)));
    pool.close().await;
}
