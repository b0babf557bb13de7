//! OGC API – Features under `/ogc`: the documents, paging, bbox, datetime,
//! properties, CQL2 filters (text and JSON, spatial functions) against
//! brute force and `/api/query`, strict parameters, and GDAL's OAPIF driver
//! reading every collection and filtering on the server.

mod common;

use geo::{BoundingRect, Contains, Geometry, Intersects, Point, Rect};
use onemap::model::{Feature, Value, builtin};
use onemap::store::Store;
use serde_json::{Value as J, json};
use std::collections::{BTreeMap, BTreeSet};

/// Every id of an items query, following `next` links; checks
/// numberMatched/numberReturned on the way.
async fn all_ids(srv: &common::TestServer, first: &str) -> BTreeSet<i64> {
    let mut url = format!("{}{first}", srv.base);
    let mut out = BTreeSet::new();
    let mut matched = None;
    for _ in 0..10_000 {
        let r = srv.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}: {}", r.text().await.unwrap());
        assert_eq!(r.headers()["content-type"], "application/geo+json");
        let j: J = r.json().await.unwrap();
        let feats = j["features"].as_array().unwrap();
        assert_eq!(j["numberReturned"].as_u64().unwrap() as usize, feats.len());
        let m = j["numberMatched"].as_u64().unwrap();
        assert_eq!(
            *matched.get_or_insert(m),
            m,
            "numberMatched changed between pages"
        );
        for f in feats {
            assert!(
                out.insert(f["id"].as_i64().unwrap()),
                "id twice across pages"
            );
        }
        let next = j["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next")
            .map(|l| l["href"].as_str().unwrap().to_string());
        match next {
            Some(n) => {
                assert!(n.starts_with(&srv.base), "next link {n} is not absolute");
                url = n;
            }
            None => {
                assert_eq!(out.len() as u64, m, "numberMatched vs features");
                return out;
            }
        }
    }
    panic!("paging did not end");
}

