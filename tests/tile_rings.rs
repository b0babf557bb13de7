//! Every polygon in every vector tile is valid (MVT 2.1 §4.3.4.4: no
//! self-intersecting or self-tangent ring, no zero-width spike; holes inside
//! their exterior).
//!
//! The district demo is generated in memory and indexed without a store (as
//! `tile_budget` does: the store would only round-trip the same f64
//! coordinates, and writing 100,000 addresses to a GeoPackage is most of a
//! store's cost in a debug build). Every tile covering the district is
//! rendered at every zoom from 10 to 16 for the layers `grids` and
//! `buildings`, decoded with the tests' own decoder (`common::mvt_decode`,
//! written from the spec and independent of the `mvt` crate the server
//! encodes with), and each polygon is rebuilt from its rings by the spec's
//! rule (a ring of positive area in tile coordinates starts a polygon, the
//! negative rings after it are its holes) and checked with `geo`'s
//! `Validation`. Rings with zero area, and a first ring that is not an
//! exterior, count as invalid too; so do the polygons of one feature that
//! overlap or share an edge (a clipped polygon may fall apart into pieces,
//! which may touch only at points).
//!
//! Three seeds, every tile, z10–16: about 8,300 tiles and 198,000 polygons,
//! a few seconds in the debug profile. Before `clip::repair`, 328 of them
//! were invalid (126 for seed 1, among them tile 13/6663/3425 feature 972),
//! all but one with Sutherland–Hodgman's overlapping edges along the
//! buffer's edge.

mod common;

use common::mvt_decode;
use geo::algorithm::validation::InvalidMultiPolygon;
use geo::{Coord, LineString, MultiPolygon, Polygon, Validation};
use onemap::index::Catalog;
use onemap::tiles::mercator::{TileId, tile_of};
use onemap::tiles::{TileConfig, render};
use std::collections::BTreeMap;

/// The polygons of one feature, by the spec's rule; `Err` for a ring that
/// no valid polygon can be made of (zero area, or a hole before any
/// exterior).
fn polygons(parts: &[Vec<[i64; 2]>]) -> Result<Vec<Polygon>, String> {
    let ring = |r: &[[i64; 2]]| -> LineString {
        let mut c: Vec<Coord> = r
            .iter()
            .map(|p| Coord {
                x: p[0] as f64,
                y: p[1] as f64,
            })
            .collect();
        if let Some(&first) = c.first() {
            c.push(first);
        }
        LineString(c)
    };
    let mut out: Vec<(LineString, Vec<LineString>)> = Vec::new();
    for (k, r) in parts.iter().enumerate() {
        let a = mvt_decode::area2(r);
        if a == 0 {
            return Err(format!("ring {k} has zero area"));
        }
        if a > 0 {
            out.push((ring(r), Vec::new()));
        } else {
            let Some(last) = out.last_mut() else {
                return Err("the first ring is a hole".into());
            };
            last.1.push(ring(r));
        }
    }
    Ok(out.into_iter().map(|(e, h)| Polygon::new(e, h)).collect())
}

/// Counts of invalid polygons by kind, with a few examples.
#[derive(Default)]
struct Report {
    tiles: usize,
    polygons: usize,
    multi: usize,
    invalid: BTreeMap<String, usize>,
    examples: Vec<String>,
}

impl Report {
    fn bad(&mut self, kind: &str, detail: String) {
        *self.invalid.entry(kind.to_string()).or_default() += 1;
        if self.examples.len() < 20 {
            self.examples.push(detail);
        }
    }

    fn total(&self) -> usize {
        self.invalid.values().sum()
    }
}

/// Renders, decodes and checks every tile over the district at z10–16.
fn check_district(seed: u64, report: &mut Report) {
    let t0 = std::time::Instant::now();
    let sc = onemap::demo::Scale::parse("district").unwrap();
    let layers = onemap::demo::generate(&sc, seed)
        .unwrap()
        .into_layers()
        .unwrap();
    let cat = Catalog::build(layers, 0);
    let cfg = TileConfig::default();
    let names = ["grids".to_string(), "buildings".to_string()];
    let bbox = cat.layer("grids").and_then(|l| l.bbox).unwrap();
    for z in 10..=16u8 {
        let lo = tile_of(z, bbox.min().x, bbox.max().y);
        let hi = tile_of(z, bbox.max().x, bbox.min().y);
        for x in lo.x..=hi.x {
            for y in lo.y..=hi.y {
                let t = TileId { z, x, y };
                let bytes = render(&cat, &cfg, &names, t);
                report.tiles += 1;
                for l in mvt_decode::decode(&bytes) {
                    if !names.contains(&l.name) {
                        continue;
                    }
                    for f in l.features.iter().filter(|f| f.kind == 3) {
                        let at = format!("seed {seed} {z}/{x}/{y} {} feature {:?}", l.name, f.id);
                        let ps = match polygons(&f.parts) {
                            Ok(ps) => ps,
                            Err(e) => {
                                report.polygons += 1;
                                report.bad(&e, format!("{at}: {e}"));
                                continue;
                            }
                        };
                        for p in &ps {
                            report.polygons += 1;
                            if let Err(e) = p.check_validation() {
                                let kind = format!("{e:?}");
                                let kind = kind.split('(').next().unwrap_or("");
                                report.bad(kind, format!("{at}: {e}"));
                            }
                        }
                        // The pieces of one feature may touch at points, but
                        // not overlap or share an edge.
                        if ps.len() > 1 {
                            report.multi += 1;
                            let m = MultiPolygon(ps);
                            if let Some(e) = m
                                .validation_errors()
                                .into_iter()
                                .find(|e| !matches!(e, InvalidMultiPolygon::InvalidPolygon(..)))
                            {
                                let kind = format!("{e:?}");
                                let kind = kind.split('(').next().unwrap_or("");
                                report.bad(kind, format!("{at}: {e}"));
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "seed {seed}: {} tiles so far, {:?}",
        report.tiles,
        t0.elapsed()
    );
}

#[test]
fn every_polygon_in_every_tile_is_valid() {
    let t0 = std::time::Instant::now();
    let mut report = Report::default();
    for seed in 1..=3 {
        check_district(seed, &mut report);
    }
    let total = report.total();
    eprintln!(
        "{} tiles, {} polygons ({} features of several), {total} invalid in {:?}: {:?}",
        report.tiles,
        report.polygons,
        report.multi,
        t0.elapsed(),
        report.invalid
    );
    for e in &report.examples {
        eprintln!("  {e}");
    }
    assert!(
        report.polygons > 100_000,
        "only {} polygons",
        report.polygons
    );
    assert_eq!(total, 0, "{total} invalid polygons: {:?}", report.invalid);
}
