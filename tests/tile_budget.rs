//! No tile of the city-scale demo exceeds 500 KB, at any zoom.
//!
//! The city (4 M addresses, 57 k micro-grids, 300 k work orders) is generated
//! in memory and indexed without a store. Every tile is rendered at zooms
//! 0–12; from 13 to 16, where the city has thousands of tiles, the densest
//! ones are rendered: those holding the most features (points by position,
//! polygons by their vertices), which is where a tile would grow past the
//! budget. Its own test binary, so its memory does not add to other tests'.

use onemap::index::{Catalog, representative_point};
use onemap::tiles::mercator::{TileId, tile_of};
use onemap::tiles::{TileConfig, render, resolve_layers};
use std::collections::HashMap;

const BUDGET: usize = 500 * 1024;

#[test]
fn no_city_tile_exceeds_500_kb() {
    let t0 = std::time::Instant::now();
    let sc = onemap::demo::Scale::parse("city").unwrap();
    let layers = onemap::demo::generate(&sc, 1)
        .unwrap()
        .into_layers()
        .unwrap();
    let cat = Catalog::build(layers, 0);
    eprintln!("city generated and indexed in {:?}", t0.elapsed());
    let cfg = TileConfig::default();
    let all = resolve_layers(&cat, "all").unwrap();
    let bbox = cat
        .layers
        .iter()
        .filter_map(|l| l.bbox)
        .reduce(|a, b| {
            geo::Rect::new(
                (a.min().x.min(b.min().x), a.min().y.min(b.min().y)),
                (a.max().x.max(b.max().x), a.max().y.max(b.max().y)),
            )
        })
        .unwrap();
    let mut worst = Vec::new();
    for z in 0..=16u8 {
        let lo = tile_of(z, bbox.min().x, bbox.max().y);
        let hi = tile_of(z, bbox.max().x, bbox.min().y);
        let tiles: Vec<TileId> = if z <= 12 {
            (lo.x..=hi.x)
                .flat_map(|x| (lo.y..=hi.y).map(move |y| TileId { z, x, y }))
                .collect()
        } else {
            // The densest tiles: count features per tile.
            let mut weight: HashMap<(u32, u32), usize> = HashMap::new();
            for l in &cat.layers {
                for f in &l.features {
                    if let Some(p) = representative_point(&f.geometry) {
                        let t = tile_of(z, p.x(), p.y());
                        *weight.entry((t.x, t.y)).or_default() +=
                            1 + geo::CoordsIter::coords_count(&f.geometry) / 4;
                    }
                }
            }
            let mut v: Vec<((u32, u32), usize)> = weight.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v.into_iter()
                .take(8)
                .map(|((x, y), _)| TileId { z, x, y })
                .collect()
        };
        let mut max = (0usize, tiles[0]);
        for t in &tiles {
            let n = render(&cat, &cfg, &all, *t).len();
            if n > max.0 {
                max = (n, *t);
            }
            if n > BUDGET {
                panic!(
                    "tile {}/{}/{} is {} KB: {}",
                    t.z,
                    t.x,
                    t.y,
                    n / 1024,
                    breakdown(&cat, &cfg, &all, *t)
                );
            }
        }
        eprintln!(
            "z{z:2}: {:4} tiles, largest {:6.1} KB ({}/{}/{}: {})",
            tiles.len(),
            max.0 as f64 / 1024.0,
            max.1.z,
            max.1.x,
            max.1.y,
            breakdown(&cat, &cfg, &all, max.1)
        );
        worst.push(max.0);
    }
    // The budget is met with room, and tiles are not trivially empty.
    assert!(worst.iter().all(|&n| n > 0));
    eprintln!("done in {:?}", t0.elapsed());
}

/// KB per layer of a tile, for the messages.
fn breakdown(cat: &Catalog, cfg: &TileConfig, all: &[String], t: TileId) -> String {
    all.iter()
        .map(|l| (l, render(cat, cfg, std::slice::from_ref(l), t).len()))
        .filter(|(_, n)| *n > 0)
        .map(|(l, n)| format!("{l} {:.0}", n as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
}
