//! Clipping and simplification in tile coordinates.
//!
//! Everything here must be *deterministic per segment*: two grids that share
//! an edge walk it in opposite directions, and must still get bit-identical
//! clip points and simplified vertices, or a hairline gap opens between them.
//! So intersections are computed from the segment's endpoints in a canonical
//! order, and Douglas–Peucker runs on arcs in a canonical direction (see
//! `coverage`).

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
    /// The result may run along the rectangle's edges; it is empty when the
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
}
