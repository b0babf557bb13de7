//! A layer's R-tree in two parts, so that a live write does not copy it.
//!
//! `base` is bulk-loaded and shared (behind an `Arc`) by every catalog
//! snapshot built from it; `delta` holds the entries added since, and
//! `stale` the positions whose `base` entry no longer holds (a feature that
//! moved). A new snapshot clones only `delta` and `stale`, which stay small:
//! once they pass a sixteenth of `base` (at least [`MIN_DELTA`]), the next
//! change folds everything into a fresh `base`, so the copying per change
//! stays a small fraction of the layer and the rebuild is amortised over
//! thousands of changes.
//!
//! Queries see `base` minus `stale`, plus `delta`: the same answers as one
//! tree holding the current entries (tests/catalog.rs compares the two).

use super::Entry;
use rstar::{AABB, RTree};
use std::sync::Arc;

/// The delta may grow to this many entries whatever the size of `base`.
pub const MIN_DELTA: usize = 2048;

#[derive(Clone, Debug)]
pub struct Spatial {
    base: Arc<RTree<Entry>>,
    delta: RTree<Entry>,
    /// Sorted positions whose `base` entry is out of date.
    stale: Vec<u32>,
}

impl Default for Spatial {
    fn default() -> Self {
        Spatial::bulk_load(Vec::new())
    }
}

impl Spatial {
    pub fn bulk_load(entries: Vec<Entry>) -> Spatial {
        Spatial {
            base: Arc::new(RTree::bulk_load(entries)),
            delta: RTree::new(),
            stale: Vec::new(),
        }
    }

    /// Entries that answer queries.
    pub fn size(&self) -> usize {
        self.base.size() - self.stale.len() + self.delta.size()
    }

    fn live_in_base(&self, e: &Entry) -> bool {
        self.stale.binary_search(&e.data).is_err()
    }

    /// Adds an entry (its position must have none).
    pub fn insert(&mut self, e: Entry) {
        self.delta.insert(e);
        self.settle();
    }

    /// Removes an entry equal to `e` (same envelope and position).
    pub fn remove(&mut self, e: &Entry) {
        if self.delta.remove(e).is_none() {
            if let Err(at) = self.stale.binary_search(&e.data) {
                self.stale.insert(at, e.data);
            }
        }
        self.settle();
    }

    /// Folds `delta` and `stale` into a new `base` once they have grown.
    fn settle(&mut self) {
        let pending = self.delta.size() + self.stale.len();
        if pending <= MIN_DELTA.max(self.base.size() / 16) {
            return;
        }
        let mut all: Vec<Entry> = self
            .base
            .iter()
            .filter(|e| self.live_in_base(e))
            .copied()
            .collect();
        all.extend(self.delta.iter().copied());
        *self = Spatial::bulk_load(all);
    }

    /// Entries whose envelope meets `env`.
    pub fn locate_in_envelope_intersecting<'a>(
        &'a self,
        env: &AABB<[f64; 2]>,
    ) -> impl Iterator<Item = &'a Entry> + use<'a> {
        self.base
            .locate_in_envelope_intersecting(env)
            .filter(|e| self.live_in_base(e))
            .chain(self.delta.locate_in_envelope_intersecting(env))
    }

    /// Entries by increasing squared distance of their envelope to `p`.
    pub fn nearest_neighbor_iter_with_distance_2<'a>(
        &'a self,
        p: &[f64; 2],
    ) -> impl Iterator<Item = (&'a Entry, f64)> + use<'a> {
        let a = self
            .base
            .nearest_neighbor_iter_with_distance_2(p)
            .filter(|(e, _)| self.live_in_base(e))
            .peekable();
        let b = self
            .delta
            .nearest_neighbor_iter_with_distance_2(p)
            .peekable();
        Merge { a, b }
    }
}

/// Two distance-ordered iterators merged into one.
struct Merge<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = (&'a Entry, f64)>,
    B: Iterator<Item = (&'a Entry, f64)>,
{
    type Item = (&'a Entry, f64);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y.1 < x.1 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstar::primitives::{GeomWithData, Rectangle};

    fn pt(i: u32, x: f64, y: f64) -> Entry {
        GeomWithData::new(Rectangle::from_corners([x, y], [x, y]), i)
    }

    /// Random inserts and moves, checked against one plain R-tree after
    /// every step, across several folds into a new base.
    #[test]
    fn answers_like_one_tree() {
        let mut seed = 7u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 10_000) as f64 / 100.0
        };
        let mut cur: Vec<Entry> = (0..3000).map(|i| pt(i, rnd(), rnd())).collect();
        let mut s = Spatial::bulk_load(cur.clone());
        for step in 0..6000u32 {
            if step % 3 == 0 {
                let i = (rnd() * 29.0) as usize % cur.len();
                let moved = pt(i as u32, rnd(), rnd());
                s.remove(&cur[i]);
                s.insert(moved);
                cur[i] = moved;
            } else {
                let e = pt(cur.len() as u32, rnd(), rnd());
                s.insert(e);
                cur.push(e);
            }
            if step % 500 == 0 || step == 5999 {
                let plain = RTree::bulk_load(cur.clone());
                assert_eq!(s.size(), plain.size());
                let (x, y) = (rnd(), rnd());
                let env = AABB::from_corners([x, y], [x + 15.0, y + 15.0]);
                let mut got: Vec<u32> = s
                    .locate_in_envelope_intersecting(&env)
                    .map(|e| e.data)
                    .collect();
                let mut want: Vec<u32> = plain
                    .locate_in_envelope_intersecting(&env)
                    .map(|e| e.data)
                    .collect();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "step {step}");
                let d: Vec<f64> = s
                    .nearest_neighbor_iter_with_distance_2(&[x, y])
                    .take(50)
                    .map(|(_, d)| d)
                    .collect();
                let dw: Vec<f64> = plain
                    .nearest_neighbor_iter_with_distance_2(&[x, y])
                    .take(50)
                    .map(|(_, d)| d)
                    .collect();
                assert_eq!(d, dw, "step {step}: nearest order");
            }
        }
        // It folded at least once, and the delta stays bounded.
        assert!(s.delta.size() + s.stale.len() <= MIN_DELTA.max(s.base.size() / 16));
        assert!(s.base.size() > 3000);
    }
}
