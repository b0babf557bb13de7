//! Topology-aware edits of a coverage of polygons whose neighbours share
//! vertices exactly (as the grids do): move a shared vertex, split by a
//! line, merge along shared edges.
//!
//! Nothing here goes through a boolean-overlay library: those snap results
//! to an internal integer grid, and one snapped coordinate is enough to
//! open a sliver between two grids that shared it. Every coordinate an edit
//! does not move stays bit-identical; new vertices (where a split line
//! crosses a boundary) are inserted into every grid whose edge passes
//! through them, so neighbours keep sharing them.

use geo::{Area, Coord, LineString, MultiPolygon, Orient, Polygon, orient::Direction};
use std::collections::HashMap;

/// Metres per degree of longitude and latitude at a latitude.
pub fn metres_per_degree(lat: f64) -> (f64, f64) {
    (111_320.0 * lat.to_radians().cos(), 110_540.0)
}

/// Distance in metres between two nearby coordinates.
pub fn dist_m(a: Coord, b: Coord) -> f64 {
    let (mx, my) = metres_per_degree((a.y + b.y) / 2.0);
    ((a.x - b.x) * mx).hypot((a.y - b.y) * my)
}

/// Where `p` projects on segment `a`–`b` (0..1) and its distance in metres.
fn project(p: Coord, a: Coord, b: Coord) -> (f64, f64) {
    let (mx, my) = metres_per_degree(p.y);
    let (ax, ay) = ((a.x - p.x) * mx, (a.y - p.y) * my);
    let (bx, by) = ((b.x - p.x) * mx, (b.y - p.y) * my);
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return (0.0, ax.hypot(ay));
    }
    let t = (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0);
    (t, (ax + t * dx).hypot(ay + t * dy))
}

/// The ring's coordinates without the closing repeat.
fn open(ring: &LineString) -> Vec<Coord> {
    let mut v = ring.0.clone();
    if v.len() > 1 && v.first() == v.last() {
        v.pop();
    }
    v
}

fn close(mut v: Vec<Coord>) -> LineString {
    v.dedup();
    while v.len() > 1 && v.first() == v.last() {
        v.pop();
    }
    if let Some(&f) = v.first() {
        v.push(f);
    }
    LineString(v)
}

fn rings_mut(mp: &mut MultiPolygon, mut f: impl FnMut(&mut Vec<Coord>) -> bool) -> bool {
    let mut any = false;
    for p in mp.0.iter_mut() {
        let mut ext = open(p.exterior());
        let mut changed = f(&mut ext);
        let mut ints: Vec<Vec<Coord>> = p.interiors().iter().map(open).collect();
        for r in ints.iter_mut() {
            changed |= f(r);
        }
        if changed {
            *p = Polygon::new(close(ext), ints.into_iter().map(close).collect());
            any = true;
        }
    }
    any
}

/// Moves every vertex within `tol_m` of `from` to `to`; where `from` lies on
/// an edge (within `tol_m`, not at a vertex), a vertex is inserted there and
/// moved. True when the geometry changed.
pub fn move_point(mp: &mut MultiPolygon, from: Coord, to: Coord, tol_m: f64) -> bool {
    rings_mut(mp, |r| {
        let mut hit = false;
        for v in r.iter_mut() {
            if dist_m(*v, from) <= tol_m {
                *v = to;
                hit = true;
            }
        }
        if hit {
            return true;
        }
        insert_on_edge(r, from, tol_m, Some(to))
    })
}

/// Inserts a vertex at `p` into every edge passing within `tol_m` of it
/// (not at an existing vertex). True when one was inserted.
pub fn insert_vertex(mp: &mut MultiPolygon, p: Coord, tol_m: f64) -> bool {
    rings_mut(mp, |r| {
        if r.iter().any(|v| dist_m(*v, p) <= tol_m) {
            return false;
        }
        insert_on_edge(r, p, tol_m, None)
    })
}

fn insert_on_edge(r: &mut Vec<Coord>, p: Coord, tol_m: f64, to: Option<Coord>) -> bool {
    let n = r.len();
    for i in 0..n {
        let (a, b) = (r[i], r[(i + 1) % n]);
        let (t, d) = project(p, a, b);
        if d <= tol_m && t > 0.0 && t < 1.0 {
            r.insert(i + 1, to.unwrap_or(p));
            return true;
        }
    }
    false
}

