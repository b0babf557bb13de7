//! Clipping and simplification in tile coordinates.
//!
//! Everything here must be *deterministic per segment*: two grids that share
//! an edge walk it in opposite directions, and must still get bit-identical
//! clip points and simplified vertices, or a hairline gap opens between them.
//! So intersections are computed from the segment's endpoints in a canonical
//! order, and Douglas–Peucker runs on arcs in a canonical direction (see
//! `coverage`).
//!
//! Polygons are clipped ring by ring, simplified, and rounded to integers;
//! `repair` then makes each polygon's rings valid as MVT asks (clipping
//! leaves zero-width bridges along the clip line, rounding leaves spikes and
//! pinches) by cancelling and relinking edges, never by moving a vertex, so
//! the same determinism holds for what is encoded.

/// A point in tile coordinates.
pub type P = [f64; 2];

/// An axis-aligned clip rectangle.
#[derive(Clone, Copy, Debug)]
pub struct ClipRect {
    pub min: f64,
    pub max: f64,
}

#[derive(Clone, Copy)]
enum Edge {
    Left,
    Right,
    Top,
    Bottom,
}

impl ClipRect {
    fn inside(&self, p: P, e: Edge) -> bool {
        match e {
            Edge::Left => p[0] >= self.min,
            Edge::Right => p[0] <= self.max,
            Edge::Top => p[1] >= self.min,
            Edge::Bottom => p[1] <= self.max,
        }
    }

    /// Where segment a–b crosses edge `e`, computed from the endpoints in a
    /// canonical order so that a–b and b–a give the same bits.
    fn cross(&self, a: P, b: P, e: Edge) -> P {
        let (a, b) = if (a[0], a[1]) <= (b[0], b[1]) {
            (a, b)
        } else {
            (b, a)
        };
        match e {
            Edge::Left | Edge::Right => {
                let x = if matches!(e, Edge::Left) {
                    self.min
                } else {
                    self.max
                };
                let t = (x - a[0]) / (b[0] - a[0]);
                [x, a[1] + (b[1] - a[1]) * t]
            }
            Edge::Top | Edge::Bottom => {
                let y = if matches!(e, Edge::Top) {
                    self.min
                } else {
                    self.max
                };
                let t = (y - a[1]) / (b[1] - a[1]);
                [a[0] + (b[0] - a[0]) * t, y]
            }
        }
    }

    pub fn contains(&self, p: P) -> bool {
        p[0] >= self.min && p[0] <= self.max && p[1] >= self.min && p[1] <= self.max
    }

    /// Clips a closed ring (no repeated closing point) by Sutherland–Hodgman.
    /// The result may run along the rectangle's edges, and where the ring
    /// leaves and re-enters more than once those edges overlap and double
    /// back (`repair` removes them after rounding); it is empty when the
    /// ring is wholly outside.
    pub fn ring(&self, ring: &[P]) -> Vec<P> {
        // Fast paths: wholly inside, or bounding box wholly outside.
        let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
        for p in ring {
            lo = [lo[0].min(p[0]), lo[1].min(p[1])];
            hi = [hi[0].max(p[0]), hi[1].max(p[1])];
        }
        if lo[0] >= self.min && lo[1] >= self.min && hi[0] <= self.max && hi[1] <= self.max {
            return ring.to_vec();
        }
        if hi[0] < self.min || hi[1] < self.min || lo[0] > self.max || lo[1] > self.max {
            return Vec::new();
        }
        let mut out = ring.to_vec();
        for e in [Edge::Left, Edge::Right, Edge::Top, Edge::Bottom] {
            if out.is_empty() {
                break;
            }
            let input = std::mem::take(&mut out);
            let mut prev = input[input.len() - 1];
            for &cur in &input {
                let (ci, pi) = (self.inside(cur, e), self.inside(prev, e));
                if ci {
                    if !pi {
                        out.push(self.cross(prev, cur, e));
                    }
                    out.push(cur);
                } else if pi {
                    out.push(self.cross(prev, cur, e));
                }
                prev = cur;
            }
        }
        dedup_ring(&mut out);
        out
    }

    /// Clips a line string into the parts inside the rectangle.
    pub fn line(&self, line: &[P]) -> Vec<Vec<P>> {
        let mut parts = Vec::new();
        let mut cur: Vec<P> = Vec::new();
        for w in line.windows(2) {
            match self.segment(w[0], w[1]) {
                Some((a, b)) => {
                    if cur.last() != Some(&a) {
                        if cur.len() >= 2 {
                            parts.push(std::mem::take(&mut cur));
                        }
                        cur.clear();
                        cur.push(a);
                    }
                    cur.push(b);
                }
                None => {
                    if cur.len() >= 2 {
                        parts.push(std::mem::take(&mut cur));
                    }
                    cur.clear();
                }
            }
        }
        if cur.len() >= 2 {
            parts.push(cur);
        }
        parts
    }