fn text(def: &onemap::model::LayerDef, f: &Feature, p: &str) -> Option<String> {
    match f.get(def, p) {
        Some(Value::Text(s)) => Some(s.to_string()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_paging_and_filters() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 21).await;
    let srv = common::serve(store.clone(), common::config()).await;

    // Landing page and every link on it resolve, with the declared types.
    let (s, landing) = srv.get_json("/ogc").await;
    assert_eq!(s, 200);
    for rel in ["self", "service-desc", "conformance", "data"] {
        let l = landing["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == rel)
            .unwrap_or_else(|| panic!("no {rel} link"));
        let r = srv
            .client
            .get(l["href"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{rel}");
        assert_eq!(
            r.headers()["content-type"],
            l["type"].as_str().unwrap(),
            "{rel}"
        );
    }
    let (_, conf) = srv.get_json("/ogc/conformance").await;
    let classes: Vec<&str> = conf["conformsTo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in [
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
        "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    ] {
        assert!(classes.contains(&c), "{c}");
    }
    // Not declared: what we do not do (HTML, array functions, accents);
    // Part 2 (CRS) is declared since #15 (`link_headers_and_crs`).
    assert!(!classes.iter().any(|c| c.ends_with("/html")
        || c.ends_with("array-functions")
        || c.ends_with("accent-insensitive-comparison")));

    // OpenAPI: 3.0, every $ref local, every collection id enumerated.
    let (_, api) = srv.get_json("/ogc/api").await;
    assert!(api["openapi"].as_str().unwrap().starts_with("3.0"));
    let text_api = api.to_string();
    for (i, _) in text_api.match_indices("\"$ref\":\"") {
        assert!(
            text_api[i + 8..].starts_with("#/components/"),
            "remote $ref at {}",
            &text_api[i..i + 60]
        );
    }
    let ids = &api["components"]["parameters"]["collectionId"]["schema"]["enum"];
    assert!(ids.as_array().unwrap().iter().any(|i| i == "events"));

    // Collections: one per layer, with extents; each collection resolves.
    let (_, cols) = srv.get_json("/ogc/collections").await;
    let list = cols["collections"].as_array().unwrap();
    let layers = store.layers().await.unwrap();
    assert_eq!(list.len(), layers.len());
    for c in list {
        let id = c["id"].as_str().unwrap();
        let (s, one) = srv.get_json(&format!("/ogc/collections/{id}")).await;
        assert_eq!(s, 200);
        assert_eq!(one["id"], id);
        assert_eq!(
            one["extent"]["spatial"]["bbox"][0]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }
    let (_, ev) = srv.get_json("/ogc/collections/events").await;
    assert!(ev["extent"]["temporal"]["interval"][0][0].is_string());

    // Paging through a whole layer gives every id once.
    let cameras = store.load_layer(builtin::CAMERAS).await.unwrap();
    let want: BTreeSet<i64> = cameras.iter().map(|f| f.id).collect();
    assert_eq!(
        all_ids(&srv, "/ogc/collections/cameras/items?limit=7").await,
        want
    );
    // The default page is 100.
    let (_, page) = srv.get_json("/ogc/collections/addresses/items").await;
    assert_eq!(page["numberReturned"], 100);

    // bbox against brute force (points on and in).
    let grids = store.load_layer(builtin::GRIDS).await.unwrap();
    let ext = grids[0].geometry.bounding_rect().unwrap();
    let (cx, cy) = (ext.center().x, ext.center().y);
    let (w, h) = (ext.width() / 5.0, ext.height() / 5.0);
    let rect = Rect::new((cx - w, cy - h), (cx + w, cy + h));
    let bbox = format!("{},{},{},{}", cx - w, cy - h, cx + w, cy + h);
    let buildings = store.load_layer(builtin::BUILDINGS).await.unwrap();
    let want: BTreeSet<i64> = buildings
        .iter()
        .filter(|f| f.geometry.intersects(&rect))
        .map(|f| f.id)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        all_ids(
            &srv,
            &format!("/ogc/collections/buildings/items?bbox={bbox}&limit=50")
        )
        .await,
        want
    );

    // datetime on events (created_at) against brute force.
    let events = store.load_layer(builtin::EVENTS).await.unwrap();
    let edef = builtin::layer(builtin::EVENTS).unwrap();
    let want: BTreeSet<i64> = events
        .iter()
        .filter(|f| {
            let t = text(&edef, f, "created_at").unwrap();
            ("2026-10-01".."2026-10-16").contains(&t.as_str())
        })
        .map(|f| f.id)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        all_ids(
            &srv,
            "/ogc/collections/events/items?datetime=2026-10-01T00:00:00Z/2026-10-15T23:59:59Z&limit=1000"
        )
        .await,
        want
    );

    // properties: only those named.
    let (_, one) = srv
        .get_json("/ogc/collections/events/items?limit=1&properties=status,category")
        .await;
    let props = one["features"][0]["properties"].as_object().unwrap();
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["category", "status"]);

    // One item by id, and one that is not there.
    let id = cameras[3].id;
    let r = srv
        .get(&format!("/ogc/collections/cameras/items/{id}"))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("etag"));
    let f: J = r.json().await.unwrap();
    assert_eq!(f["id"], id);
    common::expect_problem(
        srv.get("/ogc/collections/cameras/items/999999999").await,
        404,
    )
    .await;
    common::expect_problem(srv.get("/ogc/collections/nope/items").await, 404).await;
    common::expect_problem(srv.get("/ogc/collections/nope").await, 404).await;

    // Queryables: a JSON Schema naming the properties and the geometry.
    let r = srv.get("/ogc/collections/events/queryables").await;
    assert_eq!(r.headers()["content-type"], "application/schema+json");
    let q: J = r.json().await.unwrap();
    assert_eq!(q["properties"]["created_at"]["format"], "date-time");
    assert_eq!(q["properties"]["geometry"]["format"], "geometry-point");

    // Filters: text and JSON, spatial functions, the same ids as /api/query
    // with the same filter and as brute force.
    let poly = format!(
        "POLYGON(({a} {b}, {c} {b}, {c} {d}, {a} {d}, {a} {b}))",
        a = cx - w,
        b = cy - h,
        c = cx + w,
        d = cy + h
    );
    let rdef = builtin::layer(builtin::RISKS).unwrap();
    let risks = store.load_layer(builtin::RISKS).await.unwrap();
    let inside = |f: &Feature| -> bool {
        match &f.geometry {
            Geometry::Point(p) => geo::Polygon::from(rect).contains(p),
            g => geo::Polygon::from(rect).contains(g),
        }
    };
    let level_le2 = |f: &Feature| {
        f.get(&rdef, "level")
            .and_then(Value::as_i64)
            .is_some_and(|l| l <= 2)
    };
    let some_building = &buildings[buildings.len() / 2];
    let probe: Point = geo::InteriorPoint::interior_point(&some_building.geometry).unwrap();
    type Case<'a> = (&'a str, String, &'a str, Box<dyn Fn(&Feature) -> bool + 'a>);
    let cases: Vec<Case> = vec![
        (
            "risks",
            format!("S_WITHIN(geometry, {poly}) AND level <= 2"),
            "cql2-text",
            Box::new(|f: &Feature| inside(f) && level_le2(f)),
        ),
        (
            "risks",
            json!({"op": "and", "args": [
                {"op": "s_within", "args": [{"property": "geometry"}, {"bbox": [cx - w, cy - h, cx + w, cy + h]}]},
                {"op": "<=", "args": [{"property": "level"}, 2]}]})
            .to_string(),
            "cql2-json",
            Box::new(|f: &Feature| inside(f) && level_le2(f)),
        ),
        (
            "buildings",
            format!("S_CONTAINS(geometry, POINT({} {}))", probe.x(), probe.y()),
            "cql2-text",
            Box::new(|f: &Feature| f.geometry.contains(&probe)),
        ),
        (
            "buildings",
            format!("S_INTERSECTS(geometry, {poly})"),
            "cql2-text",
            Box::new(|f: &Feature| f.geometry.intersects(&geo::Polygon::from(rect))),
        ),
    ];
    let all_risks_area = json!({"bbox": [ext.min().x, ext.min().y, ext.max().x, ext.max().y]});
    for (layer, filter, lang, pred) in &cases {
        let feats = if *layer == "risks" {
            &risks
        } else {
            &buildings
        };
        let want: BTreeSet<i64> = feats.iter().filter(|f| pred(f)).map(|f| f.id).collect();
        assert!(!want.is_empty(), "{filter}");
        let got = all_ids(
            &srv,
            &format!(
                "/ogc/collections/{layer}/items?filter={}&filter-lang={lang}&limit=25",
                common::url_escape(filter)
            ),
        )
        .await;
        assert_eq!(got, want, "{filter}");
        // /api/query with the same filter over the whole district agrees.
        let f: J = if *lang == "cql2-json" {
            serde_json::from_str(filter).unwrap()
        } else {
            json!(filter)
        };
        let q: J = srv
            .client
            .post(format!("{}/api/query", srv.base))
            .json(&json!({"area": all_risks_area, "layers": [layer], "filter": f, "limit": 10000}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let api: BTreeSet<i64> = q["layers"][layer]["features"]["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_i64().unwrap())
            .collect();
        assert_eq!(api, want, "/api/query {filter}");
    }

    // Strict parameters and bad values: 400 naming the fault.
    for (path, expect) in [
        ("/ogc/collections/cameras/items?colour=red", "colour"),
        ("/ogc/collections/cameras/items?limit=0", "limit"),
        ("/ogc/collections/cameras/items?limit=10001", "limit"),
        ("/ogc/collections/cameras/items?limit=ten", "limit"),
        (
            "/ogc/collections/cameras/items?limit=5&limit=6",
            "more than once",
        ),
        ("/ogc/collections/cameras/items?bbox=1,2,3", "bbox"),
        (
            "/ogc/collections/cameras/items?bbox=113,28,112,29",
            "west > east",
        ),
        (
            "/ogc/collections/addresses/items?datetime=2026-01-01",
            "no time",
        ),
        (
            "/ogc/collections/events/items?datetime=yesterday",
            "datetime",
        ),
        ("/ogc/collections/events/items?datetime=../..", "datetime"),
        ("/ogc/collections/events/items?properties=colour", "colour"),
        (
            "/ogc/collections/events/items?filter=colour%3D1",
            "unknown property",
        ),
        (
            "/ogc/collections/events/items?filter=status%3D",
            "cql2-text",
        ),
        (
            "/ogc/collections/events/items?filter=status%3D%27x%27&filter-lang=sql",
            "filter-lang",
        ),
        (
            "/ogc/collections/events/items?filter-lang=cql2-text",
            "without a filter",
        ),
        (
            "/ogc/collections/events/items?filter=status%3D%27x%27&filter-crs=EPSG:4490",
            "filter-crs",
        ),
        ("/ogc/collections?limit=3", "limit"),
        ("/ogc/conformance?f=html", "JSON only"),
    ] {
        let d = common::expect_problem(srv.get(path).await, 400).await;
        let detail = d["detail"].as_str().unwrap();
        assert!(
            detail.contains(expect),
            "{path}: {detail:?} does not name {expect:?}"
        );
    }
    srv.running.stop().await.unwrap();
}

/// GDAL's OAPIF driver (what QGIS reads OGC API – Features through): every
/// collection with its count, and a `-where` it sends to the server as CQL
/// text giving the ids `/api/query` gives.
#[tokio::test(flavor = "multi_thread")]
async fn gdal_reads_every_collection_and_filters_on_the_server() {
    let Some(ogrinfo) = common::ogrinfo() else {
        return;
    };
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 22).await;
    // A department token, sent as README says: Basic with the token as
    // the password (GDAL's stock settings).
    let token = common::token(store.as_ref(), onemap::auth::Role::Department, &[]).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let url = format!("OAPIF:{}/ogc", srv.base);
    let run = |args: Vec<String>| {
        let userpwd = format!("gdal:{token}");
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(ogrinfo)
                .args(&args)
                .env("CPL_DEBUG", "ON")
                .env("GDAL_HTTP_AUTH", "BASIC")
                .env("GDAL_HTTP_USERPWD", userpwd)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(out.status.success(), "ogrinfo {args:?}: {stderr}");
            assert!(
                !stderr.contains("ERROR") && !stdout.contains("ERROR"),
                "ogrinfo {args:?} reported an error: {stderr}"
            );
            (stdout, stderr)
        })
    };

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for def in store.layers().await.unwrap() {
        counts.insert(
            def.name.clone(),
            store.load_layer(&def.name).await.unwrap().len(),
        );
    }
    for (layer, n) in &counts {
        let (out, _) = run(vec!["-ro".into(), "-so".into(), url.clone(), layer.clone()])
            .await
            .unwrap();
        assert!(
            out.contains(&format!("Feature Count: {n}")),
            "{layer}: want {n} features in\n{out}"
        );
        assert!(out.contains("Extent: ("), "{layer}: no extent in\n{out}");
    }

    // A where clause GDAL translates to CQL text and sends as filter=.
    let events = store.load_layer(builtin::EVENTS).await.unwrap();
    let edef = builtin::layer(builtin::EVENTS).unwrap();
    let category = text(&edef, &events[0], "category").unwrap();
    let where_ = format!("category = '{category}' AND status <> 'closed'");
    let (out, err) = run(vec![
        "-ro".into(),
        "-q".into(),
        url.clone(),
        "events".into(),
        "-where".into(),
        where_.clone(),
    ])
    .await
    .unwrap();
    assert!(
        err.contains("filter=") && !err.contains("client side"),
        "GDAL did not filter on the server:\n{err}"
    );
    let got: BTreeSet<i64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("OGRFeature(events):"))
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let grids = store.load_layer(builtin::GRIDS).await.unwrap();
    let ext = grids[0].geometry.bounding_rect().unwrap();
    let q: J = srv
        .client
        .post(format!("{}/api/query", srv.base))
        .json(&json!({
            "area": {"bbox": [ext.min().x, ext.min().y, ext.max().x, ext.max().y]},
            "layers": ["events"],
            "filter": where_,
            "limit": 10000
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want: BTreeSet<i64> = q["layers"]["events"]["features"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    srv.running.stop().await.unwrap();
}

/// Part 1's `Link` headers (self, next, prev, and the collection) beside
/// the body's links, and Part 2's CRSs: CGCS2000 and EPSG:4326 answers are
/// latitude first with `Content-Crs`, a `bbox-crs` box the same.
#[tokio::test(flavor = "multi_thread")]
async fn link_headers_and_crs() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 22).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let get = |path: String| {
        let c = srv.client.clone();
        let base = srv.base.clone();
        async move {
            let r = c.get(format!("{base}{path}")).send().await.expect("get");
            let status = r.status().as_u16();
            let h = |k: &str| {
                r.headers()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let (link, crs) = (h("link"), h("content-crs"));
            let j: J = r.json().await.unwrap_or(J::Null);
            (status, link, crs, j)
        }
    };
    let rels = |link: &str| -> Vec<(String, String)> {
        link.split(", <")
            .filter_map(|p| {
                let href = p.trim_start_matches('<').split('>').next()?.to_string();
                let rel = p.split("rel=\"").nth(1)?.split('"').next()?.to_string();
                Some((rel, href))
            })
            .collect()
    };
    // First page: self and next in the header, the same hrefs as the body.
    let (s, link, crs, page) = get("/ogc/collections/cameras/items?limit=2".into()).await;
    assert_eq!(s, 200);
    assert_eq!(crs, "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>");
    let h = rels(&link);
    for rel in ["self", "next", "collection"] {
        let body = page["links"]
            .as_array()
            .expect("links")
            .iter()
            .find(|l| l["rel"] == rel)
            .and_then(|l| l["href"].as_str())
            .unwrap_or_else(|| panic!("no {rel} in the body"));
        assert!(
            h.iter().any(|(r, href)| r == rel && href == body),
            "{rel} {body} not in Link: {link}"
        );
    }
    assert!(!h.iter().any(|(r, _)| r == "prev"), "{link}");
    // Follow next by the header alone: prev appears.
    let next = h
        .iter()
        .find(|(r, _)| r == "next")
        .map(|(_, href)| href.clone())
        .expect("next");
    let r = srv.client.get(&next).send().await.expect("next page");
    let link2 = r.headers()["link"].to_str().expect("link").to_string();
    assert!(rels(&link2).iter().any(|(r, _)| r == "prev"), "{link2}");
    // Collections and a collection carry Link too.
    let (_, link, _, _) = get("/ogc/collections/cameras".into()).await;
    assert!(rels(&link).iter().any(|(r, _)| r == "self"), "{link}");
    let (_, link, _, cols) = get("/ogc/collections".into()).await;
    assert!(rels(&link).iter().any(|(r, _)| r == "self"), "{link}");
    let cam = cols["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .find(|c| c["id"] == "cameras")
        .expect("cameras")
        .clone();
    let list: Vec<&str> = cam["crs"]
        .as_array()
        .expect("crs")
        .iter()
        .filter_map(J::as_str)
        .collect();
    assert!(
        list.contains(&"http://www.opengis.net/def/crs/EPSG/0/4490"),
        "{list:?}"
    );
    let (_, _, _, conf) = get("/ogc/conformance".into()).await;
    assert!(
        conf["conformsTo"]
            .as_array()
            .expect("classes")
            .iter()
            .any(|c| c == "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs")
    );

    // CGCS2000: the same features, latitude first, named in Content-Crs.
    let (_, _, _, lonlat) = get("/ogc/collections/grids/items?limit=3".into()).await;
    let cgcs = "http://www.opengis.net/def/crs/EPSG/0/4490";
    let (s, _, crs, latlon) = get(format!(
        "/ogc/collections/grids/items?limit=3&crs={}",
        common::url_escape(cgcs)
    ))
    .await;
    assert_eq!(s, 200);
    assert_eq!(crs, format!("<{cgcs}>"));
    let first = |j: &J| -> Vec<f64> {
        let mut c = &j["geometry"]["coordinates"];
        while c[0].is_array() {
            c = &c[0];
        }
        c.as_array()
            .expect("position")
            .iter()
            .filter_map(J::as_f64)
            .collect()
    };
    for (a, b) in lonlat["features"]
        .as_array()
        .expect("features")
        .iter()
        .zip(latlon["features"].as_array().expect("features"))
    {
        assert_eq!(a["id"], b["id"]);
        let (p, q) = (first(a), first(b));
        assert_eq!((p[0], p[1]), (q[1], q[0]), "feature {}", a["id"]);
    }
    let id = lonlat["features"][0]["id"].as_i64().expect("id");
    let (s, _, crs, one) = get(format!("/ogc/collections/grids/items/{id}?crs=EPSG:4490")).await;
    assert_eq!(s, 200);
    assert_eq!(crs, format!("<{cgcs}>"));
    assert_eq!(first(&one), first(&latlon["features"][0]));

    // A bbox in EPSG:4326 order (south,west,north,east) selects as the
    // same box in CRS84.
    let p = first(&lonlat["features"][0]);
    let (w, s_, e, n) = (p[0] - 0.01, p[1] - 0.01, p[0] + 0.01, p[1] + 0.01);
    let (_, _, _, a) = get(format!(
        "/ogc/collections/addresses/items?limit=1000&bbox={w},{s_},{e},{n}"
    ))
    .await;
    let (st, _, _, b) = get(format!(
        "/ogc/collections/addresses/items?limit=1000&bbox={s_},{w},{n},{e}&bbox-crs={}",
        common::url_escape("http://www.opengis.net/def/crs/EPSG/0/4326")
    ))
    .await;
    assert_eq!(st, 200);
    assert!(a["numberMatched"].as_u64().expect("n") > 0);
    assert_eq!(a["numberMatched"], b["numberMatched"]);
    // Unknown CRSs are a 400 naming the ones there are.
    for q in [
        "crs=EPSG:3857",
        "bbox-crs=EPSG:3857&bbox=0,0,1,1",
        "bbox-crs=EPSG:4326",
    ] {
        let r = srv
            .client
            .get(format!("{}/ogc/collections/cameras/items?{q}", srv.base))
            .send()
            .await
            .expect("get");
        common::expect_problem(r, 400).await;
    }
    srv.running.stop().await.expect("stop");
}