/// True when some vertex of `mp` lies within `tol_m` of `p`, or some edge
/// passes within it.
pub fn touches_point(mp: &MultiPolygon, p: Coord, tol_m: f64) -> bool {
    mp.0.iter().any(|poly| {
        std::iter::once(poly.exterior())
            .chain(poly.interiors())
            .any(|ring| ring.lines().any(|l| project(p, l.start, l.end).1 <= tol_m))
    })
}

/// Where two segments cross: the parameters along each and the point.
fn seg_cross(a: Coord, b: Coord, c: Coord, d: Coord) -> Option<(f64, f64, Coord)> {
    let r = b - a;
    let s = d - c;
    let den = r.x * s.y - r.y * s.x;
    if den == 0.0 {
        return None;
    }
    let q = c - a;
    let t = (q.x * s.y - q.y * s.x) / den;
    let u = (q.x * r.y - q.y * r.x) / den;
    if (0.0..=1.0).contains(&t) && (0.0..=1.0).contains(&u) {
        let p = if t == 0.0 {
            a
        } else if t == 1.0 {
            b
        } else if u == 0.0 {
            c
        } else if u == 1.0 {
            d
        } else {
            Coord {
                x: a.x + t * r.x,
                y: a.y + t * r.y,
            }
        };
        Some((t, u, p))
    } else {
        None
    }
}

/// The result of a split: the two halves and the points where the line
/// crossed the boundary (new vertices, to insert into the neighbours).
pub struct Split {
    pub a: MultiPolygon,
    pub b: MultiPolygon,
    pub crossings: [Coord; 2],
}

/// Splits the part of `mp` that `line` crosses into two. The line must
/// start and end outside and cross that part's exterior exactly twice
/// (holes must not be crossed); parts it does not cross stay with `a`.
pub fn split(mp: &MultiPolygon, line: &LineString) -> Result<Split, String> {
    if line.0.len() < 2 {
        return Err("the split line needs at least two points".into());
    }
    let mut crossed = None;
    for (k, poly) in mp.0.iter().enumerate() {
        let hits = crossings(&open(poly.exterior()), &line.0);
        if hits.is_empty() {
            continue;
        }
        if crossed.is_some() {
            return Err("the line crosses more than one part of the grid".into());
        }
        crossed = Some((k, hits));
    }
    let Some((k, hits)) = crossed else {
        return Err("the line does not cross the grid".into());
    };
    if hits.len() != 2 {
        return Err(format!(
            "the line must cross the grid's boundary exactly twice (enter and leave once); it crosses {} times",
            hits.len()
        ));
    }
    let poly = &mp.0[k];
    for hole in poly.interiors() {
        if !crossings(&open(hole), &line.0).is_empty() {
            return Err("the line crosses a hole of the grid".into());
        }
    }
    let ring = open(poly.exterior());
    let n = ring.len() as f64;
    let (x1, x2) = (hits[0], hits[1]);
    // Line vertices strictly between the two crossings.
    let cut: Vec<Coord> = line
        .0
        .iter()
        .enumerate()
        .filter(|(j, _)| (*j as f64) > x1.line_pos && (*j as f64) < x2.line_pos)
        .map(|(_, c)| *c)
        .collect();
    let walk = |from: f64, to: f64| -> Vec<Coord> {
        let cd = |x: f64| (x - from).rem_euclid(n);
        let end = cd(to);
        let mut ks: Vec<(f64, Coord)> = ring
            .iter()
            .enumerate()
            .map(|(i, c)| (cd(i as f64), *c))
            .filter(|(d, _)| *d > 0.0 && *d < end)
            .collect();
        ks.sort_by(|a, b| a.0.total_cmp(&b.0));
        ks.into_iter().map(|(_, c)| c).collect()
    };
    let mut ra = vec![x1.point];
    ra.extend(walk(x1.ring_pos, x2.ring_pos));
    ra.push(x2.point);
    ra.extend(cut.iter().rev());
    let mut rb = vec![x2.point];
    rb.extend(walk(x2.ring_pos, x1.ring_pos));
    rb.push(x1.point);
    rb.extend(cut.iter());
    let pa = Polygon::new(close(ra), vec![]);
    let pb = Polygon::new(close(rb), vec![]);
    if pa.exterior().0.len() < 4 || pb.exterior().0.len() < 4 {
        return Err("the line does not cut the grid into two parts".into());
    }
    let (mut pa, mut pb) = (pa, pb);
    for hole in poly.interiors() {
        let inside_a = hole
            .0
            .first()
            .is_some_and(|c| geo::Contains::contains(&pa, &geo::Point(*c)));
        let target = if inside_a { &mut pa } else { &mut pb };
        let mut ints = target.interiors().to_vec();
        ints.push(hole.clone());
        *target = Polygon::new(target.exterior().clone(), ints);
    }
    let mut a = vec![pa];
    for (j, other) in mp.0.iter().enumerate() {
        if j != k {
            a.push(other.clone());
        }
    }
    Ok(Split {
        a: MultiPolygon(a),
        b: MultiPolygon(vec![pb]),
        crossings: [x1.point, x2.point],
    })
}