    /// Liang–Barsky clip of one segment.
    fn segment(&self, a: P, b: P) -> Option<(P, P)> {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        for (p, q) in [
            (-dx, a[0] - self.min),
            (dx, self.max - a[0]),
            (-dy, a[1] - self.min),
            (dy, self.max - a[1]),
        ] {
            if p == 0.0 {
                if q < 0.0 {
                    return None;
                }
            } else {
                let r = q / p;
                if p < 0.0 {
                    t0 = t0.max(r);
                } else {
                    t1 = t1.min(r);
                }
                if t0 > t1 {
                    return None;
                }
            }
        }
        let at = |t: f64| {
            if t == 0.0 {
                a
            } else if t == 1.0 {
                b
            } else {
                [a[0] + dx * t, a[1] + dy * t]
            }
        };
        Some((at(t0), at(t1)))
    }
}

/// Removes consecutive duplicates of a closed ring (including last == first).
pub fn dedup_ring(r: &mut Vec<P>) {
    r.dedup();
    while r.len() > 1 && r.first() == r.last() {
        r.pop();
    }
}

/// Douglas–Peucker on an open polyline, keeping both endpoints. Iterative,
/// so long arcs cannot overflow the stack.
pub fn simplify(line: &[P], tolerance: f64) -> Vec<P> {
    if line.len() <= 2 {
        return line.to_vec();
    }
    let mut keep = vec![false; line.len()];
    keep[0] = true;
    keep[line.len() - 1] = true;
    let tol2 = tolerance * tolerance;
    let mut stack = vec![(0usize, line.len() - 1)];
    while let Some((s, e)) = stack.pop() {
        let (a, b) = (line[s], line[e]);
        let (mut best, mut best_i) = (0.0, 0);
        for (i, p) in line.iter().enumerate().take(e).skip(s + 1) {
            let d = seg_dist2(*p, a, b);
            if d > best {
                best = d;
                best_i = i;
            }
        }
        if best > tol2 {
            keep[best_i] = true;
            stack.push((s, best_i));
            stack.push((best_i, e));
        }
    }
    line.iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(*p))
        .collect()
}

fn seg_dist2(p: P, a: P, b: P) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0)
    };
    let (x, y) = (a[0] + dx * t - p[0], a[1] + dy * t - p[1]);
    x * x + y * y
}

/// Twice the signed area of a ring (positive = clockwise in tile space,
/// y down, which MVT calls an exterior ring).
pub fn area2(r: &[[i32; 2]]) -> i64 {
    let n = r.len();
    let mut s = 0i64;
    for i in 0..n {
        let (a, b) = (r[i], r[(i + 1) % n]);
        s += i64::from(a[0]) * i64::from(b[1]) - i64::from(b[0]) * i64::from(a[1]);
    }
    s
}

/// Rounds to integer tile coordinates and drops consecutive duplicates.
pub fn quantize(r: &[P]) -> Vec<[i32; 2]> {
    let mut out: Vec<[i32; 2]> = r
        .iter()
        .map(|p| [p[0].round() as i32, p[1].round() as i32])
        .collect();
    out.dedup();
    out
}

/// A point in integer tile coordinates, as encoded.
pub type Q = [i32; 2];

/// A polygon in integer tile coordinates: its exterior (positive `area2`)
/// and its holes (negative).
pub type QPolygon = (Vec<Q>, Vec<Vec<Q>>);

/// Twice the signed area of the triangle o–a–b (positive when o, a, b turn
/// the way a ring of positive `area2` does). Coordinates here are tile
/// coordinates inside the clip rectangle, so products of differences fit in
/// an i64 with room to spare.
fn cross(o: Q, a: Q, b: Q) -> i64 {
    let (ax, ay) = (
        i64::from(a[0]) - i64::from(o[0]),
        i64::from(a[1]) - i64::from(o[1]),
    );
    let (bx, by) = (
        i64::from(b[0]) - i64::from(o[0]),
        i64::from(b[1]) - i64::from(o[1]),
    );
    ax * by - ay * bx
}

