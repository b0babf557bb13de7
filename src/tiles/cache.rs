//! The tile cache: encoded tiles (raw and gzip) in memory, weighed by bytes.
//!
//! Concurrent misses of one tile build it once (moka coalesces
//! `try_get_with` callers), on the blocking pool so rendering never stalls
//! the async workers. [`TileCache::invalidate_bbox`] drops exactly the cached
//! tiles, at every zoom and for every layer set, whose buffered bounds meet a
//! changed area; everything else stays warm.
//!
//! A render that started from the previous catalog snapshot can finish after
//! the invalidation that followed the snapshot's replacement. Every entry
//! therefore remembers the cache generation it was rendered at (read before
//! the caller took its snapshot), every invalidation bumps the generation
//! and records its area, and an entry older than an invalidation that meets
//! its tile is stale: [`TileCache::get_or_render`] drops it and tells the
//! caller to render again from a fresh snapshot.

use super::mercator::TileId;
use bytes::Bytes;
use geo::Rect;
use std::io::Write;
use std::sync::Arc;

/// A cached tile. An empty `raw` means "no features here" (HTTP 204).
pub struct TileEntry {
    pub raw: Bytes,
    pub gzip: Bytes,
    /// A strong validator: a hash of the bytes, so an unchanged tile keeps
    /// its ETag across invalidations and restarts.
    pub etag: String,
    /// The cache generation the render started at.
    pub generation: u64,
}

impl TileEntry {
    pub fn new(raw: Vec<u8>, generation: u64) -> TileEntry {
        let gzip = if raw.is_empty() {
            Vec::new()
        } else {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 2),
                flate2::Compression::new(6),
            );
            // Writing to a Vec cannot fail.
            let _ = enc.write_all(&raw);
            enc.finish().unwrap_or_default()
        };
        let etag = format!("\"{:016x}\"", fnv1a(&raw));
        TileEntry {
            raw: Bytes::from(raw),
            gzip: Bytes::from(gzip),
            etag,
            generation,
        }
    }
}

/// FNV-1a, 64 bit: stable across builds and platforms (unlike std's hasher).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TileKey {
    /// The canonical layer list (comma-joined, in drawing order).
    pub layers: Arc<str>,
    pub tile: TileId,
}

pub struct TileCache {
    cache: moka::future::Cache<TileKey, Arc<TileEntry>>,
    /// Buffer (fraction of a tile) used when matching changed areas, so a
    /// feature that only reaches a tile's buffer still refreshes it.
    buffer: f64,
    /// Tiles rendered so far (misses that did the work).
    rendered: Arc<std::sync::atomic::AtomicU64>,
    /// Bumped by every invalidation.
    generation: std::sync::atomic::AtomicU64,
    /// The latest invalidations: (generation, area), oldest first.
    recent: std::sync::Mutex<std::collections::VecDeque<(u64, Arc<[Rect]>)>>,
}

/// Invalidations remembered for staleness checks; an entry older than all
/// of them is treated as stale.
const RECENT: usize = 4096;

