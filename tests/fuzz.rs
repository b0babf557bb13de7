//! Bounded fuzzing of every parser a request reaches: CQL2 (text and
//! JSON) through the compiler, GeoJSON query areas, plan operations and
//! tile paths. Inputs are mutations of valid seeds by a deterministic
//! generator (same inputs every run, so a failure reproduces); each must
//! be answered (accepted or refused with a message) without a panic, and
//! the slowest is printed. Run with more cases: `FUZZ_CASES=100000 cargo
//! test --release --test fuzz -- --nocapture`.

mod common;

use serde_json::{Value as J, json};
use std::time::{Duration, Instant};

/// SplitMix64: small, deterministic, good enough to mutate inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

fn cases() -> usize {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000)
}

const TOKENS: &[&str] = &[
    "(",
    ")",
    "((",
    "))",
    " NOT ",
    " AND ",
    " OR ",
    "'",
    "''",
    "\"",
    ",",
    "-",
    "+",
    "*",
    "/",
    " IN (",
    " BETWEEN ",
    " LIKE ",
    " IS NULL",
    " = ",
    " <> ",
    " >= ",
    "S_INTERSECTS(",
    "POLYGON((",
    "POINT(",
    "BBOX(",
    "TIMESTAMP('",
    "DATE('",
    "INTERVAL(",
    "CASEI(",
    "1e308",
    "-1e-308",
    "NaN",
    "inf",
    "9223372036854775808",
    "geometry",
    "category",
    "level",
    "id",
    "状态",
    "\u{0}",
    "\u{feff}",
    "\\",
    "..",
    "%",
    "_",
    "A_CONTAINS(",
    "TRUE",
    "null",
    "))))",
];

const SEEDS: &[&str] = &[
    "category = 'fire' AND level <= 2",
    "NOT (status IN ('open', 'closed')) OR level BETWEEN 1 AND 3",
    "S_INTERSECTS(geometry, POLYGON((112.9 28.1, 113.0 28.1, 113.0 28.2, 112.9 28.1)))",
    "T_AFTER(inspected_at, TIMESTAMP('2026-01-01T00:00:00Z'))",
    "CASEI(name) LIKE casei('%河%') AND id > 10",
    "level * 2 + 1 > 3 AND department IS NOT NULL",
];

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(s.len() + 1);
        match rng.below(5) {
            0 => {
                let t: Vec<char> = rng.pick(TOKENS).chars().collect();
                s.splice(at..at, t);
            }
            1 if !s.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(s.len());
                s.drain(at.min(end)..end);
            }
            2 => {
                // Repeat a token many times (nesting).
                let t = rng.pick(TOKENS).repeat(1 + rng.below(200));
                let t: Vec<char> = t.chars().collect();
                s.splice(at..at, t);
            }
            3 => s.truncate(at),
            _ => {
                let c = char::from_u32(rng.next() as u32 % 0x3000).unwrap_or('x');
                s.insert(at.min(s.len()), c);
            }
        }
    }
    s.into_iter().collect()
}

/// Runs `f` on each input, catching panics; returns the slowest input.
fn run_all<T>(inputs: Vec<T>, mut f: impl FnMut(&T)) -> (Duration, usize)
where
    T: std::fmt::Debug,
{
    let mut worst = (Duration::ZERO, 0);
    for (i, x) in inputs.iter().enumerate() {
        let t = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(x)));
        let dt = t.elapsed();
        if r.is_err() {
            panic!("input {i} panicked: {x:?}");
        }
        if dt > worst.0 {
            worst = (dt, i);
        }
    }
    worst
}

#[test]
fn cql2_text_and_json_never_panic() {
    use onemap::model::builtin;
    use onemap::query::filter::{Lang, compile, parse};
    let defs: Vec<_> = [builtin::RISKS, builtin::EVENTS, builtin::CAMERAS]
        .iter()
        .filter_map(|n| builtin::layer(n))
        .collect();
    let mut rng = Rng(13);
    let inputs: Vec<String> = (0..cases())
        .map(|i| mutate(&mut rng, SEEDS[i % SEEDS.len()]))
        .collect();
    let mut accepted = 0usize;
    let (worst, at) = run_all(inputs.clone(), |src| {
        if let Ok(e) = parse(src, Lang::Text) {
            for d in &defs {
                if compile(&e, d).is_ok() {
                    accepted += 1;
                }
            }
            // What parses as text also goes through cql2-json.
            if let Ok(j) = serde_json::to_string(&e) {
                let _ = parse(&j, Lang::Json).map(|e| compile(&e, &defs[0]));
            }
        }
    });
    eprintln!(
        "cql2: {} inputs, {accepted} compiled, slowest {worst:?}: {:?}",
        inputs.len(),
        &inputs[at].chars().take(60).collect::<String>()
    );
    // Mutated JSON.
    let mut rng = Rng(14);
    let json_seeds = [
        r#"{"op":"and","args":[{"op":"=","args":[{"property":"category"},"fire"]},{"op":"<","args":[{"property":"level"},3]}]}"#,
        r#"{"op":"s_intersects","args":[{"property":"geometry"},{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}]}"#,
    ];
    let inputs: Vec<String> = (0..cases())
        .map(|i| mutate(&mut rng, json_seeds[i % 2]))
        .collect();
    let (worst, _) = run_all(inputs, |src| {
        if let Ok(e) = parse(src, Lang::Json) {
            let _ = compile(&e, &defs[0]);
        }
    });
    eprintln!("cql2-json: slowest {worst:?}");
}

