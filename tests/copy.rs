//! `onemap copy`: a store copied GeoPackage → PostGIS → GeoPackage reads back
//! identical (layers, features with ids and versions, bit-identical
//! geometries, id counters, the change log row by row, metadata), and the
//! command refuses what would lose or overwrite data. The PostGIS parts run
//! on a throwaway cluster and are skipped off CI without PostgreSQL.

mod common;

use geo::{Geometry, polygon};
use onemap::model::builtin;
use onemap::model::{Feature, Value};
use onemap::store::copy::{Opened, copy};
use onemap::store::gpkg::GpkgStore;
use onemap::store::postgis::PostgisStore;
use onemap::store::{ChangeSet, Op, Store, StoreError, wkb};
use std::path::Path;
use std::process::{Command, Output};

fn cs(reason: &str, ops: Vec<Op>) -> ChangeSet {
    let mut c = ChangeSet::new("测试员 tester", reason);
    c.ops = ops;
    c
}

fn update(layer: &str, f: &Feature, geometry: Geometry) -> Op {
    Op::Update {
        layer: layer.into(),
        id: f.id,
        expected_version: f.version,
        geometry,
        properties: f.properties.clone(),
    }
}

/// A point moved by an awkward amount, so that the copy must keep every
/// bit of the coordinates.
fn nudged(g: &Geometry, k: f64) -> Geometry {
    match g {
        Geometry::Point(p) => Geometry::Point(geo::Point::new(
            p.x() + k * std::f64::consts::PI * 1e-7,
            p.y() - k / 3.0 * 1e-7,
        )),
        other => other.clone(),
    }
}

/// The small demo plus what a centre's life adds: updated features
/// (versions above 1), a deleted newest feature (the id counter is past the
/// largest id), change sets with per-feature log rows, plan layers with a
/// row each and a metadata value.
async fn lived_in(dir: &Path) -> (std::path::PathBuf, std::sync::Arc<GpkgStore>) {
    let (path, store) = common::demo_store(dir, "small", 11).await;
    let cams = store.load_layer(builtin::CAMERAS).await.unwrap();
    let (a, b) = (&cams[0], &cams[1]);
    let newest = cams.iter().max_by_key(|f| f.id).unwrap();
    store
        .apply(&cs(
            "move two cameras",
            vec![
                update(builtin::CAMERAS, a, nudged(&a.geometry, 1.0)),
                update(builtin::CAMERAS, b, nudged(&b.geometry, 2.0)),
            ],
        ))
        .await
        .unwrap();
    let a2 = store.load_layer(builtin::CAMERAS).await.unwrap()[0].clone();
    assert_eq!(a2.version, 2);
    store
        .apply(&cs(
            "move again, drop the newest",
            vec![
                update(builtin::CAMERAS, &a2, nudged(&a2.geometry, 3.0)),
                Op::Delete {
                    layer: builtin::CAMERAS.into(),
                    id: newest.id,
                    expected_version: newest.version,
                },
            ],
        ))
        .await
        .unwrap();
    // A grid re-saved (a MultiPolygon, version 2).
    let grid = store.load_layer(builtin::GRIDS).await.unwrap()[3].clone();
    store
        .apply(&cs(
            "re-save a grid",
            vec![update(builtin::GRIDS, &grid, grid.geometry.clone())],
        ))
        .await
        .unwrap();
    // The plan layers, with a row each.
    let defs = store.layers().await.unwrap();
    let grids_def = defs.iter().find(|d| d.name == builtin::GRIDS).unwrap();
    let mut plans = cs("a plan", Vec::new());
    plans.create = vec![
        onemap::plan::plans_def(),
        onemap::plan::plan_grids_def(grids_def),
    ];
    let mut plan_props = vec![Value::Null; plans.create[0].properties.len()];
    plan_props[0] = Value::text("东湖街道网格调整");
    plans.ops.push(Op::Insert {
        layer: builtin::PLANS.into(),
        id: None,
        geometry: Geometry::Polygon(
            polygon![(x: 112.9, y: 28.2), (x: 113.0, y: 28.2), (x: 113.0, y: 28.3)],
        ),
        properties: plan_props,
    });
    let mut draft = vec![Value::Int(1)];
    draft.extend(grid.properties.iter().cloned());
    plans.ops.push(Op::Insert {
        layer: builtin::PLAN_GRIDS.into(),
        id: None,
        geometry: grid.geometry.clone(),
        properties: draft,
    });
    store.apply(&plans).await.unwrap();
    store.set_meta("centre", "东湖区 指挥中心").await.unwrap();

    let after = store.load_layer(builtin::CAMERAS).await.unwrap();
    let max = after.iter().map(|f| f.id).max().unwrap();
    assert_eq!(store.last_id(builtin::CAMERAS).await.unwrap(), newest.id);
    assert!(newest.id > max, "the newest camera is gone");
    (path, store)
}

