//! A layer's R-tree in two parts, so that a live write does not copy it.
//!
//! `base` is bulk-loaded and shared (behind an `Arc`) by every catalog
//! snapshot built from it; `delta` holds the entries added since, and
//! `stale` the positions whose `base` entry no longer holds (a feature that
//! moved). A new snapshot clones only `delta` and `stale`, which stay small:
//! once they pass a sixteenth of `base` (at least [`MIN_DELTA`]), a thread
//! bulk-loads a fresh `base` from what they were then, and the first change
//! after it is done adopts it (keeping only what changed meanwhile in
//! `delta` and `stale`). The writer never waits for a bulk load (a 360,000
//! point tree takes 50–90 ms, which a live batch would otherwise wait).
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
    /// A new base being built, shared by the snapshots that saw it start.
    folding: Option<Arc<Fold>>,
}

/// A base under construction: the old base without `stale`, plus `delta`.
#[derive(Debug)]
struct Fold {
    done: std::sync::OnceLock<Arc<RTree<Entry>>>,
    delta: Vec<Entry>,
    stale: Vec<u32>,
}

type Key = (u32, [u64; 4]);

fn key(e: &Entry) -> Key {
    let env = rstar::RTreeObject::envelope(e.geom());
    let (lo, hi) = (env.lower(), env.upper());
    (
        e.data,
        [
            lo[0].to_bits(),
            lo[1].to_bits(),
            hi[0].to_bits(),
            hi[1].to_bits(),
        ],
    )
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
            folding: None,
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
        self.adopt();
        self.delta.insert(e);
        self.settle();
    }

    /// Removes an entry equal to `e` (same envelope and position).
    pub fn remove(&mut self, e: &Entry) {
        self.adopt();
        if self.delta.remove(e).is_none()
            && let Err(at) = self.stale.binary_search(&e.data)
        {
            self.stale.insert(at, e.data);
        }
        self.settle();
    }

    /// Starts building a new base once `delta` and `stale` have grown.
    fn settle(&mut self) {
        let pending = self.delta.size() + self.stale.len();
        if self.folding.is_some() || pending <= MIN_DELTA.max(self.base.size() / 16) {
            return;
        }
        let fold = Arc::new(Fold {
            done: std::sync::OnceLock::new(),
            delta: self.delta.iter().copied().collect(),
            stale: self.stale.clone(),
        });
        let (base, f) = (self.base.clone(), fold.clone());
        let build = move || {
            let mut all: Vec<Entry> = base
                .iter()
                .filter(|e| f.stale.binary_search(&e.data).is_err())
                .copied()
                .collect();
            all.extend(f.delta.iter().copied());
            let _ = f.done.set(Arc::new(RTree::bulk_load(all)));
        };
        if std::thread::Builder::new()
            .name("rtree-fold".into())
            .spawn(build)
            .is_err()
        {
            // No thread to be had: fold here instead.
            let mut all: Vec<Entry> = self
                .base
                .iter()
                .filter(|e| self.live_in_base(e))
                .copied()
                .collect();
            all.extend(self.delta.iter().copied());
            *self = Spatial::bulk_load(all);
            return;
        }
        self.folding = Some(fold);
    }

    /// Takes a finished new base: what changed since it started stays in
    /// `delta` (added) and `stale` (removed from it).
    fn adopt(&mut self) {
        let Some(f) = &self.folding else { return };
        let Some(base) = f.done.get() else { return };
        let had: std::collections::HashSet<Key> = f.delta.iter().map(key).collect();
        let has: std::collections::HashSet<Key> = self.delta.iter().map(key).collect();
        let mut stale: Vec<u32> = self
            .stale
            .iter()
            .filter(|p| f.stale.binary_search(p).is_err())
            .copied()
            .chain(
                f.delta
                    .iter()
                    .filter(|e| !has.contains(&key(e)))
                    .map(|e| e.data),
            )
            .collect();
        stale.sort_unstable();
        stale.dedup();
        let delta: Vec<Entry> = self
            .delta
            .iter()
            .filter(|e| !had.contains(&key(e)))
            .copied()
            .collect();
        *self = Spatial {
            base: base.clone(),
            delta: RTree::bulk_load(delta),
            stale,
            folding: None,
        };
    }

    /// Waits for a fold in progress and adopts it (tests).
    #[cfg(test)]
    fn finish_fold(&mut self) {
        while let Some(f) = &self.folding {
            if f.done.get().is_some() {
                self.adopt();
            } else {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
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
            if step % 1000 == 999 {
                s.finish_fold();
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
        s.finish_fold();
        assert!(s.delta.size() + s.stale.len() <= 2 * MIN_DELTA.max(s.base.size() / 16));
        assert!(s.base.size() > 3000);
    }
}