/// Makes the quantised rings of one polygon (`rings[0]` its exterior, the
/// rest its holes, either winding) into valid polygons for MVT 2.1
/// §4.3.4.4: no ring crosses or touches itself, rings meet only at isolated
/// points, no zero-width spike, every hole inside its exterior. Exteriors
/// come out with positive `area2`, holes negative.
///
/// Why this is needed: `ClipRect::ring` is Sutherland–Hodgman, which joins
/// the parts of a concave ring that leave the rectangle and come back with
/// edges *along* the clip line; where the polygon leaves and re-enters more
/// than once, those edges overlap and double back, zero-width bridges
/// between what are really separate pieces. A hole that leaves the
/// rectangle runs along the clip line where the exterior does. Rounding to
/// integers adds its own degeneracies: a thin part of a ring collapses into
/// a spike (A–B–A), two vertices less than a unit apart become one (a
/// figure-eight), a vertex lands on an edge of its own ring.
///
/// All of these are degenerate (they bound no area), so they are repaired
/// exactly and without moving any vertex: a neighbouring grid walks the same
/// shared edges and must still meet this one bit for bit (see `coverage`).
/// This is Weiler–Atherton's stitching done on the edges instead of on
/// crossing points, which needs no special case for holes, corners or
/// rounding:
///
/// 1. The rings are oriented (exterior positive, holes negative) and taken
///    together as one set of directed edges, around which the polygon is
///    the region of winding number one.
/// 2. Every vertex that lies inside an edge splits that edge (noding), so
///    that overlapping collinear edges become identical pieces.
/// 3. Pieces walked both ways cancel. This drops the bridges along the clip
///    line, spikes, and a hole's edges where they run along the exterior's:
///    the hole becomes a notch, or cuts the exterior in two.
/// 4. The remaining edges are linked into closed walks. At a vertex where
///    several walks meet, an incoming edge goes on by the outgoing edge
///    that bounds the same wedge of the polygon, the first one met turning
///    from the incoming edge across the polygon's side; so walks touch at
///    vertices but never cross there. A walk that visits a vertex twice is
///    split there into separate rings (a figure-eight into two lobes, a
///    hole pinched onto its exterior into a hole again).
/// 5. Rings of positive area are exteriors, negative ones holes, each given
///    to the smallest exterior that contains it.
///
/// Rings that touch nothing come out as they went in (oriented), and so
/// does most of every ring: only edges on the clip line, and edges that a
/// pinch splits at a vertex of the same polygon, change. A proper crossing
/// of two edges is not repaired (that would need snap rounding, which moves
/// vertices): clipping makes none, rounding only where a vertex lies within
/// a unit of another edge of its polygon, simplification only where two
/// parts of a ring come within its tolerance of each other; the demo
/// districts in `tests/tile_rings.rs` have none.
///
/// Cost: sorts, O(n log n) in the polygon's vertices, and a noding scan that
/// tests each edge against the vertices in the narrower axis slab of its
/// bounding box (clip-line edges see only the vertices on their line; long
/// diagonal edges across dense rings are the slow case). A polygon where
/// nothing touches stops after the scan.
pub fn repair(rings: &[Vec<Q>]) -> Vec<QPolygon> {
    // Closed, oriented rings; a ring of no area bounds nothing.
    let mut oriented: Vec<Vec<Q>> = Vec::with_capacity(rings.len());
    for (k, r) in rings.iter().enumerate() {
        let mut r = r.clone();
        r.dedup();
        while r.len() > 1 && r.first() == r.last() {
            r.pop();
        }
        let a = if r.len() < 3 { 0 } else { area2(&r) };
        if a == 0 {
            if k == 0 {
                return Vec::new(); // no exterior, no holes
            }
            continue;
        }
        if (a > 0) != (k == 0) {
            r.reverse();
        }
        oriented.push(r);
    }
    if oriented.is_empty() {
        return Vec::new();
    }
    let mut verts: Vec<Q> = oriented.iter().flatten().copied().collect();
    verts.sort_unstable();
    let repeated = verts.windows(2).any(|w| w[0] == w[1]);
    verts.dedup();
    let edges: Vec<(Q, Q)> = oriented
        .iter()
        .flat_map(|r| (0..r.len()).map(move |i| (r[i], r[(i + 1) % r.len()])))
        .collect();
    let hits = vertices_on_edges(&edges, &verts);
    if !repeated && hits.is_empty() {
        // Nothing touches: the rings are the polygon.
        let mut it = oriented.into_iter();
        return it
            .next()
            .map(|ext| (ext, it.collect()))
            .into_iter()
            .collect();
    }
    let edges = cancel(split_edges(&edges, &hits));
    let loops = link(&edges);
    assemble(loops)
}

/// Every (edge index, distance from its start, vertex) where a vertex lies
/// strictly inside an edge, sorted. `verts` is sorted and
/// without duplicates.
fn vertices_on_edges(edges: &[(Q, Q)], verts: &[Q]) -> Vec<(usize, i64, Q)> {
    let mut by_y: Vec<Q> = verts.to_vec();
    by_y.sort_unstable_by_key(|p| (p[1], p[0]));
    let mut hits = Vec::new();
    for (i, &(a, b)) in edges.iter().enumerate() {
        // Scan the slab of the narrower side of the edge's box: a clip-line
        // edge (axis-parallel) sees only the vertices on its line.
        let span = |k: usize| (i64::from(b[k]) - i64::from(a[k])).abs();
        let axis = usize::from(span(0) > span(1));
        let list = if axis == 0 { verts } else { &by_y[..] };
        let other = 1 - axis;
        let (lo, hi) = (a[axis].min(b[axis]), a[axis].max(b[axis]));
        let (olo, ohi) = (a[other].min(b[other]), a[other].max(b[other]));
        let start = list.partition_point(|p| p[axis] < lo);
        for &p in list[start..].iter().take_while(|p| p[axis] <= hi) {
            if p[other] < olo || p[other] > ohi || p == a || p == b || cross(a, b, p) != 0 {
                continue;
            }
            // Collinear: the L1 distance orders the points along the edge.
            let d = (i64::from(p[0]) - i64::from(a[0])).abs()
                + (i64::from(p[1]) - i64::from(a[1])).abs();
            hits.push((i, d, p));
        }
    }
    hits.sort_unstable();
    hits
}

