//! Plans at scale (not a test): a plan over the street with the most
//! micro-grids, one shared inner vertex moved in every grid of the street
//! (each move its own operation), then validation and publish, timed.
//!
//! ```text
//! cargo bench --bench plans                                   # district demo
//! ONEMAP_BENCH_STORE=/tmp/city.gpkg cargo bench --bench plans # city (copied first)
//! ```
//!
//! The store is copied to a temporary file, so the source stays as it is.

use geo::Coord;
use onemap::model::GridLevel;
use onemap::plan::{OpBody, check, to_multi};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let src = match std::env::var("ONEMAP_BENCH_STORE") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) => {
            let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/bench-district.gpkg");
            anyhow::ensure!(
                p.exists(),
                "run `cargo bench --bench load` first (it writes {})",
                p.display()
            );
            p
        }
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("plans.gpkg");
    std::fs::copy(&src, &path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let t = Instant::now();
        let store: Arc<dyn onemap::store::Store> = onemap::store::open(path.to_str().unwrap_or_default()).await?;
        let st = onemap::app::load(store, onemap::app::Config::default()).await?;
        println!("store {} loaded in {:.1} s", src.display(), t.elapsed().as_secs_f64());
        let cat = st.catalog();
        // The street with the most micro-grids.
        let micro_under = |n: u32| -> usize {
            let mut stack = vec![n];
            let mut k = 0;
            while let Some(x) = stack.pop() {
                let node = &cat.grids.nodes[x as usize];
                if node.level == GridLevel::Micro {
                    k += 1;
                }
                stack.extend(node.children.iter().copied());
            }
            k
        };
        let (street, micros) = cat
            .grids
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.level == GridLevel::Street)
            .map(|(i, n)| (n.code.to_string(), micro_under(i as u32)))
            .max_by_key(|x| x.1)
            .ok_or_else(|| anyhow::anyhow!("no street"))?;
        let mut book = st.plans.book(st.store.as_ref()).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let t = Instant::now();
        let id = book
            .create(st.store.as_ref(), &cat, onemap::plan::NewPlan { title: "bench".into(), scope: vec![street.clone()], author: "bench".into() })
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let grids = book.get(id).map_err(|e| anyhow::anyhow!("{e:?}"))?.grids.len();
        println!("plan over street {street}: {grids} draft grids ({micros} micro-grids), created in {:.0} ms", ms(t));
        // One inner shared vertex per grid (not on the grid's boundary).
        let mut moves: Vec<(Coord, Coord)> = Vec::new();
        for n in &cat.grids.nodes {
            if n.level != GridLevel::Grid || !n.code.as_str().starts_with(&street) {
                continue;
            }
            let outer = to_multi(&n.geometry);
            let mut seen: BTreeMap<(u64, u64), (Coord, usize)> = BTreeMap::new();
            for &c in &n.children {
                let m = to_multi(&cat.grids.nodes[c as usize].geometry);
                for p in &m.0 {
                    for v in p.exterior().0.iter().skip(1) {
                        seen.entry((v.x.to_bits(), v.y.to_bits())).or_insert((*v, 0)).1 += 1;
                    }
                }
            }
            if let Some((v, _)) = seen.values().find(|(v, k)| *k >= 2 && !onemap::plan::topo::touches_point(&outer, *v, 0.01)) {
                moves.push((*v, Coord { x: v.x + 0.000004, y: v.y + 0.000003 }));
            }
        }
        let mut op_ms = Vec::new();
        for (from, to) in &moves {
            let t = Instant::now();
            book.operate(st.store.as_ref(), &cat, id, OpBody::MoveVertex { from: [from.x, from.y], to: [to.x, to.y] }, "bench")
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            op_ms.push(ms(t));
        }
        op_ms.sort_by(f64::total_cmp);
        let q = |f: f64| op_ms.get(((op_ms.len() as f64 - 1.0) * f) as usize).copied().unwrap_or(0.0);
        println!("{} move_vertex operations: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", op_ms.len(), q(0.5), q(0.99), q(1.0));
        let plan = book.get(id).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let changes = plan.changes();
        for round in 0..3 {
            let t = Instant::now();
            let world = check::World::new(&cat, &changes).ok_or_else(|| anyhow::anyhow!("no grids"))?;
            let report = check::validate(&world);
            println!(
                "validate #{round}: {:.0} ms; {} changed grids, {} violations, {} features change grid",
                ms(t),
                report.changed.len(),
                report.violations.len(),
                report.moved.len()
            );
            if round == 2 {
                for v in report.violations.iter().take(5) {
                    println!("  {}: {}", v.kind, v.detail);
                }
            }
        }
        let t = Instant::now();
        let out = book.publish(&st, id, "bench", "benchmark").await;
        match out {
            Ok(j) => println!(
                "publish: {:.0} ms (conflict check, validation, one store transaction, catalog update, tile invalidation); grids updated {}, features moved {}",
                ms(t),
                j["grids"]["updated"].as_array().map_or(0, Vec::len),
                j["moved"]
            ),
            Err(e) => println!("publish refused after {:.0} ms: {e:?}", ms(t)),
        }
        anyhow::Ok(())
    })
}
