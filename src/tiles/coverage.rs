//! Coverage-aware simplification: simplify each shared boundary once.
//!
//! Simplifying the grids of one level polygon by polygon moves the two copies
//! of a shared edge differently, and neighbours show slivers and gaps at low
//! zoom. Instead we find the *arcs* of the coverage: maximal chains of
//! vertices that each have exactly two distinct neighbours in the edge graph
//! of all rings. Their endpoints (*nodes*: where three or more grids meet,
//! where a shared edge ends, where a clipped ring meets the tile border) stay
//! fixed; each arc is simplified in a canonical direction, so both polygons
//! that walk it (in opposite directions) get the very same vertices; rings
//! are then rebuilt from their arcs.
//!
//! This relies on neighbours sharing vertices exactly, which the demo
//! guarantees and imported coverages usually do (QGIS topological editing,
//! PostGIS coverages); where they do not, the result is no worse than
//! simplifying each polygon alone.

use super::clip::{P, simplify};
use std::collections::HashMap;

#[inline]
fn key(p: P) -> (u64, u64) {
    (p[0].to_bits(), p[1].to_bits())
}

/// Simplifies every ring of every polygon (`polys[i][r]` = ring `r` of
/// polygon `i`, closed implicitly, no repeated point) with `tolerance`,
/// keeping shared boundaries identical. Vertices for which `fixed` is true
/// (the tile's clip border) are kept as nodes too, so simplification never
/// pulls a polygon off the border and opens a seam between tiles.
pub fn simplify_coverage(
    polys: &[Vec<Vec<P>>],
    tolerance: f64,
    fixed: impl Fn(P) -> bool,
) -> Vec<Vec<Vec<P>>> {
    // Distinct neighbours of every vertex, over all rings.
    let mut nbrs: HashMap<(u64, u64), [(u64, u64); 3]> = HashMap::new();
    let mut degree: HashMap<(u64, u64), u8> = HashMap::new();
    for ring in polys.iter().flatten() {
        let n = ring.len();
        if n < 3 {
            continue;
        }
        for i in 0..n {
            let v = key(ring[i]);
            for w in [key(ring[(i + n - 1) % n]), key(ring[(i + 1) % n])] {
                // Degree is counted up to 3; anything from 3 on is a node.
                let d = degree.entry(v).or_insert(0);
                if *d >= 3 {
                    continue;
                }
                let slots = nbrs.entry(v).or_insert([(u64::MAX, u64::MAX); 3]);
                if !slots[..usize::from(*d)].contains(&w) {
                    slots[usize::from(*d)] = w;
                    *d += 1;
                }
            }
        }
    }
    let is_node = |p: P| fixed(p) || degree.get(&key(p)).is_none_or(|d| *d != 2);

    polys
        .iter()
        .map(|rings| {
            rings
                .iter()
                .map(|ring| simplify_ring(ring, tolerance, &is_node))
                .filter(|r| r.len() >= 3)
                .collect()
        })
        .collect()
}

fn less(a: P, b: P) -> bool {
    (a[0], a[1]) < (b[0], b[1])
}

fn simplify_ring(ring: &[P], tolerance: f64, is_node: &impl Fn(P) -> bool) -> Vec<P> {
    let n = ring.len();
    if n < 4 {
        return ring.to_vec();
    }
    let mut nodes: Vec<usize> = (0..n).filter(|&i| is_node(ring[i])).collect();
    if nodes.is_empty() {
        // A ring that shares nothing, or shares all of itself with one other
        // ring (an island and its hole): anchor it at its smallest vertex, a
        // choice both copies make alike.
        let m = (0..n)
            .min_by(|&a, &b| {
                (ring[a][0], ring[a][1])
                    .partial_cmp(&(ring[b][0], ring[b][1]))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .unwrap_or(0);
        nodes.push(m);
    }
    let mut out: Vec<P> = Vec::with_capacity(n);
    for (k, &start) in nodes.iter().enumerate() {
        let end = nodes[(k + 1) % nodes.len()];
        let len = if end > start {
            end - start
        } else {
            end + n - start
        };
        let arc: Vec<P> = (0..=len).map(|i| ring[(start + i) % n]).collect();
        // Canonical direction: by endpoints, or for a closed arc by the
        // second and second-to-last vertices.
        let last = arc.len() - 1;
        let reverse = if arc[0] != arc[last] {
            less(arc[last], arc[0])
        } else {
            arc.len() > 2 && less(arc[last - 1], arc[1])
        };
        let simplified = if reverse {
            let mut r: Vec<P> = arc.iter().rev().copied().collect();
            r = simplify(&r, tolerance);
            r.reverse();
            r
        } else {
            simplify(&arc, tolerance)
        };
        // Each arc's last point is the next arc's first.
        out.extend_from_slice(&simplified[..simplified.len() - 1]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two squares sharing a wiggly edge: after simplification the shared
    /// part is identical in both (walked in opposite directions).
    #[test]
    fn shared_arcs_simplify_identically() {
        let wiggle: Vec<P> = (0..=40)
            .map(|i| [100.0 + ((i * 7) % 5) as f64 * 0.7, i as f64 * 10.0])
            .collect();
        let mut left = vec![[0.0, 400.0], [0.0, 0.0]];
        left.extend(wiggle.iter().copied());
        let mut right: Vec<P> = wiggle.iter().rev().copied().collect();
        right.extend([[200.0, 0.0], [200.0, 400.0]]);
        // Make the right ring start elsewhere, and its shared run go the
        // other way: a different walk of the same arc.
        right.rotate_left(3);
        let out = simplify_coverage(&[vec![left], vec![right]], 3.0, |_| false);
        let (l, r) = (&out[0][0], &out[1][0]);
        let shared_l: Vec<P> = l
            .iter()
            .filter(|p| p[0] > 50.0 && p[0] < 150.0)
            .copied()
            .collect();
        let mut shared_r: Vec<P> = r
            .iter()
            .filter(|p| p[0] > 50.0 && p[0] < 150.0)
            .copied()
            .collect();
        shared_r.sort_by(|a, b| a[1].partial_cmp(&b[1]).unwrap());
        let mut sl = shared_l.clone();
        sl.sort_by(|a, b| a[1].partial_cmp(&b[1]).unwrap());
        assert_eq!(sl, shared_r);
        assert!(shared_l.len() < wiggle.len(), "nothing simplified");
        // The endpoints of the shared arc (nodes) stay.
        assert!(sl.contains(&wiggle[0]) && sl.contains(&wiggle[40]));
    }
}