/// Splits the edges at the vertices found inside them (`hits`, sorted).
fn split_edges(edges: &[(Q, Q)], hits: &[(usize, i64, Q)]) -> Vec<(Q, Q)> {
    let mut out = Vec::with_capacity(edges.len() + hits.len());
    let mut h = 0;
    for (i, &(a, b)) in edges.iter().enumerate() {
        let mut prev = a;
        while h < hits.len() && hits[h].0 == i {
            out.push((prev, hits[h].2));
            prev = hits[h].2;
            h += 1;
        }
        out.push((prev, b));
    }
    out
}

/// Cancels edges walked both ways; the rest in a canonical order.
fn cancel(edges: Vec<(Q, Q)>) -> Vec<(Q, Q)> {
    let mut keyed: Vec<(Q, Q, bool)> = edges
        .into_iter()
        .map(|(a, b)| if a < b { (a, b, true) } else { (b, a, false) })
        .collect();
    keyed.sort_unstable();
    let mut out = Vec::with_capacity(keyed.len());
    let mut i = 0;
    while i < keyed.len() {
        let (lo, hi) = (keyed[i].0, keyed[i].1);
        let mut net = 0i64;
        while i < keyed.len() && keyed[i].0 == lo && keyed[i].1 == hi {
            net += if keyed[i].2 { 1 } else { -1 };
            i += 1;
        }
        let e = if net > 0 { (lo, hi) } else { (hi, lo) };
        for _ in 0..net.unsigned_abs() {
            out.push(e);
        }
    }
    out
}

/// Links directed edges (as many in as out at every vertex) into closed
/// walks and splits each walk at the vertices it visits twice.
fn link(edges: &[(Q, Q)]) -> Vec<Vec<Q>> {
    const NONE: usize = usize::MAX;
    let n = edges.len();
    let mut by_start: Vec<usize> = (0..n).collect();
    by_start.sort_unstable_by_key(|&i| (edges[i].0, i));
    let mut by_end: Vec<usize> = (0..n).collect();
    by_end.sort_unstable_by_key(|&i| (edges[i].1, i));
    let mut next = vec![NONE; n];
    let mut taken = vec![false; n];
    // Scratch for the vertices where several walks meet.
    let mut ends: Vec<([i64; 2], bool, usize)> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let (mut s, mut e) = (0, 0);
    while s < n {
        let v = edges[by_start[s]].0;
        let s_end = s + by_start[s..].partition_point(|&i| edges[i].0 == v);
        while e < n && edges[by_end[e]].1 < v {
            e += 1;
        }
        let e_end = e + by_end[e..].partition_point(|&i| edges[i].1 == v);
        let (outs, ins) = (&by_start[s..s_end], &by_end[e..e_end]);
        if outs.len() == 1 && ins.len() == 1 {
            next[ins[0]] = outs[0];
        } else {
            // The edges around v by angle, in the sense of positive `cross`
            // starting from +x; an incoming edge by the direction back to
            // where it came from.
            let dir = |p: Q| {
                [
                    i64::from(p[0]) - i64::from(v[0]),
                    i64::from(p[1]) - i64::from(v[1]),
                ]
            };
            ends.clear();
            ends.extend(ins.iter().map(|&i| (dir(edges[i].0), true, i)));
            ends.extend(outs.iter().map(|&i| (dir(edges[i].1), false, i)));
            let half = |d: [i64; 2]| u8::from(!(d[1] > 0 || (d[1] == 0 && d[0] > 0)));
            ends.sort_unstable_by(|a, b| {
                half(a.0)
                    .cmp(&half(b.0))
                    .then_with(|| 0.cmp(&(a.0[0] * b.0[1] - a.0[1] * b.0[0])))
                    .then(a.1.cmp(&b.1))
                    .then(a.2.cmp(&b.2))
            });
            // Read backwards (turning from an incoming edge across the
            // polygon's side, which is on the positive side of every edge),
            // an incoming edge opens a wedge of the polygon and the next
            // outgoing edge closes it: match them like brackets, starting
            // where the running balance is lowest so that the circle reads
            // as a balanced sequence. Around a vertex where the polygon is
            // only pinched, ins and outs alternate and every bracket is a
            // wedge; where rounding left something worse, the brackets still
            // pair every edge and never cross.
            let m = ends.len();
            let (mut bal, mut low, mut at) = (0i64, 0i64, 0usize);
            for k in 0..m {
                bal += if ends[m - 1 - k].1 { 1 } else { -1 };
                if bal < low {
                    (low, at) = (bal, k + 1);
                }
            }
            stack.clear();
            for k in 0..m {
                let (_, incoming, i) = ends[m - 1 - (at + k) % m];
                if incoming {
                    stack.push(i);
                } else if let Some(j) = stack.pop() {
                    next[j] = i;
                }
            }
        }
        s = s_end;
    }
    // Follow the links; split each walk where it revisits a vertex.
    let mut loops = Vec::new();
    let mut walk: Vec<Q> = Vec::new();
    let mut seen: std::collections::HashMap<Q, usize> = std::collections::HashMap::new();
    for first in 0..n {
        if taken[first] {
            continue;
        }
        walk.clear();
        seen.clear();
        let mut i = first;
        let closed = loop {
            if taken[i] {
                break i == first;
            }
            taken[i] = true;
            let p = edges[i].0;
            match seen.get(&p) {
                Some(&at) => {
                    loops.push(walk[at..].to_vec());
                    for q in &walk[at + 1..] {
                        seen.remove(q);
                    }
                    walk.truncate(at + 1);
                }
                None => {
                    seen.insert(p, walk.len());
                    walk.push(p);
                }
            }
            i = next[i];
            if i == NONE {
                break false;
            }
        };
        if closed {
            loops.push(walk.clone());
        }
    }
    loops
}

