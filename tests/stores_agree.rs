//! The same data in a GeoPackage and in PostGIS gives the same answers:
//! two servers, one on each store holding the same demo, are asked the same
//! questions (layers, grids, area queries with filters and grouping, CSV
//! and GeoJSON exports, nearest, OGC API items, vector tiles) and must
//! answer byte for byte alike.

mod common;

use onemap::store::Store;
use onemap::store::postgis::PostgisStore;
use serde_json::{Value as J, json};
use std::sync::Arc;

/// Drops the members derived from the server's clock (overdue orders), so
/// two servers started a moment apart compare equal.
fn without_clock(mut v: J) -> J {
    match &mut v {
        J::Object(m) => {
            m.retain(|k, _| !k.contains("overdue"));
            for x in m.values_mut() {
                *x = without_clock(x.take());
            }
        }
        J::Array(a) => {
            for x in a.iter_mut() {
                *x = without_clock(x.take());
            }
        }
        _ => {}
    }
    v
}

/// The document as text with the server's own address taken out (links).
fn text(v: J, srv: &common::TestServer) -> String {
    without_clock(v).to_string().replace(&srv.base, "BASE")
}

/// Asserts two texts are equal, showing where they first differ.
fn same(a: &str, b: &str, what: &str) {
    if a != b {
        let at = a
            .bytes()
            .zip(b.bytes())
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let from = at.saturating_sub(200);
        panic!(
            "{what}: the stores answer differently at byte {at}:\n gpkg:    …{}\n postgis: …{}",
            &a[from..(at + 200).min(a.len())],
            &b[from..(at + 200).min(b.len())]
        );
    }
}

async fn bytes(srv: &common::TestServer, path: &str) -> (u16, Vec<u8>) {
    let r = srv.get(path).await;
    let s = r.status().as_u16();
    (s, r.bytes().await.expect("body").to_vec())
}

