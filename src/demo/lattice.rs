//! The lattice every demo polygon is cut from.
//!
//! The district is a C-shaped band around a city core. We lay a log-polar
//! lattice over it: cell `(i, j)` spans radius step `i` (outward) and angle
//! step `j` (counter-clockwise). With the radial step equal to the angular
//! step in log space the cells are roughly square, and their size grows with
//! the distance from the core: small dense cells in the urban ring, large ones
//! in the countryside, without any special casing.
//!
//! Every lattice vertex is computed once (with a smooth warp and a little
//! jitter so nothing looks ruled), and every polygon is a rectangle of cells
//! whose ring walks *every* lattice vertex along its edges. So two polygons
//! that touch share exactly the same vertices, a parent's ring passes through
//! its children's corners, and the children of any rectangle tile it with no
//! gap, no overlap and no T-junction. That is the invariant the tests check
//! independently.

use super::rng::Rng;
use geo::{Coord, LineString, Polygon};

/// A rectangle of cells: radial cells `i0..i1`, angular cells `j0..j1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellRect {
    pub i0: usize,
    pub i1: usize,
    pub j0: usize,
    pub j1: usize,
}

impl CellRect {
    pub fn cells(&self) -> usize {
        (self.i1 - self.i0) * (self.j1 - self.j0)
    }
    pub fn di(&self) -> usize {
        self.i1 - self.i0
    }
    pub fn dj(&self) -> usize {
        self.j1 - self.j0
    }
}

/// A guillotine cut, remembered so roads can follow the boundaries.
#[derive(Clone, Copy, Debug)]
pub struct Cut {
    /// true: the cut runs along a ring (constant `i`), false: along a ray
    /// (constant `j`).
    pub along_ring: bool,
    /// The constant index of the cut line.
    pub at: usize,
    /// The range of the other index it spans.
    pub from: usize,
    pub to: usize,
}

/// The shape of the area the lattice covers.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub center_lon: f64,
    pub center_lat: f64,
    /// Radius of the city core the district wraps around, metres.
    pub r_inner_m: f64,
    pub r_outer_m: f64,
    /// Start angle and span of the C, radians.
    pub theta0: f64,
    pub span: f64,
    /// Angular cells.
    pub nt: usize,
}

pub struct Lattice {
    pub nr: usize,
    pub nt: usize,
    pub shape: Shape,
    dtheta: f64,
    phases: (f64, f64),
    verts: Vec<Coord>,
}

fn swell(th: f64, ph1: f64, ph2: f64) -> f64 {
    1.0 + 0.10 * (2.0 * th + ph1).sin() + 0.05 * (5.0 * th + ph2).sin()
}

const M_PER_DEG_LAT: f64 = 110_574.0;

impl Lattice {
    pub fn new(shape: Shape, rng: &mut Rng) -> Lattice {
        let nt = shape.nt;
        let dtheta = shape.span / nt as f64;
        let nr = (((shape.r_outer_m / shape.r_inner_m).ln() / dtheta).round() as usize).max(2);
        let (ph1, ph2, ph3) = (
            rng.range(0.0, 6.3),
            rng.range(0.0, 6.3),
            rng.range(0.0, 6.3),
        );
        let m_per_deg_lon = 111_320.0 * shape.center_lat.to_radians().cos();
        let mut verts = Vec::with_capacity((nr + 1) * (nt + 1));
        for i in 0..=nr {
            for j in 0..=nt {
                // Smooth meanders (low frequency, small slope: cells stay
                // convex) plus a little per-vertex jitter.
                let fi = i as f64
                    + 0.7 * (j as f64 * 0.045 + ph1).sin()
                    + 0.4 * (j as f64 * 0.13 + ph3).sin()
                    + rng.range(-0.18, 0.18);
                let fj = j as f64 + 0.9 * (i as f64 * 0.09 + ph2).sin() + rng.range(-0.18, 0.18);
                let th = shape.theta0 + fj * dtheta;
                // An irregular outline: the radius swells and shrinks with
                // the angle (a smooth, gentle shear of the cells).
                let r = shape.r_inner_m * (fi * dtheta).exp() * swell(th, ph1, ph2);
                let (x, y) = (r * th.cos(), r * th.sin());
                verts.push(Coord {
                    x: shape.center_lon + x / m_per_deg_lon,
                    y: shape.center_lat + y / M_PER_DEG_LAT,
                });
            }
        }
        Lattice {
            nr,
            nt,
            shape,
            dtheta,
            phases: (ph1, ph2),
            verts,
        }
    }

    pub fn all(&self) -> CellRect {
        CellRect {
            i0: 0,
            i1: self.nr,
            j0: 0,
            j1: self.nt,
        }
    }

    pub fn v(&self, i: usize, j: usize) -> Coord {
        self.verts[i * (self.nt + 1) + j]
    }

    /// The approximate edge length of cells in radial row `i`, metres.
    pub fn cell_size_m(&self, i: usize) -> f64 {
        self.shape.r_inner_m * ((i as f64 + 0.5) * self.dtheta).exp() * self.dtheta
    }

    /// The polygon of a cell rectangle: a counter-clockwise ring through every
    /// lattice vertex on its edges.
    pub fn polygon(&self, r: &CellRect) -> Polygon {
        let mut ring = Vec::with_capacity(2 * (r.di() + r.dj()) + 1);
        for i in r.i0..=r.i1 {
            ring.push(self.v(i, r.j0));
        }
        for j in r.j0 + 1..=r.j1 {
            ring.push(self.v(r.i1, j));
        }
        for i in (r.i0..r.i1).rev() {
            ring.push(self.v(i, r.j1));
        }
        for j in (r.j0..r.j1).rev() {
            ring.push(self.v(r.i0, j));
        }
        Polygon::new(LineString(ring), vec![])
    }

