//! What the store keeps for access control: account records (users, machine
//! tokens, sessions) and the audit trail (安全审计).
//!
//! Account records are few and read whole at start, so they are kept as
//! typed JSON documents in one table (`onemap_auth`: kind, id, body); the
//! meaning of a body is `crate::auth`'s. The audit trail is an append-only
//! table (`onemap_audit`) whose rows are hash-chained: each row carries the
//! hash of the one before it and its own hash over every field, so a row
//! edited or deleted in the file breaks the chain at that row.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One account record: `kind` is `user`, `token` or `session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRecord {
    pub kind: String,
    pub id: String,
    /// JSON text.
    pub body: String,
}

/// An audit entry before the store numbers and chains it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// The account or token that acted (or the name tried, for a failed login).
    pub actor: String,
    pub role: String,
    /// `login`, `logout`, `denied`, `query`, `export`, `camera`, `user.add`, `token.create`,
    /// `publish`, `revert`, `events` …
    pub action: String,
    /// `ok`, `failed` or `denied`.
    pub outcome: String,
    /// The client address.
    pub source: String,
    /// What was acted on: a route, a grid code, an account name.
    pub target: String,
    /// JSON text with the rest (filter, area, rows returned …).
    pub detail: String,
}

/// A stored audit row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// The previous row's hash ([`GENESIS`] for the first row).
    pub prev: String,
    /// SHA-256 (hex) over seq, every field and `prev`.
    pub hash: String,
}

/// The `prev` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of row `seq` with `entry` after a row whose hash is `prev`.
/// Each field is length-prefixed, so no choice of field text can make two
/// different rows hash alike.
pub fn chain_hash(seq: i64, e: &AuditEntry, prev: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"onemap-audit-v1");
    h.update(seq.to_le_bytes());
    for f in [
        &e.time, &e.actor, &e.role, &e.action, &e.outcome, &e.source, &e.target, &e.detail, prev,
    ] {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f.as_bytes());
    }
    hex(&h.finalize())
}

/// Chains `entries` after the row (`last_seq`, `last_hash`).
pub fn chain(last: Option<(i64, String)>, entries: &[AuditEntry]) -> Vec<AuditRow> {
    let (mut seq, mut prev) = last.unwrap_or((0, GENESIS.to_string()));
    entries
        .iter()
        .map(|e| {
            seq += 1;
            let hash = chain_hash(seq, e, &prev);
            AuditRow {
                seq,
                entry: e.clone(),
                prev: std::mem::replace(&mut prev, hash.clone()),
                hash,
            }
        })
        .collect()
}

/// The first row of `rows` (ascending, continuing after `last`) that breaks
/// the chain, with what is wrong with it.
pub fn first_broken(last: Option<&(i64, String)>, rows: &[AuditRow]) -> Option<(i64, String)> {
    let (mut seq, mut prev) = match last {
        Some((s, h)) => (*s, h.clone()),
        None => (0, GENESIS.to_string()),
    };
    for r in rows {
        if r.seq != seq + 1 {
            return Some((
                r.seq,
                format!("row {} follows row {seq}: rows are missing", r.seq),
            ));
        }
        if r.prev != prev {
            return Some((
                r.seq,
                format!(
                    "row {} does not carry the hash of row {seq}: the row before it was edited or removed",
                    r.seq
                ),
            ));
        }
        if chain_hash(r.seq, &r.entry, &r.prev) != r.hash {
            return Some((
                r.seq,
                format!(
                    "row {}'s content does not match its hash: it was edited",
                    r.seq
                ),
            ));
        }
        seq = r.seq;
        prev = r.hash.clone();
    }
    None
}

/// A page of the audit trail, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Rows with a smaller seq only (paging backwards).
    pub before: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// Inclusive bounds on `time` (RFC 3339 text compares in time order).
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: i64,
}

/// Account records to write and delete, and audit entries to append, in one
/// transaction.
#[derive(Clone, Debug, Default)]
pub struct AuthWrite {
    pub put: Vec<AuthRecord>,
    /// Records rewritten only if they still exist (a session's last use:
    /// it must not bring back a session ended meanwhile).
    pub touch: Vec<AuthRecord>,
    /// (kind, id) pairs.
    pub delete: Vec<(String, String)>,
    pub audit: Vec<AuditEntry>,
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str) -> AuditEntry {
        AuditEntry {
            time: "2026-12-03T00:00:00.000Z".into(),
            actor: actor.into(),
            action: "login".into(),
            outcome: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn chain_detects_edit_and_removal() {
        let rows = chain(None, &[entry("a"), entry("b"), entry("c")]);
        assert_eq!(first_broken(None, &rows), None);
        let mut edited = rows.clone();
        edited[1].entry.actor = "x".into();
        assert_eq!(first_broken(None, &edited).map(|b| b.0), Some(2));
        let mut removed = rows.clone();
        removed.remove(1);
        assert_eq!(first_broken(None, &removed).map(|b| b.0), Some(3));
        // Rehashing the edited row alone still breaks the next one.
        edited[1].hash = chain_hash(2, &edited[1].entry, &edited[1].prev);
        assert_eq!(first_broken(None, &edited).map(|b| b.0), Some(3));
        // Continuing a chain.
        let more = chain(Some((3, rows[2].hash.clone())), &[entry("d")]);
        assert_eq!(more[0].seq, 4);
        assert_eq!(first_broken(Some(&(3, rows[2].hash.clone())), &more), None);
    }

    #[test]
    fn fields_are_length_prefixed() {
        let mut a = entry("ab");
        a.role = "c".into();
        let mut b = entry("a");
        b.role = "bc".into();
        assert_ne!(chain_hash(1, &a, GENESIS), chain_hash(1, &b, GENESIS));
    }
}
