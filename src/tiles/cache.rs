//! The tile cache: encoded tiles (raw and gzip) in memory, weighed by bytes.
//!
//! Concurrent misses of one tile build it once (moka coalesces
//! `try_get_with` callers), on the blocking pool so rendering never stalls
//! the async workers. [`TileCache::invalidate_bbox`] drops exactly the cached
//! tiles, at every zoom and for every layer set, whose buffered bounds meet a
//! changed area; everything else stays warm.

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
}

impl TileEntry {
    pub fn new(raw: Vec<u8>) -> TileEntry {
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
}

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
        }
    }

    /// The cached tile, or `render` run once (for all concurrent callers).
    pub async fn get_or_render<F>(&self, key: TileKey, render: F) -> Result<Arc<TileEntry>, String>
    where
        F: FnOnce() -> Vec<u8> + Send + 'static,
    {
        let rendered = self.rendered.clone();
        self.cache
            .try_get_with(key, async move {
                tokio::task::spawn_blocking(move || {
                    rendered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Arc::new(TileEntry::new(render()))
                })
                .await
                .map_err(|e| format!("tile rendering failed: {e}"))
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Drops every cached tile whose (buffered) bounds meet `area`.
    pub fn invalidate_bbox(&self, area: Rect) {
        let buffer = self.buffer;
        let res = self.cache.invalidate_entries_if(move |k, _| {
            let b = k.tile.bounds(buffer);
            b.min().x <= area.max().x
                && area.min().x <= b.max().x
                && b.min().y <= area.max().y
                && area.min().y <= b.max().y
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
