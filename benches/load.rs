//! Start-up cost: read every layer from the GeoPackage store, build the
//! R-trees, and assign every point to its grid (the derived values).
//!
//! ```text
//! cargo bench --bench load                               # district scale
//! ONEMAP_BENCH_SCALE=city cargo bench --bench load       # city scale
//! ONEMAP_BENCH_STORE=path.gpkg cargo bench --bench load  # any store
//! ```
//!
//! The demo store is generated once into `target/` and reused. Prints wall
//! times per phase and the process's peak resident memory (VmHWM), which is
//! what a server started on this store would need.

use onemap::index::{Catalog, NO_GRID, grids::GridTree};
use onemap::model::builtin;
use onemap::store::Store;
use onemap::store::gpkg::GpkgStore;
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

/// mimalloc: loading a store allocates and frees millions of small values
/// across the driver's threads, where glibc's allocator spends its time in
/// consolidation and locks (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scale = std::env::var("ONEMAP_BENCH_SCALE").unwrap_or_else(|_| "district".into());
    let path = match std::env::var("ONEMAP_BENCH_STORE") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("target/bench-{scale}.gpkg"));
            if !p.exists() {
                eprintln!("generating the {scale} demo into {} …", p.display());
                let t = Instant::now();
                let sc =
                    onemap::demo::Scale::parse(&scale).ok_or_else(|| anyhow::anyhow!("scale"))?;
                let g = onemap::demo::generate(&sc, 1)?;
                let s = GpkgStore::open(&p).await?;
                onemap::demo::write(&s, g).await?;
                s.close().await;
                eprintln!("generated in {:.1}s", t.elapsed().as_secs_f64());
            }
            p
        }
    };
    // Measure in a fresh process image as far as possible: nothing above
    // touched the catalog, but generation raised the peak, so report it only
    // when the store already existed.
    let rss_before = peak_rss_mb();
    let store = GpkgStore::open(&path).await?;

    let t0 = Instant::now();
    let seq = store.last_seq().await?;
    let defs = store.layers().await?;
    let loads = defs.iter().map(|d| store.load_layer(&d.name));
    let features = futures::future::try_join_all(loads).await?;
    let read_s = t0.elapsed().as_secs_f64();
    let n: usize = features.iter().map(|f| f.len()).sum();

    let t1 = Instant::now();
    let catalog = Catalog::build(defs.into_iter().zip(features).collect(), seq);
    let build_s = t1.elapsed().as_secs_f64();
    let total_s = t0.elapsed().as_secs_f64();

    // The assignment alone, again, for its own figure.
    let grids = catalog
        .layer(builtin::GRIDS)
        .ok_or_else(|| anyhow::anyhow!("no grids"))?;
    let addrs = catalog
        .layer(builtin::ADDRESSES)
        .ok_or_else(|| anyhow::anyhow!("no addresses"))?;
    let t2 = Instant::now();
    let tree = GridTree::build(grids);
    let tree_s = t2.elapsed().as_secs_f64();
    let t3 = Instant::now();
    let assigned: usize = addrs
        .features
        .chunks()
        .par_iter()
        .map(|c| {
            c.iter()
                .filter(|f| {
                    onemap::index::representative_point(&f.geometry)
                        .is_some_and(|p| tree.locate(p) != NO_GRID)
                })
                .count()
        })
        .sum();
    let assign_s = t3.elapsed().as_secs_f64();
    let micro = tree
        .nodes
        .iter()
        .filter(|n| n.level == onemap::model::GridLevel::Micro)
        .count();

    println!("store            {}", path.display());
    println!(
        "features         {n} ({} addresses, {micro} micro-grids)",
        addrs.features.len()
    );
    println!("read from store  {read_s:.2} s");
    println!("index + derive   {build_s:.2} s");
    println!("load total       {total_s:.2} s");
    println!("grid tree        {tree_s:.3} s");
    println!(
        "assign addresses {assign_s:.2} s ({assigned} assigned, {:.0} points/s on {} threads)",
        addrs.features.len() as f64 / assign_s,
        rayon::current_num_threads()
    );
    if rss_before < 50.0 {
        println!("peak RSS         {:.0} MB", peak_rss_mb());
    } else {
        println!("peak RSS         n/a (this run generated the store; run again)");
    }
    drop(catalog);
    Ok(())
}