/// Asserts that two stores hold the same data, everything `onemap copy`
/// promises.
async fn assert_same(a: &dyn Store, b: &dyn Store) {
    let what = format!("{} vs {}", a.describe(), b.describe());
    let layers = a.layers().await.unwrap();
    assert_eq!(b.layers().await.unwrap(), layers, "layers of {what}");
    assert!(layers.iter().any(|l| l.name == builtin::PLAN_GRIDS));
    for l in &layers {
        let fa = a.load_layer(&l.name).await.unwrap();
        let fb = b.load_layer(&l.name).await.unwrap();
        assert_eq!(fa.len(), fb.len(), "{} in {what}", l.name);
        for (x, y) in fa.iter().zip(&fb) {
            assert_eq!((x.id, x.version), (y.id, y.version), "{} in {what}", l.name);
            assert_eq!(
                wkb::to_wkb(&x.geometry),
                wkb::to_wkb(&y.geometry),
                "{} feature {} geometry in {what}",
                l.name,
                x.id
            );
            assert_eq!(
                x.properties, y.properties,
                "{} feature {} in {what}",
                l.name, x.id
            );
        }
        assert_eq!(
            a.last_id(&l.name).await.unwrap(),
            b.last_id(&l.name).await.unwrap(),
            "last id of {} in {what}",
            l.name
        );
    }
    let la = a.changes_since(0, i64::MAX).await.unwrap();
    let lb = b.changes_since(0, i64::MAX).await.unwrap();
    assert_eq!(la.len(), lb.len(), "change log of {what}");
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(x, y, "change-log row {} of {what}", x.seq);
    }
    assert_eq!(a.last_seq().await.unwrap(), b.last_seq().await.unwrap());
    let ma = a.meta_all().await.unwrap();
    assert_eq!(b.meta_all().await.unwrap(), ma, "metadata of {what}");
    assert!(ma.iter().any(|(k, _)| k == "centre"));
    assert!(ma.windows(2).all(|w| w[0].0 < w[1].0), "sorted by key");
}

/// Inserts one camera and writes one more change set; returns the new id
/// and the change set's first seq: the same in a store and its copy.
async fn next_write(s: &dyn Store) -> (i64, i64) {
    let cam = s.load_layer(builtin::CAMERAS).await.unwrap()[0].clone();
    let a = s
        .apply(&cs(
            "after the copy",
            vec![Op::Insert {
                layer: builtin::CAMERAS.into(),
                id: None,
                geometry: cam.geometry.clone(),
                properties: cam.properties.clone(),
            }],
        ))
        .await
        .unwrap();
    (a.ids[0], a.first_seq)
}

async fn summary_counts(from: &dyn Store, to: &dyn Store) {
    let sum = copy(from, to, |_| {}).await.unwrap();
    assert_eq!(sum.layers, from.layers().await.unwrap().len());
    assert_eq!(sum.changes as i64, from.last_seq().await.unwrap());
}

#[tokio::test]
async fn gpkg_to_postgis_and_back_is_identical() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    let dir = common::tempdir();
    let (_, src) = lived_in(dir.path()).await;
    let postgis = PostgisStore::open(&pg.url).await.unwrap();
    let mut lines = Vec::new();
    let sum = copy(src.as_ref(), &postgis, |l| lines.push(l.to_string()))
        .await
        .unwrap();
    assert_eq!(sum.layers, src.layers().await.unwrap().len());
    assert!(sum.features > 1000 && sum.changes > 10, "{sum:?}");
    assert!(lines.iter().any(|l| l.starts_with("layer cameras:")));
    assert_same(src.as_ref(), &postgis).await;

    let back = GpkgStore::open(&dir.path().join("back.gpkg"))
        .await
        .unwrap();
    summary_counts(&postgis, &back).await;
    assert_same(src.as_ref(), &back).await;

    // The next insert gets the same id everywhere (the deleted newest
    // camera's id is not given again) and the log continues alike.
    let want = next_write(src.as_ref()).await;
    assert_eq!(next_write(&back).await, want);
    assert_eq!(next_write(&postgis).await, want);
    let deleted = src.last_id(builtin::CAMERAS).await.unwrap();
    assert_eq!(want.0, deleted);
    postgis.close().await;
    back.close().await;

    // The final copy opens in GDAL with the same feature counts.
    if let Some(ogrinfo) = common::ogrinfo() {
        for l in src.layers().await.unwrap() {
            let n = src.load_layer(&l.name).await.unwrap().len();
            let out = Command::new(ogrinfo)
                .args(["-ro", "-so"])
                .arg(dir.path().join("back.gpkg"))
                .arg(&l.name)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !stderr.contains("ERROR"),
                "{stderr}"
            );
            assert!(
                text.lines().any(|t| t == format!("Feature Count: {n}")),
                "{} in ogrinfo:\n{text}",
                l.name
            );
        }
    }
}