/// Exteriors (positive area) with the holes (negative) each one contains.
fn assemble(loops: Vec<Vec<Q>>) -> Vec<QPolygon> {
    let mut polys: Vec<(Vec<Q>, Vec<Vec<Q>>, i64)> = Vec::new();
    let mut holes: Vec<Vec<Q>> = Vec::new();
    for l in loops {
        if l.len() < 3 {
            continue;
        }
        let a = area2(&l);
        if a > 0 {
            polys.push((l, Vec::new(), a));
        } else if a < 0 {
            holes.push(l);
        }
    }
    for h in holes {
        let owner = if polys.len() == 1 {
            Some(0)
        } else {
            // Holes meet exteriors in vertices at most, never along an edge,
            // so the middle of a hole's edge is strictly inside or outside.
            let m = [
                i64::from(h[0][0]) + i64::from(h[1][0]),
                i64::from(h[0][1]) + i64::from(h[1][1]),
            ];
            polys
                .iter()
                .enumerate()
                .filter(|(_, p)| contains2(&p.0, m))
                .min_by_key(|(k, p)| (p.2, *k))
                .map(|(k, _)| k)
        };
        if let Some(k) = owner {
            polys[k].1.push(h);
        }
    }
    polys.into_iter().map(|(e, h, _)| (e, h)).collect()
}

