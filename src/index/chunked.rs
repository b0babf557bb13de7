//! A vector in shared chunks: cloning it copies one pointer per 1,024
//! elements, and changing an element copies only its chunk. It is what lets
//! a live write patch a layer of millions of features into a new catalog
//! snapshot in microseconds, while readers keep the old one.
//!
//! Invariant: every chunk but the last is full, so element `i` lives in
//! chunk `i >> BITS` at `i & MASK`.

use std::ops::Index;
use std::sync::Arc;

const BITS: usize = 10;
const CHUNK: usize = 1 << BITS;
const MASK: usize = CHUNK - 1;

#[derive(Debug)]
pub struct Chunked<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Clone for Chunked<T> {
    fn clone(&self) -> Self {
        Chunked {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> Chunked<T> {
    pub fn from_vec(v: Vec<T>) -> Chunked<T> {
        let len = v.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut it = v.into_iter();
        loop {
            let c: Vec<T> = it.by_ref().take(CHUNK).collect();
            if c.is_empty() {
                break;
            }
            chunks.push(Arc::new(c));
        }
        Chunked { chunks, len }
    }

    /// Replaces element `i` (copies its chunk if it is shared).
    pub fn set(&mut self, i: usize, v: T) {
        assert!(i < self.len, "index {i} out of {}", self.len);
        Arc::make_mut(&mut self.chunks[i >> BITS])[i & MASK] = v;
    }

    /// Appends at the end.
    pub fn push(&mut self, v: T) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => Arc::make_mut(c).push(v),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(v);
                self.chunks.push(Arc::new(c));
            }
        }
        self.len += 1;
    }

    /// Everything, in order, as one vector (for rebuilds).
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().cloned().collect()
    }
}

impl<T> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        if i < self.len {
            Some(&self.chunks[i >> BITS][i & MASK])
        } else {
            None
        }
    }

    pub fn last(&self) -> Option<&T> {
        self.chunks.last().and_then(|c| c.last())
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The chunks, for parallel work over them.
    pub fn chunks(&self) -> &[Arc<Vec<T>>] {
        &self.chunks
    }

    /// Binary search by a key that ascends with the index.
    pub fn binary_search_by_key<K: Ord>(
        &self,
        key: &K,
        f: impl Fn(&T) -> K,
    ) -> Result<usize, usize> {
        // The chunk whose first key is the last one not above `key`.
        let c = self
            .chunks
            .partition_point(|c| c.first().is_some_and(|x| f(x) <= *key));
        if c == 0 {
            return Err(0);
        }
        let base = (c - 1) << BITS;
        self.chunks[c - 1]
            .binary_search_by(|x| f(x).cmp(key))
            .map(|i| base + i)
            .map_err(|i| base + i)
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        &self.chunks[i >> BITS][i & MASK]
    }
}

impl<'a, T> IntoIterator for &'a Chunked<T> {
    type Item = &'a T;
    #[allow(clippy::type_complexity)]
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Arc<Vec<T>>>,
        std::slice::Iter<'a, T>,
        fn(&'a Arc<Vec<T>>) -> std::slice::Iter<'a, T>,
    >;
    fn into_iter(self) -> Self::IntoIter {
        fn chunk<T>(c: &Arc<Vec<T>>) -> std::slice::Iter<'_, T> {
            c.iter()
        }
        self.chunks
            .iter()
            .flat_map(chunk as fn(&'a Arc<Vec<T>>) -> _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_vec() {
        let n = 3 * CHUNK + 17;
        let v: Vec<u64> = (0..n as u64).map(|x| x * 2).collect();
        let mut c = Chunked::from_vec(v.clone());
        assert_eq!(c.len(), n);
        assert!(c.iter().eq(v.iter()));
        assert!((&c).into_iter().eq(v.iter()));
        for probe in [0u64, 2, 8190, 8192, 2 * n as u64 - 2] {
            assert_eq!(
                c.binary_search_by_key(&probe, |x| *x),
                v.binary_search(&probe)
            );
        }
        for probe in [1u64, 8191, 2 * n as u64 + 5] {
            assert_eq!(
                c.binary_search_by_key(&probe, |x| *x),
                v.binary_search(&probe)
            );
        }
        let snapshot = c.clone();
        c.set(CHUNK + 1, 7);
        c.push(99);
        for _ in 0..CHUNK {
            c.push(100);
        }
        assert_eq!(
            snapshot[CHUNK + 1],
            2 * (CHUNK as u64 + 1),
            "snapshot unchanged"
        );
        assert_eq!(snapshot.len(), n);
        assert_eq!(c[CHUNK + 1], 7);
        assert_eq!(c[n], 99);
        assert_eq!(c.len(), n + 1 + CHUNK);
        assert_eq!(c.last(), Some(&100));
        // Untouched chunks are still shared.
        assert!(Arc::ptr_eq(&c.chunks()[0], &snapshot.chunks()[0]));
    }
}