#[derive(Clone, Copy, Debug)]
struct Crossing {
    ring_pos: f64,
    line_pos: f64,
    point: Coord,
}

/// Where a polyline crosses a ring (no closing repeat), ordered along the
/// line, a crossing at a vertex counted once.
fn crossings(ring: &[Coord], line: &[Coord]) -> Vec<Crossing> {
    let n = ring.len();
    let mut out: Vec<Crossing> = Vec::new();
    for j in 0..line.len() - 1 {
        for i in 0..n {
            if let Some((t, u, p)) = seg_cross(ring[i], ring[(i + 1) % n], line[j], line[j + 1]) {
                let c = Crossing {
                    ring_pos: (i as f64 + t) % n as f64,
                    line_pos: j as f64 + u,
                    point: p,
                };
                if !out.iter().any(|o| o.point == p) {
                    out.push(c);
                }
            }
        }
    }
    out.sort_by(|a, b| a.line_pos.total_cmp(&b.line_pos));
    out
}

/// A directed edge by the bits of its end points.
type EdgeKey = ((u64, u64), (u64, u64));

fn key(c: Coord) -> (u64, u64) {
    (c.x.to_bits(), c.y.to_bits())
}

/// The union of polygons that share edges exactly: shared edges cancel and
/// what is left is walked into rings. `Err` when the parts share no edge.
pub fn merge(parts: &[MultiPolygon]) -> Result<MultiPolygon, String> {
    // Directed edges, exteriors counter-clockwise and holes clockwise, so a
    // shared edge appears once in each direction.
    let mut edges: HashMap<EdgeKey, (Coord, Coord, usize)> = HashMap::new();
    let mut cancelled = vec![false; parts.len()];
    for (k, mp) in parts.iter().enumerate() {
        let mp = mp.orient(Direction::Default);
        for poly in &mp.0 {
            for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
                for l in ring.lines() {
                    if l.start == l.end {
                        continue;
                    }
                    let rev = (key(l.end), key(l.start));
                    if let Some((_, _, other)) = edges.remove(&rev) {
                        if other != k {
                            cancelled[k] = true;
                            cancelled[other] = true;
                        }
                    } else {
                        edges.insert((key(l.start), key(l.end)), (l.start, l.end, k));
                    }
                }
            }
        }
    }
    if parts.len() > 1 && cancelled.iter().any(|c| !c) {
        return Err("the grids do not share an edge".into());
    }
    let mut next: HashMap<(u64, u64), Vec<Coord>> = HashMap::new();
    for (a, b, _) in edges.values() {
        next.entry(key(*a)).or_default().push(*b);
    }
    for v in next.values_mut() {
        v.sort_by(|p, q| p.x.total_cmp(&q.x).then(p.y.total_cmp(&q.y)));
    }
    let mut starts: Vec<Coord> = edges.values().map(|e| e.0).collect();
    starts.sort_by(|p, q| p.x.total_cmp(&q.x).then(p.y.total_cmp(&q.y)));
    let mut rings: Vec<Vec<Coord>> = Vec::new();
    for s in starts {
        while next.get(&key(s)).is_some_and(|v| !v.is_empty()) {
            let mut ring = vec![s];
            let mut cur = s;
            loop {
                let Some(b) = next.get_mut(&key(cur)).and_then(|v| v.pop()) else {
                    return Err("the merged boundary does not close".into());
                };
                if b == s {
                    break;
                }
                ring.push(b);
                cur = b;
                if ring.len() > edges.len() + 1 {
                    return Err("the merged boundary does not close".into());
                }
            }
            rings.push(ring);
        }
    }
    let mut exteriors: Vec<Polygon> = Vec::new();
    let mut holes: Vec<LineString> = Vec::new();
    for r in rings {
        let ls = close(r);
        if ls.0.len() < 4 {
            continue;
        }
        let p = Polygon::new(ls.clone(), vec![]);
        if p.signed_area() > 0.0 {
            exteriors.push(p);
        } else {
            holes.push(ls);
        }
    }
    for h in holes {
        let probe = geo::Point(h.0[0]);
        let at = exteriors
            .iter()
            .position(|e| geo::Intersects::intersects(e, &probe))
            .ok_or("a hole of the merged grid lies outside it")?;
        let mut ints = exteriors[at].interiors().to_vec();
        ints.push(h);
        exteriors[at] = Polygon::new(exteriors[at].exterior().clone(), ints);
    }
    if exteriors.is_empty() {
        return Err("the merged grid is empty".into());
    }
    Ok(MultiPolygon(exteriors))
}

