//! Validity of a query area in O(n log n).
//!
//! `geo`'s `Validation` compares every pair of segments: 0.9 s for a
//! 10,000-vertex ring, 73 s for 100,000 (measured), so a drawn or uploaded
//! area could hold a worker for minutes. Small areas still go through
//! `geo` (its messages are what users have seen); larger ones are checked
//! here with an R-tree of segment envelopes: each segment is tested only
//! against the segments whose envelopes meet its own.
//!
//! What is refused: rings with fewer than four positions or not closed,
//! a ring that crosses or touches itself (other than its neighbouring
//! segments meeting end to end), two rings that cross or overlap along a
//! segment, and a hole whose first vertex lies outside its shell. Two rings
//! touching at one point are accepted (a hole touching its shell, as OGC
//! allows). Polygons of a MultiPolygon may overlap: an area is the union of
//! its parts, and a point inside either matches.

use geo::line_intersection::{LineIntersection, line_intersection};
use geo::{Coord, CoordsIter, Line, MultiPolygon, Point, Validation};
use rstar::RTreeObject;
use rstar::primitives::{GeomWithData, Rectangle};

/// Areas with at most this many vertices are checked by `geo`.
const GEO_CHECK_MAX: usize = 2_000;

/// Checks that `m` is a valid area; the error says where it is not.
pub fn check_area(m: &MultiPolygon) -> Result<(), String> {
    let n = m.coords_count();
    if n <= GEO_CHECK_MAX {
        return m
            .check_validation()
            .map_err(|e| format!("area is not a valid polygon: {e}"));
    }
    // Every ring, with the polygon it belongs to (for holes).
    let mut rings: Vec<&[Coord]> = Vec::new();
    for p in &m.0 {
        for r in std::iter::once(p.exterior()).chain(p.interiors()) {
            let c = r.0.as_slice();
            if c.len() < 4 {
                return Err(format!(
                    "area is not a valid polygon: a ring has {} positions; at least 4",
                    c.len()
                ));
            }
            if c.first() != c.last() {
                return Err("area is not a valid polygon: a ring is not closed".into());
            }
            rings.push(c);
        }
    }
    type Seg = GeomWithData<Rectangle<[f64; 2]>, (usize, usize)>;
    let mut segs: Vec<Seg> = Vec::with_capacity(n);
    for (ri, r) in rings.iter().enumerate() {
        for (si, w) in r.windows(2).enumerate() {
            let (a, b) = (w[0], w[1]);
            if a == b {
                continue; // a repeated position: no segment
            }
            segs.push(GeomWithData::new(
                Rectangle::from_corners([a.x, a.y], [b.x, b.y]),
                (ri, si),
            ));
        }
    }
    let line = |(ri, si): (usize, usize)| Line::new(rings[ri][si], rings[ri][si + 1]);
    let tree = rstar::RTree::bulk_load(segs.clone());
    for s in &segs {
        crate::work::checkpoint();
        let (ri, si) = s.data;
        let l1 = line(s.data);
        for o in tree.locate_in_envelope_intersecting(&s.geom().envelope()) {
            let (rj, sj) = o.data;
            if (rj, sj) <= (ri, si) {
                continue; // each pair once
            }
            let Some(x) = line_intersection(l1, line(o.data)) else {
                continue;
            };
            let at = match x {
                LineIntersection::Collinear { intersection } => {
                    if intersection.start == intersection.end && ri == rj {
                        // Neighbours meeting end to end, collinear.
                        if neighbours(rings[ri].len() - 1, si, sj) {
                            continue;
                        }
                    } else if intersection.start == intersection.end {
                        continue; // two rings touching at a point
                    }
                    intersection.start
                }
                LineIntersection::SinglePoint {
                    intersection,
                    is_proper,
                } => {
                    if !is_proper && ri == rj && neighbours(rings[ri].len() - 1, si, sj) {
                        continue;
                    }
                    if !is_proper && ri != rj {
                        continue; // two rings touching at a point
                    }
                    intersection
                }
            };
            let what = if ri == rj {
                "a ring crosses or touches itself"
            } else {
                "two rings cross"
            };
            return Err(format!(
                "area is not a valid polygon: {what} near ({:.6}, {:.6}); \
                 redraw it without crossing edges",
                at.x, at.y
            ));
        }
    }
    for p in &m.0 {
        if p.interiors().is_empty() {
            continue;
        }
        let shell = geo::Polygon::new(p.exterior().clone(), vec![]);
        for h in p.interiors() {
            crate::work::checkpoint();
            if let Some(c) = h.0.first()
                && !geo::Intersects::intersects(&shell, &Point::from(*c))
            {
                return Err(format!(
                    "area is not a valid polygon: a hole near ({:.6}, {:.6}) lies outside its polygon",
                    c.x, c.y
                ));
            }
        }
    }
    Ok(())
}