    /// A point inside cell `(i, j)` by bilinear interpolation of its corners;
    /// `u` runs outward, `v` counter-clockwise, both kept off the edges.
    pub fn point_in_cell(&self, i: usize, j: usize, u: f64, v: f64) -> Coord {
        let (a, b, c, d) = (
            self.v(i, j),
            self.v(i + 1, j),
            self.v(i + 1, j + 1),
            self.v(i, j + 1),
        );
        let lerp = |p: Coord, q: Coord, t: f64| Coord {
            x: p.x + (q.x - p.x) * t,
            y: p.y + (q.y - p.y) * t,
        };
        lerp(lerp(a, b, u), lerp(d, c, u), v)
    }

    /// A quadrilateral inside cell `(i, j)` spanning `u0..u1`, `v0..v1`.
    pub fn quad_in_cell(&self, i: usize, j: usize, u: (f64, f64), v: (f64, f64)) -> Polygon {
        let ring = vec![
            self.point_in_cell(i, j, u.0, v.0),
            self.point_in_cell(i, j, u.1, v.0),
            self.point_in_cell(i, j, u.1, v.1),
            self.point_in_cell(i, j, u.0, v.1),
            self.point_in_cell(i, j, u.0, v.0),
        ];
        Polygon::new(LineString(ring), vec![])
    }

    /// A line through the lattice vertices of a cut.
    pub fn cut_line(&self, c: &Cut) -> LineString {
        LineString(
            (c.from..=c.to)
                .map(|k| {
                    if c.along_ring {
                        self.v(c.at, k)
                    } else {
                        self.v(k, c.at)
                    }
                })
                .collect(),
        )
    }

    /// A line parallel to the `j = 0` edge, `offset` cells outside it (for
    /// the river's far bank), computed the same way as lattice vertices but
    /// without jitter.
    pub fn outside_ray(&self, offset: f64, wobble: f64) -> Vec<Coord> {
        let m_per_deg_lon = 111_320.0 * self.shape.center_lat.to_radians().cos();
        (0..=self.nr)
            .map(|i| {
                let fj = -offset + wobble * (i as f64 * 0.21).sin();
                let th = self.shape.theta0 + fj * self.dtheta;
                let r = self.shape.r_inner_m
                    * (i as f64 * self.dtheta).exp()
                    * swell(th, self.phases.0, self.phases.1);
                Coord {
                    x: self.shape.center_lon + r * th.cos() / m_per_deg_lon,
                    y: self.shape.center_lat + r * th.sin() / M_PER_DEG_LAT,
                }
            })
            .collect()
    }
}

/// Splits `r` into exactly `k` cell rectangles by recursive guillotine cuts
/// along the longer side, at positions jittered around the proportional one
/// so that sizes vary. Needs `k <= r.cells()`. Cuts are appended to `cuts`.
pub fn split(r: CellRect, k: usize, rng: &mut Rng, cuts: &mut Vec<Cut>) -> Vec<CellRect> {
    let mut out = Vec::with_capacity(k);
    split_into(r, k.clamp(1, r.cells().max(1)), rng, cuts, &mut out);
    out
}

fn split_into(r: CellRect, k: usize, rng: &mut Rng, cuts: &mut Vec<Cut>, out: &mut Vec<CellRect>) {
    if k <= 1 {
        out.push(r);
        return;
    }
    // Cut across the longer side (ties at random).
    let along_i = match r.di().cmp(&r.dj()) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => rng.chance(0.5),
    };
    let (len, other) = if along_i {
        (r.di(), r.dj())
    } else {
        (r.dj(), r.di())
    };
    if len < 2 {
        out.push(r);
        return;
    }
    let k1_target = k / 2 + usize::from(k % 2 == 1 && rng.chance(0.5));
    let frac = k1_target as f64 / k as f64 * rng.range(0.8, 1.2);
    let a = ((len as f64 * frac).round() as usize).clamp(1, len - 1);
    // Children counts that fit the two parts (possible because k <= len*other).
    let lo = k.saturating_sub((len - a) * other).max(1);
    let hi = (a * other).min(k - 1);
    let k1 = ((k as f64 * a as f64 / len as f64).round() as usize).clamp(lo, hi.max(lo));
    let (r1, r2, cut) = if along_i {
        let m = r.i0 + a;
        (
            CellRect { i1: m, ..r },
            CellRect { i0: m, ..r },
            Cut {
                along_ring: true,
                at: m,
                from: r.j0,
                to: r.j1,
            },
        )
    } else {
        let m = r.j0 + a;
        (
            CellRect { j1: m, ..r },
            CellRect { j0: m, ..r },
            Cut {
                along_ring: false,
                at: m,
                from: r.i0,
                to: r.i1,
            },
        )
    };
    cuts.push(cut);
    split_into(r1, k1, rng, cuts, out);
    split_into(r2, k - k1, rng, cuts, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_gives_exactly_k_disjoint_rects_covering_the_parent() {
        let mut rng = Rng::new(3, "split");
        for (w, h, k) in [(10, 10, 7), (3, 2, 6), (1, 5, 5), (40, 3, 17), (2, 2, 1)] {
            let r = CellRect {
                i0: 5,
                i1: 5 + w,
                j0: 2,
                j1: 2 + h,
            };
            let parts = split(r, k, &mut rng, &mut vec![]);
            assert_eq!(parts.len(), k, "{w}x{h} into {k}");
            assert_eq!(parts.iter().map(|p| p.cells()).sum::<usize>(), r.cells());
            assert!(parts.iter().all(|p| p.cells() >= 1));
        }
    }
}