/// Do two coverages share at least one edge (both vertices identical)?
pub fn share_edge(a: &MultiPolygon, b: &MultiPolygon) -> bool {
    let mut set = std::collections::HashSet::new();
    for poly in &a.0 {
        for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
            for l in ring.lines() {
                set.insert((key(l.start), key(l.end)));
                set.insert((key(l.end), key(l.start)));
            }
        }
    }
    b.0.iter().any(|poly| {
        std::iter::once(poly.exterior())
            .chain(poly.interiors())
            .any(|ring| {
                ring.lines()
                    .any(|l| l.start != l.end && set.contains(&(key(l.start), key(l.end))))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Area, polygon};

    fn sq(x0: f64, y0: f64, x1: f64, y1: f64) -> MultiPolygon {
        MultiPolygon(vec![polygon![
            (x: x0, y: y0), (x: x1, y: y0), (x: x1, y: y1), (x: x0, y: y1), (x: x0, y: y0)
        ]])
    }

    #[test]
    fn moving_a_shared_vertex_moves_it_everywhere() {
        // Four squares around (120.01, 30.01).
        let mut g = vec![
            sq(120.0, 30.0, 120.01, 30.01),
            sq(120.01, 30.0, 120.02, 30.01),
            sq(120.0, 30.01, 120.01, 30.02),
            sq(120.01, 30.01, 120.02, 30.02),
        ];
        let total = |g: &[MultiPolygon]| g.iter().map(|m| m.unsigned_area()).sum::<f64>();
        let t0 = total(&g);
        let from = Coord {
            x: 120.01,
            y: 30.01,
        };
        let to = Coord {
            x: 120.012,
            y: 30.011,
        };
        for m in g.iter_mut() {
            assert!(move_point(m, from, to, 0.05));
        }
        assert!((total(&g) - t0).abs() < 1e-15, "no gap, no overlap");
        assert!(share_edge(&g[0], &g[1]) && share_edge(&g[2], &g[3]));
        // The middle of a shared edge: a vertex is inserted in both.
        let left = Coord { x: 120.0, y: 30.01 };
        let b = Coord {
            x: 120.005,
            y: 30.0105,
        };
        let mid2 = Coord {
            x: (left.x + to.x) / 2.0,
            y: (left.y + to.y) / 2.0,
        };
        assert!(move_point(&mut g[0], mid2, b, 0.05));
        assert!(move_point(&mut g[2], mid2, b, 0.05));
        assert_eq!(g[0].0[0].exterior().0.len(), 6);
        assert!((total(&g) - t0).abs() < 1e-15);
        assert!(touches_point(&g[0], b, 0.01) && touches_point(&g[2], b, 0.01));
    }

    #[test]
    fn split_then_merge_gives_back_the_grid() {
        let g = sq(120.0, 30.0, 120.01, 30.01);
        let line = LineString::from(vec![(120.004, 29.99), (120.005, 30.005), (120.006, 30.02)]);
        let s = split(&g, &line).expect("split");
        let total = s.a.unsigned_area() + s.b.unsigned_area();
        assert!((total - g.unsigned_area()).abs() < 1e-15);
        assert!(share_edge(&s.a, &s.b));
        let m = merge(&[s.a.clone(), s.b.clone()]).expect("merge");
        assert!((m.unsigned_area() - g.unsigned_area()).abs() < 1e-15);
        assert_eq!(m.0.len(), 1);
        // Lines that do not cut: refused.
        let miss = LineString::from(vec![(121.0, 30.0), (121.0, 31.0)]);
        assert!(split(&g, &miss).is_err());
        let half = LineString::from(vec![(120.005, 29.99), (120.005, 30.005)]);
        assert!(split(&g, &half).is_err());
        // Apart: no merge.
        assert!(merge(&[g.clone(), sq(121.0, 30.0, 121.01, 30.01)]).is_err());
    }
}
