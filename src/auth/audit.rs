//! The audit trail's writer and checker. Entries that record a change go
//! into that change's own transaction (`ChangeSet::audit`,
//! `AuthWrite::audit`); the rest (reads of personal data, denials) go
//! through [`AuditLog`], a task that writes them in batches so a burst of
//! requests costs one transaction per batch, not per request.

use crate::store::Store;
use crate::store::auth::{AuditEntry, AuthWrite, first_broken};
use std::sync::Arc;
use tokio::sync::mpsc;

/// An entry stamped now.
pub fn entry(
    actor: &str,
    role: &str,
    action: &str,
    outcome: &str,
    source: &str,
    target: &str,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        time: super::accounts::ms_text(super::now_ms()),
        actor: actor.to_string(),
        role: role.to_string(),
        action: action.to_string(),
        outcome: outcome.to_string(),
        source: source.to_string(),
        target: target.to_string(),
        detail: detail.to_string(),
    }
}

/// Entries queued at most; a full queue makes the request wait (an audit
/// row is never dropped).
const QUEUE: usize = 8_192;
/// Entries written per transaction at most.
const BATCH: usize = 512;

/// The queue in front of the audit writer task.
pub struct AuditLog {
    tx: Option<mpsc::Sender<AuditEntry>>,
    store: Arc<dyn Store>,
}

impl AuditLog {
    /// Starts the writer (inside a runtime; without one entries are written
    /// inline).
    pub fn start(store: Arc<dyn Store>) -> AuditLog {
        if tokio::runtime::Handle::try_current().is_err() {
            return AuditLog { tx: None, store };
        }
        let (tx, mut rx) = mpsc::channel::<AuditEntry>(QUEUE);
        let s = store.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let w = AuthWrite {
                    audit: std::mem::take(&mut batch),
                    ..Default::default()
                };
                // The store may be down for a while: keep the entries and
                // retry, so none is lost while the server runs.
                let mut pause = std::time::Duration::from_millis(200);
                loop {
                    match s.write_auth(&w).await {
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(
                                "cannot write {} audit row(s), retrying: {e}",
                                w.audit.len()
                            );
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(std::time::Duration::from_secs(5));
                        }
                    }
                }
            }
        });
        AuditLog {
            tx: Some(tx),
            store,
        }
    }

    /// Queues an entry.
    pub async fn record(&self, e: AuditEntry) {
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::error::SendError(e)) = tx.send(e).await {
                    self.inline(e).await;
                }
            }
            None => self.inline(e).await,
        }
    }

    async fn inline(&self, e: AuditEntry) {
        let w = AuthWrite {
            audit: vec![e],
            ..Default::default()
        };
        if let Err(e) = self.store.write_auth(&w).await {
            tracing::error!("cannot write an audit row: {e}");
        }
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub rows: usize,
    /// The first row that breaks the chain, and why.
    pub broken: Option<(i64, String)>,
    /// The newest row verified: its seq and chain hash. Kept somewhere the
    /// store's administrator cannot write (the server logs it, see
    /// [`head`]), it is what shows rows cut from the end: the chain
    /// alone cannot, since the rows before the cut still verify.
    pub head: Option<(i64, String)>,
}

/// Checks heads noted earlier (`seq`, `hash`: from a verify's output or
/// the server's log) against the trail: each must still be there with the
/// same hash. The first that is not, and why.
pub async fn check_heads(
    store: &dyn Store,
    v: &Verified,
    heads: &[(i64, String)],
) -> crate::store::Result<Option<(i64, String)>> {
    let last = v.head.as_ref().map_or(0, |h| h.0);
    for (seq, hash) in heads {
        if *seq > last {
            return Ok(Some((
                *seq,
                format!(
                    "row {seq} was seen before, but the trail now ends at row {last}: rows were removed from its end"
                ),
            )));
        }
        let row = store.audit_since(seq - 1, 1).await?;
        match row.first() {
            Some(r) if r.seq == *seq && r.hash == *hash => {}
            Some(r) if r.seq == *seq => {
                return Ok(Some((
                    *seq,
                    format!(
                        "row {seq} now has hash {}, not the {hash} noted before",
                        r.hash
                    ),
                )));
            }
            _ => return Ok(Some((*seq, format!("row {seq} is gone")))),
        }
    }
    Ok(None)
}

/// The trail's head: its newest row's seq and chain hash. The server logs
/// it every minute when it has changed (`app`), so that a copy of it lives
/// outside the store (journald, a log collector): `onemap audit verify
/// --expect SEQ:HASH` then shows whether rows were removed from the end.
pub async fn head(store: &dyn Store) -> crate::store::Result<Option<(i64, String)>> {
    let q = crate::store::auth::AuditQuery {
        limit: 1,
        ..Default::default()
    };
    Ok(store
        .audit_page(&q)
        .await?
        .into_iter()
        .next()
        .map(|r| (r.seq, r.hash)))
}

/// Reads the whole trail a page at a time and checks its hash chain.
pub async fn verify(store: &dyn Store) -> crate::store::Result<Verified> {
    let mut last: Option<(i64, String)> = None;
    let mut rows = 0;
    loop {
        let after = last.as_ref().map_or(0, |l| l.0);
        let page = store.audit_since(after, 10_000).await?;
        let Some(tail) = page.last() else { break };
        // A first row numbered past 1 means the oldest rows are gone.
        if let Some(b) = first_broken(last.as_ref(), &page) {
            return Ok(Verified {
                rows: rows + page.iter().take_while(|r| r.seq < b.0).count(),
                broken: Some(b),
                head: last,
            });
        }
        rows += page.len();
        last = Some((tail.seq, tail.hash.clone()));
        if page.len() < 10_000 {
            break;
        }
    }
    Ok(Verified {
        rows,
        broken: None,
        head: last,
    })
}