#[tokio::test]
async fn gpkg_to_gpkg_is_identical() {
    let dir = common::tempdir();
    let (_, src) = lived_in(dir.path()).await;
    let dst = GpkgStore::open(&dir.path().join("copy.gpkg"))
        .await
        .unwrap();
    summary_counts(src.as_ref(), &dst).await;
    assert_same(src.as_ref(), &dst).await;
    dst.close().await;
    // Reopened (what close checkpointed is all there).
    let dst = GpkgStore::open(&dir.path().join("copy.gpkg"))
        .await
        .unwrap();
    assert_same(src.as_ref(), &dst).await;
    assert_eq!(next_write(&dst).await, next_write(src.as_ref()).await);
}

/// The restore methods refuse what would break the log or a layer, and
/// leave the counters where a copy needs them.
async fn restores(src: &dyn Store, dst: &dyn Store) {
    let rows = src.changes_since(0, 5).await.unwrap();
    dst.restore_changes(&rows[..3]).await.unwrap();
    // Not after the last seq: refused, nothing written.
    let err = dst.restore_changes(&rows[1..]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { index: 0, .. }), "{err}");
    assert!(err.to_string().contains("last seq"), "{err}");
    let mut shuffled = vec![rows[4].clone(), rows[3].clone()];
    let err = dst.restore_changes(&shuffled).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { index: 1, .. }), "{err}");
    assert_eq!(dst.last_seq().await.unwrap(), rows[2].seq);
    shuffled.reverse();
    dst.restore_changes(&shuffled).await.unwrap();
    assert_eq!(dst.changes_since(0, 100).await.unwrap(), rows);

    let defs = src.layers().await.unwrap();
    let def = defs[0].clone();
    let features = src.load_layer(&def.name).await.unwrap();
    dst.restore_layer(&def, &features, 0).await.unwrap();
    assert!(matches!(
        dst.restore_layer(&def, &features, 0).await,
        Err(StoreError::LayerExists(_))
    ));
    // A counter below the largest id is raised to it.
    assert_eq!(
        dst.last_id(&def.name).await.unwrap(),
        features.iter().map(|f| f.id).max().unwrap()
    );
    // The next change set continues after the restored rows.
    let f = &features[0];
    let a = dst
        .apply(&cs(
            "next",
            vec![Op::Update {
                layer: def.name.clone(),
                id: f.id,
                expected_version: f.version,
                geometry: f.geometry.clone(),
                properties: f.properties.clone(),
            }],
        ))
        .await
        .unwrap();
    assert_eq!(a.first_seq, rows[4].seq + 1);
    assert_eq!(a.versions, vec![f.version + 1]);

    // A layer whose features were all deleted keeps its counter.
    let cams = defs.iter().find(|d| d.name == builtin::CAMERAS).unwrap();
    dst.restore_layer(cams, &[], 4242).await.unwrap();
    assert_eq!(dst.last_id(builtin::CAMERAS).await.unwrap(), 4242);
    let some = src.load_layer(builtin::CAMERAS).await.unwrap()[0].clone();
    let a = dst
        .apply(&cs(
            "first again",
            vec![Op::Insert {
                layer: builtin::CAMERAS.into(),
                id: None,
                geometry: some.geometry,
                properties: some.properties,
            }],
        ))
        .await
        .unwrap();
    assert_eq!(a.ids, vec![4243]);
    // A value of the wrong type is refused before anything is written.
    let mut bad = features.clone();
    bad[1].properties[0] = Value::Bool(true);
    let mut other = def.clone();
    other.name = "other".into();
    let err = dst.restore_layer(&other, &bad, 0).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { index: 1, .. }), "{err}");
    assert!(
        !dst.layers()
            .await
            .unwrap()
            .iter()
            .any(|d| d.name == "other")
    );
}

#[tokio::test]
async fn restores_into_gpkg() {
    let dir = common::tempdir();
    let (_, src) = lived_in(dir.path()).await;
    let dst = GpkgStore::open(&dir.path().join("copy.gpkg"))
        .await
        .unwrap();
    restores(src.as_ref(), &dst).await;
    dst.close().await;
}