/// Whether the point `m2` (in doubled coordinates) is inside the ring.
fn contains2(r: &[Q], m2: [i64; 2]) -> bool {
    let mut inside = false;
    for i in 0..r.len() {
        let (a, b) = (r[i], r[(i + 1) % r.len()]);
        let (ax, ay) = (2 * i64::from(a[0]), 2 * i64::from(a[1]));
        let (bx, by) = (2 * i64::from(b[0]), 2 * i64::from(b[1]));
        if (ay > m2[1]) != (by > m2[1]) {
            let c = (bx - ax) * (m2[1] - ay) - (by - ay) * (m2[0] - ax);
            if (c > 0) == (by > ay) {
                inside = !inside;
            }
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: ClipRect = ClipRect {
        min: 0.0,
        max: 10.0,
    };

    #[test]
    fn ring_clip() {
        let sq = [[-5.0, -5.0], [5.0, -5.0], [5.0, 5.0], [-5.0, 5.0]];
        let c = R.ring(&sq);
        assert_eq!(c.len(), 4);
        assert!(c.iter().all(|p| R.contains(*p)));
        assert!(
            R.ring(&[[20.0, 20.0], [30.0, 20.0], [30.0, 30.0]])
                .is_empty()
        );
        // A ring around the whole rectangle becomes the rectangle.
        let big = [[-50.0, -50.0], [50.0, -50.0], [50.0, 50.0], [-50.0, 50.0]];
        assert_eq!(R.ring(&big).len(), 4);
    }

    #[test]
    fn shared_edges_clip_to_identical_points() {
        let (a, b) = ([-3.3, 1.7], [7.9, 13.1]);
        let left = R.ring(&[a, b, [-20.0, 13.1]]);
        let right = R.ring(&[b, a, [20.0, -5.0]]);
        let on_edge = |v: &Vec<P>| {
            v.iter()
                .filter(|p| p[0] == 0.0 || p[1] == 10.0)
                .copied()
                .collect::<Vec<_>>()
        };
        let shared: Vec<P> = on_edge(&left)
            .into_iter()
            .filter(|p| right.contains(p))
            .collect();
        assert!(shared.len() >= 2, "{left:?} {right:?}");
    }

    #[test]
    fn line_clip_splits() {
        let parts = R.line(&[
            [-5.0, 5.0],
            [5.0, 5.0],
            [5.0, 20.0],
            [8.0, 20.0],
            [8.0, 5.0],
        ]);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], vec![[0.0, 5.0], [5.0, 5.0], [5.0, 10.0]]);
    }

    #[test]
    fn simplify_keeps_ends_and_shape() {
        let l: Vec<P> = (0..=100)
            .map(|i| [i as f64, if i == 50 { 10.0 } else { (i % 2) as f64 * 0.1 }])
            .collect();
        let s = simplify(&l, 1.0);
        assert_eq!(s.first(), l.first());
        assert_eq!(s.last(), l.last());
        assert!(s.contains(&[50.0, 10.0]));
        assert!(s.len() <= 5);
    }

    // Repair (clip + quantise + repair, as `encode_polygons` does).

    const B: ClipRect = ClipRect {
        min: 0.0,
        max: 100.0,
    };

    fn quantized(rect: &ClipRect, rings: &[Vec<P>]) -> Vec<Vec<Q>> {
        rings.iter().map(|r| quantize(&rect.ring(r))).collect()
    }

    fn geo_polygon(exterior: &[Q], holes: &[Vec<Q>]) -> geo::Polygon {
        let ring = |r: &[Q]| -> geo::LineString {
            let mut c: Vec<geo::Coord> = r
                .iter()
                .map(|p| geo::coord! { x: f64::from(p[0]), y: f64::from(p[1]) })
                .collect();
            if let Some(&first) = c.first() {
                c.push(first);
            }
            geo::LineString(c)
        };
        geo::Polygon::new(ring(exterior), holes.iter().map(|h| ring(h)).collect())
    }

    /// Checks that every polygon is valid (by `geo`), that exteriors are
    /// positive and holes negative, and that no vertex was made up; returns
    /// the number of polygons and their total area (twice, as `area2`).
    fn check(polys: &[QPolygon], input: &[Vec<Q>]) -> (usize, i64) {
        use geo::Validation;
        let known: std::collections::HashSet<Q> = input.iter().flatten().copied().collect();
        let mut total = 0;
        for (e, hs) in polys {
            assert!(area2(e) > 0, "exterior {e:?}");
            total += area2(e);
            for h in hs {
                assert!(area2(h) < 0, "hole {h:?}");
                total += area2(h);
            }
            for p in e.iter().chain(hs.iter().flatten()) {
                assert!(known.contains(p), "new vertex {p:?}");
            }
            let g = geo_polygon(e, hs);
            assert!(g.is_valid(), "{:?}: {:?}", polys, g.validation_errors());
        }
        (polys.len(), total)
    }

    fn is_valid_raw(rings: &[Vec<Q>]) -> bool {
        use geo::Validation;
        geo_polygon(&rings[0], &rings[1..]).is_valid()
    }

    fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<P> {
        vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    }

    /// A C whose back is outside the tile: clipping bridges its two arms
    /// along the clip line; repaired, the arms are two polygons.
    #[test]
    fn c_shape_outside_the_tile_becomes_its_arms() {
        let c = vec![
            [-20.0, 20.0],
            [50.0, 20.0],
            [50.0, 40.0],
            [-10.0, 40.0],
            [-10.0, 60.0],
            [50.0, 60.0],
            [50.0, 80.0],
            [-20.0, 80.0],
        ];
        let q = quantized(&B, std::slice::from_ref(&c));
        assert!(!is_valid_raw(&q), "the clipped ring should have a bridge");
        let out = repair(&q);
        assert_eq!(check(&out, &q), (2, 2 * 2 * 50 * 20));
        assert!(out.iter().all(|(e, h)| e.len() == 4 && h.is_empty()));
        // Either winding in, the same out.
        let mut rev = c;
        rev.reverse();
        assert_eq!(check(&repair(&quantized(&B, &[rev])), &q), (2, 4000));
    }

    /// A C whose arms leave the tile and whose back is inside: clipping is
    /// already right, and the ring comes out as it went in.
    #[test]
    fn c_shape_with_arms_outside_stays_one_polygon() {
        let c = vec![
            [120.0, 20.0],
            [120.0, 40.0],
            [60.0, 40.0],
            [60.0, 60.0],
            [120.0, 60.0],
            [120.0, 80.0],
            [40.0, 80.0],
            [40.0, 20.0],
        ];
        let q = quantized(&B, &[c]);
        assert!(is_valid_raw(&q));
        let out = repair(&q);
        assert_eq!(check(&out, &q), (1, 2 * (60 * 60 - 40 * 20)));
        let mut same = q[0].clone();
        if area2(&same) < 0 {
            same.reverse();
        }
        assert_eq!(out[0].0, same);
    }

    /// A comb whose base is outside the tile leaves and re-enters it four
    /// times; clipping strings the teeth together along the edge, back and
    /// forth. Repaired: four teeth.
    #[test]
    fn ring_leaving_and_reentering_many_times() {
        let mut comb = vec![[5.0, -30.0], [95.0, -30.0], [95.0, -10.0]];
        for x in [70.0, 50.0, 30.0, 10.0] {
            comb.extend([[x + 10.0, -10.0], [x + 10.0, 50.0], [x, 50.0], [x, -10.0]]);
        }
        comb.push([5.0, -10.0]);
        let q = quantized(&B, &[comb]);
        assert!(!is_valid_raw(&q));
        let out = repair(&q);
        assert_eq!(check(&out, &q), (4, 2 * 4 * 10 * 50));
        // Around a corner as well: an L of arms reaching in across two
        // edges, joined outside the tile.
        let l = vec![
            [-30.0, -30.0],
            [50.0, -30.0],
            [50.0, 10.0],
            [40.0, 10.0],
            [40.0, -20.0],
            [-20.0, -20.0],
            [-20.0, 40.0],
            [10.0, 40.0],
            [10.0, 50.0],
            [-30.0, 50.0],
        ];
        let q = quantized(&B, &[l]);
        assert!(!is_valid_raw(&q));
        assert_eq!(check(&repair(&q), &q), (2, 2 * (10 * 10 + 10 * 10)));
    }

    /// A hole that crosses the clip line becomes a notch of the exterior; one
    /// that crosses the tile cuts the exterior in two; one inside stays.
    #[test]
    fn holes_touching_the_clip_line() {
        let ext = rect(-50.0, -50.0, 150.0, 150.0);
        let notch = rect(-20.0, 30.0, 40.0, 70.0);
        let inside = rect(60.0, 60.0, 80.0, 80.0);
        let q = quantized(&B, &[ext.clone(), notch, inside]);
        let out = repair(&q);
        assert_eq!(check(&out, &q), (1, 2 * (100 * 100 - 40 * 40 - 20 * 20)));
        assert_eq!(out[0].1.len(), 1, "{out:?}");
        assert!(out[0].0.contains(&[40, 30]) && out[0].0.contains(&[0, 70]));

        let band = rect(-20.0, 40.0, 120.0, 60.0);
        let q = quantized(&B, &[ext.clone(), band]);
        assert!(!is_valid_raw(&q));
        assert_eq!(check(&repair(&q), &q), (2, 2 * (100 * 100 - 100 * 20)));

        // A hole around the whole tile: nothing is left.
        let q = quantized(&B, &[ext, rect(-10.0, -10.0, 110.0, 110.0)]);
        assert!(repair(&q).is_empty());
    }

    /// A zero-width spike, as data or as rounding makes it, is cut off.
    #[test]
    fn spikes_are_removed() {
        let spiked = vec![
            [0.0, 0.0],
            [50.0, 0.0],
            [50.0, 50.0],
            [70.0, 70.0],
            [50.3, 49.8],
            [0.0, 50.0],
        ];
        let q = vec![quantize(&spiked)];
        assert!(!is_valid_raw(&q));
        let out = repair(&q);
        assert_eq!(check(&out, &q), (1, 2 * 50 * 50));
        assert_eq!(out[0].0.len(), 4);
        // A ring that is all spike has nothing left.
        assert!(repair(&[vec![[0, 0], [10, 10], [0, 0], [10, 10]]]).is_empty());
    }

    /// Two lobes joined by a neck narrower than a unit: rounding makes a
    /// figure-eight, repaired into two polygons that touch at a point. A
    /// hole rounded onto the exterior is split off it the same way.
    #[test]
    fn figure_eight_after_quantisation() {
        let eight = vec![
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 9.6],
            [20.0, 10.0],
            [20.0, 20.0],
            [10.0, 20.0],
            [10.4, 10.0],
            [0.0, 10.0],
        ];
        let q = vec![quantize(&eight)];
        assert_eq!(q[0].iter().filter(|p| **p == [10, 10]).count(), 2);
        assert!(!is_valid_raw(&q));
        let out = repair(&q);
        assert_eq!(check(&out, &q), (2, 2 * 2 * 10 * 10));

        let ext = rect(0.0, 0.0, 100.0, 100.0);
        let hole = vec![[0.3, 50.0], [30.0, 40.0], [30.0, 60.0]];
        let q = vec![quantize(&ext), quantize(&hole)];
        let out = repair(&q);
        assert_eq!(check(&out, &q), (1, 2 * 100 * 100 - 2 * 300));
        assert_eq!(out[0].1.len(), 1);
    }

    /// Two grids sharing a zigzag edge that crosses the clip line several
    /// times: after repair every edge off the clip line is still walked by
    /// both, in opposite directions.
    #[test]
    fn repaired_neighbours_still_meet() {
        let zig: Vec<P> = (0..=12)
            .map(|i| {
                [
                    if i % 2 == 0 { -8.0 } else { 7.5 },
                    5.0 + 7.3 * f64::from(i),
                ]
            })
            .collect();
        let mut left: Vec<P> = vec![[-40.0, 92.6], [-40.0, 5.0]];
        left.extend(zig.iter().copied());
        let mut right: Vec<P> = zig.iter().rev().copied().collect();
        right.extend([[60.0, 5.0], [60.0, 92.6]]);
        let on_line = |a: Q, b: Q| a[0] == 0 && b[0] == 0;
        let edges = |polys: &[QPolygon]| {
            let mut v = Vec::new();
            for (e, hs) in polys {
                for r in std::iter::once(e).chain(hs) {
                    for i in 0..r.len() {
                        let (a, b) = (r[i], r[(i + 1) % r.len()]);
                        if !on_line(a, b) {
                            v.push((a, b));
                        }
                    }
                }
            }
            v
        };
        let (ql, qr) = (quantized(&B, &[left]), quantized(&B, &[right]));
        let (l, r) = (repair(&ql), repair(&qr));
        check(&l, &ql);
        check(&r, &qr);
        assert_eq!(l.len(), 6, "{l:?}");
        let (el, er) = (edges(&l), edges(&r));
        let shared: Vec<(Q, Q)> = el
            .iter()
            .filter(|(a, b)| a[0] > 0 || b[0] > 0)
            .copied()
            .collect();
        assert!(shared.len() >= 12);
        for (a, b) in &shared {
            assert!(er.contains(&(*b, *a)), "{a:?}-{b:?} has no neighbour");
        }
    }

    /// Star-shaped rings (with a star-shaped hole, every other one) around
    /// centres on and beyond the tile's edges and corners, whose rays leave
    /// and re-enter the buffered tile many times: repaired, every polygon is
    /// valid and together they keep the area of the rings as clipped and
    /// rounded (and so, up to rounding, of the star inside the tile).
    #[test]
    fn random_stars_repair_to_their_clipped_area() {
        use geo::{Area, BooleanOps};
        let t = ClipRect {
            min: -64.0,
            max: 4160.0,
        };
        let tile = geo::Rect::new((-64.0, -64.0), (4160.0, 4160.0)).to_polygon();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut pieces, mut bridged) = (0, 0);
        for k in 0..300 {
            let c = [-700.0 + rnd() * 5500.0, -700.0 + rnd() * 5500.0];
            let mut star = |r0: f64, r1: f64| -> Vec<P> {
                let n = 8 + (rnd() * 60.0) as usize;
                (0..n)
                    .map(|i| {
                        let a = (i as f64 + rnd() * 0.8) / n as f64 * std::f64::consts::TAU;
                        let r = r0 + rnd() * (r1 - r0);
                        [c[0] + r * a.cos(), c[1] + r * a.sin()]
                    })
                    .collect()
            };
            let mut rings = vec![star(1500.0, 3000.0)];
            if k % 2 == 1 {
                rings.push(star(200.0, 1400.0));
            }
            let q = quantized(&t, &rings);
            if !is_valid_raw(&q) {
                bridged += 1;
            }
            let out = repair(&q);
            let (n, total) = check(&out, &q);
            pieces += n;
            let line = |r: &[P]| -> geo::LineString { r.iter().map(|p| (p[0], p[1])).collect() };
            let exact = geo::Polygon::new(
                line(&rings[0]),
                rings[1..].iter().map(|r| line(r)).collect(),
            )
            .intersection(&tile)
            .unsigned_area();
            let perimeter: f64 = q
                .iter()
                .flat_map(|r| (0..r.len()).map(move |i| (r[i], r[(i + 1) % r.len()])))
                .map(|(a, b)| f64::from(a[0] - b[0]).hypot(f64::from(a[1] - b[1])))
                .sum();
            // Exactly the signed area of the rings as clipped and rounded:
            // noding, cancelling and relinking edges keep it.
            let raw: i64 = q
                .iter()
                .enumerate()
                .filter(|(_, r)| r.len() >= 3)
                .map(|(i, r)| {
                    if i == 0 {
                        area2(r).abs()
                    } else {
                        -area2(r).abs()
                    }
                })
                .sum();
            assert_eq!(total, raw, "star {k}");
            let got = total as f64 / 2.0;
            assert!(
                (got - exact).abs() <= perimeter * 0.75 + 1.0,
                "star {k}: area {got}, clipped exactly {exact}"
            );
        }
        // Most clipped stars were invalid, and fell apart into pieces.
        assert!(
            bridged > 100 && pieces > 300,
            "{bridged} invalid, {pieces} pieces"
        );
    }
}