async fn post(srv: &common::TestServer, body: &J) -> (u16, J) {
    let r = srv
        .client
        .post(format!("{}/api/query", srv.base))
        .json(body)
        .send()
        .await
        .expect("query");
    let s = r.status().as_u16();
    (s, r.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_answer_the_same_on_both_stores() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    let dir = common::tempdir();
    let (_, gpkg) = common::demo_store(dir.path(), "small", 41).await;
    common::demo_postgis(&pg.url, "small", 41).await;
    let pgs = PostgisStore::open(&pg.url).await.expect("open postgis");
    let a = common::serve(gpkg as Arc<dyn Store>, common::config()).await;
    let b = common::serve(Arc::new(pgs) as Arc<dyn Store>, common::config()).await;

    // Plain GETs whose JSON must agree.
    let (_, streets) = a.get_json("/api/grids?level=street").await;
    let (_, micro) = a.get_json("/api/grids?level=micro").await;
    let street = streets["grids"][0]["code"].as_str().unwrap().to_string();
    let m0 = micro["grids"][0]["code"].as_str().unwrap().to_string();
    let (g0, (lon, lat)) = common::grid_and_centre(&a, &m0).await;
    let bb: Vec<f64> = serde_json::from_value(g0["bbox"].clone()).unwrap();
    let (_, all) = a.get_json("/api/layers").await;
    let ext = &all.as_array().unwrap()[0]["bbox"];
    let (w, s, e, n) = (
        ext[0].as_f64().unwrap(),
        ext[1].as_f64().unwrap(),
        ext[2].as_f64().unwrap(),
        ext[3].as_f64().unwrap(),
    );
    let box1 = format!(
        "{},{},{},{}",
        w + (e - w) * 0.2,
        s + (n - s) * 0.2,
        w + (e - w) * 0.6,
        s + (n - s) * 0.7
    );
    let enc = common::url_escape;
    let gets = [
        "/api/layers".to_string(),
        "/api/grids?level=street".to_string(),
        "/api/grids?level=micro".to_string(),
        format!("/api/grids/{street}"),
        format!("/api/grids/{m0}"),
        format!("/api/nearest?lon={lon}&lat={lat}&layer=cameras&k=20"),
        format!(
            "/api/nearest?lon={lon}&lat={lat}&layer=risks&k=10&filter={}",
            enc("category <> 'fire'")
        ),
        "/ogc/collections".to_string(),
        "/ogc/collections/addresses".to_string(),
        "/ogc/collections/buildings/queryables".to_string(),
        format!("/ogc/collections/addresses/items?bbox={box1}&limit=200"),
        format!("/ogc/collections/addresses/items?bbox={box1}&limit=50&offset=100"),
        format!(
            "/ogc/collections/events/items?limit=300&filter={}",
            enc("status <> 'closed' AND source = 'hotline_12345'")
        ),
        format!(
            "/ogc/collections/cameras/items?filter={}&filter-lang=cql2-text",
            enc(&format!(
                "S_INTERSECTS(geometry, POLYGON(({} {}, {} {}, {} {}, {} {}, {} {})))",
                bb[0], bb[1], bb[2], bb[1], bb[2], bb[3], bb[0], bb[3], bb[0], bb[1]
            ))
        ),
        "/ogc/collections/buildings/items/1".to_string(),
    ];
    for path in &gets {
        let (sa, ja) = a.get_json(path).await;
        let (sb, jb) = b.get_json(path).await;
        assert_eq!(sa, 200, "{path}: {ja}");
        assert_eq!(sb, sa, "{path}");
        same(&text(ja, &a), &text(jb, &b), path);
    }

    // Area queries: a grid, a polygon, a circle; filters, grouping, paging.
    let queries = [
        json!({"area": {"grid": street}, "layers": ["addresses", "cameras", "risks", "buildings"], "limit": 500}),
        json!({"area": {"grid": m0}, "layers": ["addresses"], "group_by": "community"}),
        json!({"area": {"point": [lon, lat], "radius_m": 400}, "layers": ["risks"],
               "filter": {"risks": "category IN ('fire', 'group_rental')"}, "group_by": "category"}),
        json!({"area": {"point": [lon, lat], "radius_m": 800}, "layers": ["cameras"], "group_by": "status"}),
        json!({"area": {"bbox": [w, s, (w + e) / 2.0, (s + n) / 2.0]}, "layers": ["buildings"],
               "filter": "floors BETWEEN 5 AND 30", "limit": 10}),
    ];
    for q in &queries {
        let (sa, ja) = post(&a, q).await;
        let (sb, jb) = post(&b, q).await;
        assert_eq!(sa, 200, "{q}: {ja}");
        assert_eq!(sb, sa, "{q}");
        same(&text(ja, &a), &text(jb, &b), &q.to_string());
    }

    // Exports and tiles: the same bytes.
    let q = json!({"area": {"grid": street}, "layers": ["addresses"]});
    let q2 = json!({"area": {"grid": street}, "layers": ["cameras", "risks"]});
    let mut raw = vec![
        format!("/api/query.csv?q={}", enc(&q.to_string())),
        format!("/api/query.geojson?q={}", enc(&q.to_string())),
        format!("/api/query.geojson?q={}", enc(&q2.to_string())),
    ];
    for z in [12u8, 14, 16] {
        let t = onemap::tiles::mercator::tile_of(z, lon, lat);
        for layer in ["grids", "addresses", "cameras", "risks", "buildings"] {
            raw.push(format!("/tiles/{layer}/{z}/{}/{}.mvt", t.x, t.y));
        }
    }
    let mut full = 0;
    for path in &raw {
        let (sa, ba) = bytes(&a, path).await;
        let (sb, bb) = bytes(&b, path).await;
        // 204: a layer with nothing to show at that zoom.
        assert!(
            sa == 200 || sa == 204,
            "{path}: {sa} {}",
            String::from_utf8_lossy(&ba)
        );
        assert_eq!(sb, sa, "{path}");
        assert!(ba == bb, "{path}: {} vs {} bytes", ba.len(), bb.len());
        full += usize::from(sa == 200 && !ba.is_empty());
    }
    assert!(full >= 12, "only {full} of {} non-empty answers", raw.len());
}