#[tokio::test]
async fn restores_into_postgis() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    let dir = common::tempdir();
    let (_, src) = lived_in(dir.path()).await;
    let dst = PostgisStore::open(&pg.url).await.unwrap();
    restores(src.as_ref(), &dst).await;
    dst.close().await;
}

/// A copy that fails after it has written something says the destination
/// is partial and what to do.
#[tokio::test]
async fn a_copy_that_fails_half_way_says_so() {
    let dir = common::tempdir();
    let (_, src) = lived_in(dir.path()).await;
    let path = dir.path().join("copy.gpkg");
    GpkgStore::open(&path).await.unwrap().close().await;
    {
        // A table in the way of the last layer, made by another tool.
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE water (x)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let dst = GpkgStore::open(&path).await.unwrap();
    let err = format!("{:#}", copy(src.as_ref(), &dst, |_| {}).await.unwrap_err());
    assert!(err.contains("stopped half-way"), "{err}");
    assert!(err.contains(&dst.describe()), "{err}");
    assert!(err.contains("delete it"), "{err}");
    assert!(err.contains("cannot write layer water"), "{err}");
    // Everything before it is there; a second copy is refused.
    assert!(
        dst.layers()
            .await
            .unwrap()
            .iter()
            .any(|l| l.name == "roads")
    );
    let again = format!("{:#}", copy(src.as_ref(), &dst, |_| {}).await.unwrap_err());
    assert!(again.contains("is not empty"), "{again}");
    dst.close().await;
}

// ---------------------------------------------------------------------------
// The command line.

fn onemap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onemap"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "onemap failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn fails_with(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "onemap succeeded: {err}");
    assert!(err.contains(needle), "no {needle:?} in: {err}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What the command refuses, on GeoPackages alone (runs everywhere).
#[tokio::test]
async fn the_cli_refuses_what_would_lose_data() {
    let dir = common::tempdir();
    let (a, store) = common::demo_store(dir.path(), "small", 2).await;
    store.close().await;
    let b = dir.path().join("b.gpkg");
    ok(&onemap(&["copy", "--from", s(&a), "--to", s(&b)]));

    // A missing source: a clear error, and no file made on either side.
    let missing = dir.path().join("missing.gpkg");
    let c = dir.path().join("c.gpkg");
    let o = onemap(&["copy", "--from", s(&missing), "--to", s(&c)]);
    fails_with(&o, "does not exist");
    assert!(!missing.exists() && !c.exists());

    // An existing destination needs --force; without it nothing changes.
    let before = std::fs::read(&b).unwrap();
    fails_with(
        &onemap(&["copy", "--from", s(&a), "--to", s(&b)]),
        "pass --force",
    );
    assert!(std::fs::read(&b).unwrap() == before, "b.gpkg was changed");
    // Not even with --force onto the source itself.
    fails_with(
        &onemap(&["copy", "--from", s(&a), "--to", s(&a), "--force"]),
        "is the source",
    );
    ok(&onemap(&[
        "copy",
        "--from",
        s(&a),
        "--to",
        s(&b),
        "--force",
    ]));
    let (sa, sb) = (
        GpkgStore::open(&a).await.unwrap(),
        GpkgStore::open(&b).await.unwrap(),
    );
    assert_eq!(sb.layers().await.unwrap(), sa.layers().await.unwrap());
    assert_eq!(
        sb.changes_since(0, i64::MAX).await.unwrap(),
        sa.changes_since(0, i64::MAX).await.unwrap()
    );
    sa.close().await;
    sb.close().await;
}

#[tokio::test]
async fn the_cli_copies_to_postgis_and_back() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    let dir = common::tempdir();
    let (a, store) = lived_in(dir.path()).await;
    store.close().await;
    let o = onemap(&["copy", "--from", s(&a), "--to", &pg.url]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("copied") && err.contains("layer(s)"), "{err}");
    let b = dir.path().join("b.gpkg");
    ok(&onemap(&["copy", "--from", &pg.url, "--to", s(&b)]));
    let (sa, sb) = (
        Opened::open(s(&a)).await.unwrap(),
        Opened::open(s(&b)).await.unwrap(),
    );
    assert_same(sa.store(), sb.store()).await;

    // Into a database that holds data: refused, naming it, and unchanged.
    let o = onemap(&["copy", "--from", s(&b), "--to", &pg.url]);
    fails_with(&o, "is not empty");
    fails_with(&o, &format!("127.0.0.1:{}/onemap", pg.port));
    let db = Opened::open(&pg.url).await.unwrap();
    assert_same(sa.store(), db.store()).await;
    sa.close().await;
    sb.close().await;
    db.close().await;
}