/// Whether segments `a` and `b` of a closed ring of `count` segments are
/// next to each other.
fn neighbours(count: usize, a: usize, b: usize) -> bool {
    let (lo, hi) = (a.min(b), a.max(b));
    hi == lo + 1 || (lo == 0 && hi + 1 == count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{LineString, Polygon};

    fn circle(n: usize, r: f64) -> Vec<Coord> {
        (0..=n)
            .map(|i| {
                let a = (i % n) as f64 / n as f64 * std::f64::consts::TAU;
                Coord {
                    x: 112.9 + r * a.cos(),
                    y: 28.2 + r * a.sin(),
                }
            })
            .collect()
    }

    #[test]
    fn agrees_with_geo_on_large_rings() {
        // A valid many-vertex ring, with and without a hole.
        let ring = circle(5_000, 0.05);
        let m = MultiPolygon(vec![Polygon::new(LineString(ring.clone()), vec![])]);
        assert!(check_area(&m).is_ok());
        let hole = LineString(circle(3_000, 0.01));
        let m = MultiPolygon(vec![Polygon::new(LineString(ring.clone()), vec![hole])]);
        assert!(check_area(&m).is_ok());
        // A vertex pulled across the ring: it crosses itself.
        let mut bad = ring.clone();
        bad[10] = Coord {
            x: 112.9 - 0.06,
            y: 28.2,
        };
        let m = MultiPolygon(vec![Polygon::new(LineString(bad), vec![])]);
        let e = check_area(&m).expect_err("crossing ring");
        assert!(e.contains("crosses"), "{e}");
        assert!(!m.is_valid());
        // A hole outside, and a hole crossing the shell.
        let far = LineString(
            circle(3_000, 0.01)
                .into_iter()
                .map(|c| Coord {
                    x: c.x + 1.0,
                    y: c.y,
                })
                .collect(),
        );
        let m = MultiPolygon(vec![Polygon::new(LineString(ring.clone()), vec![far])]);
        assert!(check_area(&m).is_err());
        let crossing = LineString(
            circle(3_000, 0.02)
                .into_iter()
                .map(|c| Coord {
                    x: c.x + 0.05,
                    y: c.y,
                })
                .collect(),
        );
        let m = MultiPolygon(vec![Polygon::new(LineString(ring), vec![crossing])]);
        let e = check_area(&m).expect_err("hole crossing the shell");
        assert!(e.contains("two rings cross"), "{e}");
    }

    #[test]
    fn a_comb_of_long_thin_teeth_is_valid() {
        // Many segments whose envelopes overlap, none crossing.
        let mut c = Vec::new();
        let teeth = 1_500;
        for i in 0..teeth {
            let x = i as f64 * 0.001;
            c.push(Coord { x, y: 0.0 });
            c.push(Coord {
                x: x + 0.0005,
                y: 1.0,
            });
        }
        c.push(Coord {
            x: teeth as f64 * 0.001,
            y: -0.5,
        });
        c.push(Coord { x: 0.0, y: -0.5 });
        c.push(Coord { x: 0.0, y: 0.0 });
        let m = MultiPolygon(vec![Polygon::new(LineString(c), vec![])]);
        assert_eq!(check_area(&m).is_ok(), m.is_valid());
    }
}
