//! Cold tile build time per zoom: every tile over the data (sampled evenly
//! where a zoom has more than `ONEMAP_BENCH_SAMPLE` tiles, default 400),
//! rendered once each without a cache, `all` layers, one thread.
//!
//! ```text
//! cargo bench --bench tiles                                   # district
//! ONEMAP_BENCH_STORE=/tmp/city.gpkg cargo bench --bench tiles # city
//! ```
//! Prints p50, p99 and max per zoom, and tile sizes.

use onemap::index::Catalog;
use onemap::store::gpkg::GpkgStore;
use onemap::tiles::mercator::{TileId, tile_of};
use onemap::tiles::{TileConfig, render, resolve_layers};
use std::path::PathBuf;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pct(v: &[f64], p: f64) -> f64 {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = match std::env::var("ONEMAP_BENCH_STORE") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-district.gpkg");
            if !p.exists() {
                let g = onemap::demo::generate(
                    &onemap::demo::Scale::parse("district")
                        .ok_or_else(|| anyhow::anyhow!("scale"))?,
                    1,
                )?;
                let s = GpkgStore::open(&p).await?;
                onemap::demo::write(&s, g).await?;
                s.close().await;
            }
            p
        }
    };
    let sample: usize = std::env::var("ONEMAP_BENCH_SAMPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let store = GpkgStore::open(&path).await?;
    let cat = Catalog::load(&store).await?;
    let cfg = TileConfig::default();
    let all = resolve_layers(&cat, "all").map_err(anyhow::Error::msg)?;
    let grids = cat
        .layer("grids")
        .ok_or_else(|| anyhow::anyhow!("no grids"))?;
    let b = grids.bbox.ok_or_else(|| anyhow::anyhow!("empty"))?;
    println!("store {}", path.display());
    println!("zoom  tiles  p50 ms  p99 ms  max ms  mean KB  max KB");
    for z in 8..=16u8 {
        let lo = tile_of(z, b.min().x, b.max().y);
        let hi = tile_of(z, b.max().x, b.min().y);
        let mut tiles: Vec<TileId> = (lo.x..=hi.x)
            .flat_map(|x| (lo.y..=hi.y).map(move |y| TileId { z, x, y }))
            .collect();
        if tiles.len() > sample {
            let step = tiles.len() as f64 / sample as f64;
            tiles = (0..sample)
                .map(|i| tiles[(i as f64 * step) as usize])
                .collect();
        }
        let mut ms = Vec::with_capacity(tiles.len());
        let mut sizes = Vec::with_capacity(tiles.len());
        for t in &tiles {
            let t0 = Instant::now();
            let bytes = render(&cat, &cfg, &all, *t);
            ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            sizes.push(bytes.len());
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        let mean_kb = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64 / 1024.0;
        let max_kb = *sizes.iter().max().unwrap_or(&0) as f64 / 1024.0;
        println!(
            "{z:4} {:6} {:7.2} {:7.2} {:7.2} {:8.1} {:7.1}",
            tiles.len(),
            pct(&ms, 0.5),
            pct(&ms, 0.99),
            ms.last().copied().unwrap_or(0.0),
            mean_kb,
            max_kb
        );
    }
    Ok(())
}