impl TileCache {
    pub fn new(max_bytes: u64, buffer: f64) -> TileCache {
        let cache = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &TileKey, v: &Arc<TileEntry>| {
                (v.raw.len() + v.gzip.len() + k.layers.len() + 64).min(u32::MAX as usize) as u32
            })
            .support_invalidation_closures()
            .build();
        TileCache {
            cache,
            buffer,
            rendered: Arc::default(),
            generation: Default::default(),
            recent: Default::default(),
        }
    }

    /// The current generation. Read it *before* taking the catalog snapshot
    /// a render will use, and pass it to [`TileCache::get_or_render`].
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The cached tile, or `render` run once (for all concurrent callers).
    /// `render` is the future of an encoded tile (a job on the tile lane of
    /// [`crate::work::Work`]). `Ok(None)`: what came back was rendered
    /// before a change that touches this tile (it has been dropped); render
    /// again from a fresh snapshot.
    pub async fn get_or_render<F>(
        &self,
        key: TileKey,
        generation: u64,
        render: F,
    ) -> Result<Option<Arc<TileEntry>>, crate::work::WorkError>
    where
        F: std::future::Future<Output = Result<Vec<u8>, crate::work::WorkError>> + Send + 'static,
    {
        let rendered = self.rendered.clone();
        let e = self
            .cache
            .try_get_with(key.clone(), async move {
                let raw = render.await?;
                rendered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, crate::work::WorkError>(Arc::new(TileEntry::new(raw, generation)))
            })
            .await
            .map_err(|e| (*e).clone())?;
        if self.stale(&key, e.generation) {
            self.cache.invalidate(&key).await;
            return Ok(None);
        }
        Ok(Some(e))
    }

    fn stale(&self, key: &TileKey, generation: u64) -> bool {
        if generation >= self.generation() {
            return false;
        }
        let recent = match self.recent.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match recent.front() {
            Some((oldest, _)) if *oldest <= generation + 1 => {}
            // The invalidations since this render are no longer all known.
            _ => return true,
        }
        let b = key.tile.bounds(self.buffer);
        recent
            .iter()
            .any(|(g, areas)| *g > generation && areas.iter().any(|a| meets(&b, a)))
    }

    /// Drops every cached tile whose (buffered) bounds meet `area`.
    pub fn invalidate_bbox(&self, area: Rect) {
        self.invalidate_rects(vec![area]);
    }

    /// Drops every cached tile whose (buffered) bounds meet any of `areas`:
    /// one generation and one cache scan for a whole batch of changes (the
    /// points of a batch of work orders lie all over the district, so their
    /// union would drop far too much).
    pub fn invalidate_rects(&self, areas: Vec<Rect>) {
        if areas.is_empty() {
            return;
        }
        let areas: Arc<[Rect]> = areas.into();
        {
            let mut recent = match self.recent.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let g = self
                .generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            recent.push_back((g, areas.clone()));
            if recent.len() > RECENT {
                recent.pop_front();
            }
        }
        let buffer = self.buffer;
        let res = self.cache.invalidate_entries_if(move |k, _| {
            let b = k.tile.bounds(buffer);
            areas.iter().any(|a| meets(&b, a))
        });
        if let Err(e) = res {
            // Only possible without support_invalidation_closures(): then
            // correctness demands dropping everything.
            tracing::warn!("tile cache: {e}; clearing it");
            self.cache.invalidate_all();
        }
    }

    /// Is a tile cached (for tests and stats)?
    pub fn contains(&self, key: &TileKey) -> bool {
        self.cache.contains_key(key)
    }

    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// How many tiles have been rendered (not served from the cache).
    pub fn rendered(&self) -> u64 {
        self.rendered.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }
}

/// Do two rectangles meet (touching counts)?
fn meets(a: &Rect, b: &Rect) -> bool {
    a.min().x <= b.max().x
        && b.min().x <= a.max().x
        && a.min().y <= b.max().y
        && b.min().y <= a.max().y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(z: u32, x: u32, y: u32) -> TileKey {
        TileKey {
            layers: "events".into(),
            tile: TileId::new(z, x, y).expect("tile"),
        }
    }

    #[tokio::test]
    async fn a_render_from_before_an_invalidation_is_not_served() {
        let cache = TileCache::new(1 << 20, 0.0);
        let k = key(14, 13_330, 6_900);
        let inside = k.tile.bounds(0.0);
        let elsewhere = key(14, 100, 100).tile.bounds(0.0);

        // A render that took its snapshot before a change to its area
        // finishes after the invalidation: it must not be served or kept.
        let before = cache.generation();
        cache.invalidate_bbox(inside);
        let got = cache
            .get_or_render(k.clone(), before, async { Ok(vec![1]) })
            .await;
        assert!(matches!(got, Ok(None)), "stale render served");
        cache.run_pending_tasks().await;
        assert!(!cache.contains(&k), "stale render kept");

        // Rendered after the change: served and kept.
        let now = cache.generation();
        let got = cache
            .get_or_render(k.clone(), now, async { Ok(vec![2]) })
            .await;
        assert_eq!(got.ok().flatten().map(|e| e.raw.to_vec()), Some(vec![2]));

        // A change elsewhere does not make older tiles here stale.
        cache.invalidate_bbox(elsewhere);
        let got = cache
            .get_or_render(k.clone(), now, async { Ok(vec![3]) })
            .await;
        assert_eq!(got.ok().flatten().map(|e| e.raw.to_vec()), Some(vec![2]));

        // Once the history of changes is longer than remembered, an old
        // render is judged stale whatever its area.
        let old = cache.generation();
        for _ in 0..=RECENT {
            cache.invalidate_bbox(elsewhere);
        }
        let k2 = key(14, 13_331, 6_900);
        let got = cache.get_or_render(k2, old, async { Ok(vec![4]) }).await;
        assert!(matches!(got, Ok(None)));
    }
}
