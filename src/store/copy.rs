//! `onemap copy`: moves a whole store to another (GeoPackage ↔ PostGIS)
//! without loss: every layer in order with its features' ids, versions,
//! geometries and properties, each layer's id counter (so a deleted newest
//! feature's id is not given again), the change log row by row with its own
//! seqs, the metadata, the account records and the audit trail (verbatim,
//! so its hash chain still verifies).
//!
//! It goes through the [`Store`] trait only: `load_layer` + `last_id` →
//! `restore_layer` per layer (each one transaction on the bulk path), then
//! the change log a page at a time (`changes_since` → `restore_changes`),
//! then `meta_all` → `set_meta`. The destination must be empty; a copy that
//! fails half-way leaves it partial, and the error says so.

use super::Store;
use super::gpkg::GpkgStore;
use super::postgis::PostgisStore;
use anyhow::Context;

/// Change-log rows read and written per transaction.
const PAGE: i64 = 10_000;

/// What a copy moved, and how long it took.
#[derive(Clone, Debug, PartialEq)]
pub struct CopySummary {
    pub layers: usize,
    pub features: usize,
    pub changes: usize,
    pub meta: usize,
    /// Account records (users, tokens, sessions) and audit rows.
    pub accounts: usize,
    pub audit: usize,
    pub seconds: f64,
}

impl std::fmt::Display for CopySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} layer(s), {} feature(s), {} change-log row(s), {} metadata value(s), \
             {} account record(s), {} audit row(s) in {:.1} s",
            self.layers,
            self.features,
            self.changes,
            self.meta,
            self.accounts,
            self.audit,
            self.seconds
        )
    }
}

/// Whether a store location names a PostgreSQL database (else it is a
/// GeoPackage path), as [`super::open`] decides.
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// A store opened by location, with its backend kept so that it can be
/// closed (a GeoPackage checkpoints its WAL into the file on close).
pub enum Opened {
    Gpkg(GpkgStore),
    Postgis(Box<PostgisStore>),
}

impl Opened {
    /// Opens a `postgres://`/`postgresql://` URL or a GeoPackage path (created
    /// if absent, as [`super::open`] does).
    pub async fn open(location: &str) -> anyhow::Result<Opened> {
        Ok(if is_postgres(location) {
            Opened::Postgis(Box::new(PostgisStore::open(location).await?))
        } else {
            Opened::Gpkg(GpkgStore::open(std::path::Path::new(location)).await?)
        })
    }

    pub fn store(&self) -> &dyn Store {
        match self {
            Opened::Gpkg(s) => s,
            Opened::Postgis(s) => s.as_ref(),
        }
    }

    pub async fn close(&self) {
        match self {
            Opened::Gpkg(s) => s.close().await,
            Opened::Postgis(s) => s.close().await,
        }
    }
}

/// Copies everything in `from` into `to`, which must hold no layer and no
/// change-log row. `progress` hears one line per step (a layer copied, a
/// page of the log).
pub async fn copy(
    from: &dyn Store,
    to: &dyn Store,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<CopySummary> {
    let t0 = std::time::Instant::now();
    let dest = to.describe();
    let held = to
        .layers()
        .await
        .with_context(|| format!("cannot read the layers of {dest}"))?;
    let dest_seq = to
        .last_seq()
        .await
        .with_context(|| format!("cannot read the change log of {dest}"))?;
    let dest_accounts = to
        .auth_records()
        .await
        .with_context(|| format!("cannot read the accounts of {dest}"))?
        .len();
    let dest_audit = to
        .audit_since(0, 1)
        .await
        .with_context(|| format!("cannot read the audit trail of {dest}"))?
        .len();
    if dest_accounts > 0 || dest_audit > 0 {
        anyhow::bail!(
            "the destination {dest} is not empty (it holds accounts or an audit trail): \
             copy into a new GeoPackage or an empty database"
        );
    }
    if !held.is_empty() || dest_seq > 0 {
        anyhow::bail!(
            "the destination {dest} is not empty ({} layer(s), change log up to seq {dest_seq}): \
             copy into a new GeoPackage or an empty database",
            held.len()
        );
    }
    let partial = || {
        format!(
            "the copy stopped half-way: {dest} now holds part of the data; delete it (or use \
             another empty database) before copying again"
        )
    };
    let layers = from
        .layers()
        .await
        .with_context(|| format!("cannot read the layers of {}", from.describe()))?;
    let mut sum = CopySummary {
        layers: 0,
        features: 0,
        changes: 0,
        meta: 0,
        accounts: 0,
        audit: 0,
        seconds: 0.0,
    };
    for def in &layers {
        let t = std::time::Instant::now();
        let features = from
            .load_layer(&def.name)
            .await
            .with_context(|| format!("cannot read layer {}", def.name))
            .with_context(partial)?;
        let last_id = from
            .last_id(&def.name)
            .await
            .with_context(|| format!("cannot read the id counter of layer {}", def.name))
            .with_context(partial)?;
        to.restore_layer(def, &features, last_id)
            .await
            .with_context(|| format!("cannot write layer {}", def.name))
            .with_context(partial)?;
        sum.layers += 1;
        sum.features += features.len();
        progress(&format!(
            "layer {}: {} feature(s), last id {last_id} ({:.1} s)",
            def.name,
            features.len(),
            t.elapsed().as_secs_f64()
        ));
    }
    let mut after = 0;
    loop {
        let rows = from
            .changes_since(after, PAGE)
            .await
            .with_context(|| format!("cannot read the change log after seq {after}"))
            .with_context(partial)?;
        let Some(last) = rows.last() else { break };
        let newest = last.seq;
        to.restore_changes(&rows)
            .await
            .with_context(|| format!("cannot write the change log after seq {after}"))
            .with_context(partial)?;
        sum.changes += rows.len();
        progress(&format!(
            "change log: {} row(s), up to seq {newest}",
            sum.changes
        ));
        after = newest;
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    let meta = from
        .meta_all()
        .await
        .context("cannot read the metadata")
        .with_context(partial)?;
    for (k, v) in &meta {
        to.set_meta(k, v)
            .await
            .with_context(|| format!("cannot write metadata {k:?}"))
            .with_context(partial)?;
    }
    sum.meta = meta.len();
    // Accounts, tokens and sessions, then the audit trail verbatim (its
    // hash chain stays verifiable in the copy).
    let records = from
        .auth_records()
        .await
        .context("cannot read the account records")
        .with_context(partial)?;
    to.write_auth(&super::auth::AuthWrite {
        put: records.clone(),
        ..Default::default()
    })
    .await
    .context("cannot write the account records")
    .with_context(partial)?;
    sum.accounts = records.len();
    let mut after = 0;
    loop {
        let rows = from
            .audit_since(after, PAGE)
            .await
            .with_context(|| format!("cannot read the audit trail after row {after}"))
            .with_context(partial)?;
        let Some(last) = rows.last() else { break };
        let newest = last.seq;
        to.restore_audit(&rows)
            .await
            .with_context(|| format!("cannot write the audit trail after row {after}"))
            .with_context(partial)?;
        sum.audit += rows.len();
        after = newest;
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    sum.seconds = t0.elapsed().as_secs_f64();
    Ok(sum)
}