/// A random GeoJSON-ish area: valid, broken or hostile.
fn random_area(rng: &mut Rng) -> J {
    let n = 3 + rng.below(60);
    let mut ring: Vec<J> = (0..n)
        .map(|_| {
            let x = 112.8 + rng.below(1000) as f64 / 5000.0;
            let y = 28.1 + rng.below(1000) as f64 / 5000.0;
            json!([x, y])
        })
        .collect();
    if rng.below(3) > 0 {
        ring.push(ring[0].clone());
    }
    let mut g = json!({"type": "Polygon", "coordinates": [ring]});
    match rng.below(12) {
        0 => g["type"] = json!("MultiPolygon"),
        1 => g["coordinates"] = json!([[[f64::MAX, 0]]]),
        2 => g["coordinates"][0][0] = json!(["a", null]),
        3 => {
            g = json!({"grid": rng.pick(&["", "0", "430102001", "x".repeat(200).as_str()]).to_string()})
        }
        4 => {
            g = json!({"bbox": [rng.below(400) as f64 - 200.0, -10, 10, rng.below(200) as f64 - 100.0]})
        }
        5 => g = json!({"point": [112.9, 28.2], "radius_m": rng.pick(&[0.0, -1.0, 1e9, 500.0])}),
        6 => g["coordinates"] = json!([[[[[[[]]]]]]]),
        7 => g = json!({"type": "GeometryCollection", "geometries": [g]}),
        8 => g = json!([g]),
        _ => {}
    }
    g
}

#[tokio::test]
async fn query_areas_and_plan_ops_never_panic() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 3).await;
    let cat = onemap::index::Catalog::load(store.as_ref())
        .await
        .expect("catalog");
    let mut rng = Rng(21);
    let areas: Vec<J> = (0..cases()).map(|_| random_area(&mut rng)).collect();
    let mut ok = 0usize;
    let (worst, _) = run_all(areas.clone(), |a| {
        if onemap::query::Area::parse(a, &cat).is_ok() {
            ok += 1;
        }
        // The same geometry as a plan's grid outline.
        let _ = onemap::plan::parse_area(a, "grid");
    });
    eprintln!(
        "areas: {} inputs, {ok} valid, slowest {worst:?}",
        areas.len()
    );
    assert!(ok > 0, "the generator made no valid area at all");

    // Plan operation bodies: mutated JSON into the operation type.
    let seeds = [
        r#"{"op":"move_vertex","from":[112.9,28.2],"to":[112.91,28.21]}"#,
        r#"{"op":"split","code":"430102001001","line":[[112.9,28.1],[112.95,28.3]]}"#,
        r#"{"op":"merge","codes":["430102001001","430102001002"]}"#,
        r#"{"op":"replace_geometry","grids":[{"code":"4301020010010001","geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}]}"#,
        r#"{"op":"attributes","code":"430102001001","set":{"name":"x","population":3}}"#,
    ];
    let mut rng = Rng(22);
    let bodies: Vec<String> = (0..cases())
        .map(|i| mutate(&mut rng, seeds[i % seeds.len()]))
        .collect();
    let (worst, _) = run_all(bodies, |b| {
        let _ = serde_json::from_str::<onemap::plan::OpBody>(b);
    });
    eprintln!("plan ops: slowest {worst:?}");
}

#[tokio::test]
async fn tile_paths_never_5xx() {
    let dir = common::tempdir();
    let (_, store) = common::demo_store(dir.path(), "small", 3).await;
    let srv = common::serve(store, common::config()).await;
    let mut rng = Rng(31);
    let layers = [
        "all",
        "grids",
        "grids,cameras",
        "",
        ",",
        "nope",
        "all,all",
        "../etc",
        "%00",
        "grids,,",
        "星",
        "onemap_plans",
    ];
    let nums = [
        "0",
        "1",
        "14",
        "22",
        "23",
        "31",
        "32",
        "-1",
        "4294967296",
        "99999999999999999999",
        "1e3",
        "0x10",
        " 1",
        "",
        "NaN",
        "13330",
        "6900",
    ];
    let exts = [".mvt", ".pbf", "", ".mvt.gz", ".json", ".MVT"];
    let n = (cases() / 10).max(100);
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..n {
        let path = format!(
            "/tiles/{}/{}/{}/{}{}",
            common::url_escape(rng.pick::<&str>(&layers)),
            common::url_escape(rng.pick::<&str>(&nums)),
            common::url_escape(rng.pick::<&str>(&nums)),
            common::url_escape(rng.pick::<&str>(&nums)),
            rng.pick(&exts)
        );
        let r = srv.get(&path).await;
        let s = r.status().as_u16();
        assert!(s < 500, "{path}: {s}");
        *statuses.entry(s).or_insert(0) += 1;
    }
    eprintln!("tile paths: {n} requests, statuses {statuses:?}");
    let r = srv.get("/healthz").await;
    assert_eq!(r.status(), 200);
}
