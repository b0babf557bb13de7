//! Access control: roles and what each may do, the principal a request acts
//! as, accounts (users with Argon2id passwords and an optional TOTP second
//! factor), machine and kiosk tokens (stored only as SHA-256 hashes), web
//! sessions, failed-login throttling and lockout, and the audit writer.
//!
//! Records live in the store (`store::auth`); [`Auth`] holds a snapshot of
//! them for request-time checks, refreshed after its own writes and every
//! few seconds (so servers sharing a database see each other's changes).
//! Nothing here knows about HTTP: `api::auth` turns headers and cookies into
//! calls on [`Auth`].

pub mod accounts;
pub mod audit;

use crate::store::Store;
use crate::store::auth::{AuthRecord, AuthWrite};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use accounts::{Session, Token, User};
pub use audit::AuditLog;

/// The roles. `Security` (安全管理员) manages accounts and tokens and
/// `Auditor` (审计管理员) reads the audit trail, neither the other's part
/// (三权分立); `Admin` may do everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Department,
    Planner,
    Operator,
    Security,
    Auditor,
    Admin,
}

pub const ROLES: [Role; 7] = [
    Role::Viewer,
    Role::Department,
    Role::Planner,
    Role::Operator,
    Role::Security,
    Role::Auditor,
    Role::Admin,
];

/// What a route needs. Every route declares one (`api::routes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Perm {
    /// Anyone, signed in or not: health, readiness, login.
    Public,
    /// Any signed-in principal: who am I, log out.
    Signed,
    /// The map: layers, grids and grid cards, tiles, styles, stats, the
    /// live stream, OGC API metadata.
    View,
    /// Queries, nearest, exports, OGC API items.
    Query,
    /// Grid plans: edit, validate, publish; history and revert.
    Plan,
    /// Work-order ingest and status changes.
    Ingest,
    /// Accounts and tokens.
    Accounts,
    /// The audit trail.
    Audit,
}

pub const PERMS: [Perm; 8] = [
    Perm::Public,
    Perm::Signed,
    Perm::View,
    Perm::Query,
    Perm::Plan,
    Perm::Ingest,
    Perm::Accounts,
    Perm::Audit,
];

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        ROLES.into_iter().find(|r| r.as_str() == s.trim())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Department => "department",
            Role::Planner => "planner",
            Role::Operator => "operator",
            Role::Security => "security",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Role::Viewer => "大屏查看",
            Role::Department => "部门查询",
            Role::Planner => "网格规划",
            Role::Operator => "工单接入",
            Role::Security => "安全管理员",
            Role::Auditor => "审计管理员",
            Role::Admin => "系统管理员",
        }
    }

    /// The permission matrix (README lists it).
    pub fn allows(self, p: Perm) -> bool {
        use Perm::*;
        matches!(
            (self, p),
            (_, Public | Signed)
                | (Role::Admin, _)
                | (Role::Viewer, View)
                | (Role::Department, View | Query)
                | (Role::Planner, View | Query | Plan)
                | (Role::Operator, View | Ingest)
                | (Role::Security, Accounts)
                | (Role::Auditor, Audit)
        )
    }

    /// Whether personal fields (staff names, phone numbers, household
    /// details) are shown unmasked: to the roles whose work needs them.
    pub fn sees_personal(self) -> bool {
        matches!(self, Role::Department | Role::Planner | Role::Admin)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a principal proved who it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A web session cookie (of a user, or of a kiosk token).
    Session,
    /// `Authorization: Bearer` or Basic with the token as password.
    Token,
    /// Inside the process: the CLI, the demo, the follower.
    System,
}

/// Who a request acts as: every read and write of the core takes one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The account name, or `token:NAME` for a machine token.
    pub who: String,
    pub role: Role,
    /// Grid codes whose subtrees this principal may see and change; empty:
    /// the whole district.
    pub scope: Vec<String>,
    pub via: Via,
}

impl Principal {
    /// The process itself (CLI, demo, internal work).
    pub fn system(who: &str) -> Principal {
        Principal {
            who: who.to_string(),
            role: Role::Admin,
            scope: Vec::new(),
            via: Via::System,
        }
    }

    pub fn allows(&self, p: Perm) -> bool {
        self.role.allows(p)
    }

    /// Whether grid `code` lies inside the scope (its subtree, or the
    /// whole district when the scope is empty).
    pub fn covers(&self, code: &str) -> bool {
        self.scope.is_empty() || self.scope.iter().any(|s| code.starts_with(s.as_str()))
    }

    /// Masks personal text for roles that do not need it: names keep their
    /// first character, numbers their first three and last four digits.
    pub fn mask(&self, field: &str, text: &str) -> String {
        if self.role.sees_personal() {
            return text.to_string();
        }
        mask(field, text)
    }
}

/// The properties treated as personal, per layer.
pub fn personal_fields(layer: &str) -> &'static [&'static str] {
    match layer {
        crate::model::builtin::GRIDS => &["staff", "phone"],
        crate::model::builtin::ADDRESSES => &["address", "households"],
        _ => &[],
    }
}

/// 脱敏: `138****5678` for a phone, `张*` for a name, the first few
/// characters of an address.
pub fn mask(field: &str, text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    match field {
        "phone" if chars.len() >= 7 => {
            let mut s: String = chars[..3].iter().collect();
            s.push_str("****");
            s.extend(&chars[chars.len() - 4..]);
            s
        }
        "address" => {
            let keep = chars.len().min(6);
            let mut s: String = chars[..keep].iter().collect();
            if chars.len() > keep {
                s.push_str("****");
            }
            s
        }
        _ => match chars.first() {
            Some(c) => {
                let mut s = c.to_string();
                s.push_str(&"*".repeat(chars.len().saturating_sub(1).clamp(1, 3)));
                s
            }
            None => String::new(),
        },
    }
}

/// Settings of `onemap serve` for sign-in.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A web session ends after this long without a request.
    pub session_idle: Duration,
    /// …and after this long in all (a kiosk session is renewed instead).
    pub session_max: Duration,
    /// Failed logins before an account locks, and for how long.
    pub lock_after: u32,
    pub lock_for: Duration,
    /// Failed logins per client address per minute before 429.
    pub failures_per_minute: u32,
    /// Roles that must give a TOTP code at login.
    pub require_2fa: Vec<Role>,
    /// Whether cookies are marked `Secure` (served over TLS).
    pub secure_cookies: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 3600),
            lock_after: 5,
            lock_for: Duration::from_secs(15 * 60),
            failures_per_minute: 10,
            require_2fa: Vec::new(),
            secure_cookies: false,
        }
    }
}

/// A kiosk session's idle limit: the screen renews it every few minutes.
pub const KIOSK_IDLE: Duration = Duration::from_secs(24 * 3600);

/// How often the snapshot is re-read from the store.
const REFRESH: Duration = Duration::from_secs(5);

/// How often a session's last-seen time is written back.
const TOUCH: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Snapshot {
    users: HashMap<String, User>,
    /// By SHA-256 of the secret.
    tokens: HashMap<String, Token>,
    /// The tokens not revoked, by the raw SHA-256 of the secret, with
    /// their expiry and principal made once (the per-request lookup).
    by_digest: HashMap<[u8; 32], (Option<i64>, Arc<Principal>)>,
    /// By SHA-256 of the cookie value.
    sessions: HashMap<String, Session>,
}

/// Why a login was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong name or password, disabled or unknown account: one answer, no
    /// hint which part was wrong.
    Wrong,
    /// Locked after repeated failures, until this UTC time.
    Locked(String),
    /// Too many failures from this address; retry after this long.
    Throttled(Duration),
    /// The role needs a TOTP code and none (or a wrong one) was given.
    NeedOtp {
        enrolled: bool,
    },
    Store(String),
}

/// The sign-in state a server holds.
pub struct Auth {
    store: Arc<dyn Store>,
    pub settings: Settings,
    snap: RwLock<Arc<Snapshot>>,
    loaded: Mutex<Instant>,
    /// Per session: (last request, last written back); written back every
    /// [`TOUCH`].
    seen: Mutex<HashMap<String, (i64, i64)>>,
    /// Failed logins per client address: (count, window start).
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    refreshing: tokio::sync::Mutex<()>,
    /// The last TOTP step used per account.
    used_otp: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Auth {
    pub async fn load(store: Arc<dyn Store>, settings: Settings) -> crate::store::Result<Auth> {
        let (snap, _) = read_snapshot(store.as_ref()).await?;
        Ok(Auth {
            store,
            settings,
            snap: RwLock::new(Arc::new(snap)),
            loaded: Mutex::new(Instant::now()),
            seen: Mutex::default(),
            failures: Mutex::default(),
            refreshing: Default::default(),
            used_otp: Mutex::default(),
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        match self.snap.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-reads the records from the store.
    pub async fn refresh(&self) -> crate::store::Result<()> {
        let _one = self.refreshing.lock().await;
        let (snap, expired) = read_snapshot(self.store.as_ref()).await?;
        if !expired.is_empty() {
            // Ended sessions do not pile up in the store.
            let w = AuthWrite {
                delete: expired
                    .into_iter()
                    .map(|id| ("session".into(), id))
                    .collect(),
                ..Default::default()
            };
            self.store.write_auth(&w).await?;
        }
        match self.snap.write() {
            Ok(mut g) => *g = Arc::new(snap),
            Err(p) => *p.into_inner() = Arc::new(snap),
        }
        *lock(&self.loaded) = Instant::now();
        Ok(())
    }

    /// Refreshes when the snapshot is older than [`REFRESH`] (called by a
    /// background task).
    pub async fn refresh_if_stale(&self) {
        let stale = lock(&self.loaded).elapsed() >= REFRESH;
        if stale && let Err(e) = self.refresh().await {
            tracing::warn!("cannot re-read the accounts: {e}");
        }
    }

    /// The principal of a machine or kiosk token, if it is valid now.
    pub fn by_token(&self, secret: &str) -> Option<Arc<Principal>> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
        let snap = self.snapshot();
        let (expires, p) = snap.by_digest.get(&digest)?;
        expires.is_none_or(|e| e > now_ms()).then(|| p.clone())
    }

    /// The principal of a session cookie, if the session is alive; also
    /// whether the cookie should be re-sent (a kiosk renewing its session).
    pub fn by_session(&self, cookie: &str) -> Option<Principal> {
        let snap = self.snapshot();
        let id = accounts::secret_hash(cookie);
        let s = snap.sessions.get(&id)?;
        let now = now_ms();
        let seen = lock(&self.seen).get(&id).map_or(s.seen_ms, |e| e.0);
        let idle = if s.kiosk.is_some() {
            KIOSK_IDLE
        } else {
            self.settings.session_idle
        };
        if now - seen.max(s.seen_ms) > idle.as_millis() as i64 {
            return None;
        }
        if s.kiosk.is_none() && now - s.created_ms > self.settings.session_max.as_millis() as i64 {
            return None;
        }
        let p = match &s.kiosk {
            Some(token_hash) => {
                let t = snap.tokens.get(token_hash)?;
                if !t.valid_at(now) {
                    return None;
                }
                let mut p = t.principal();
                p.via = Via::Session;
                p
            }
            None => {
                let u = snap.users.get(&s.user)?;
                if u.disabled {
                    return None;
                }
                u.principal(Via::Session)
            }
        };
        let write_back = {
            let mut m = lock(&self.seen);
            let e = m.entry(id.clone()).or_insert((s.seen_ms, s.seen_ms));
            e.0 = now;
            let due = now - e.1.max(s.seen_ms) > TOUCH.as_millis() as i64;
            if due {
                e.1 = now;
            }
            due
        };
        if write_back {
            let mut s = s.clone();
            s.seen_ms = now;
            let store = self.store.clone();
            if tokio::runtime::Handle::try_current().is_ok() {
                tokio::spawn(async move {
                    let w = AuthWrite {
                        touch: vec![s.record()],
                        ..Default::default()
                    };
                    if let Err(e) = store.write_auth(&w).await {
                        tracing::warn!("cannot record a session's last use: {e}");
                    }
                });
            }
        }
        Some(p)
    }

    /// Counts a failed login from `ip`; `Some(wait)` when it is throttled.
    pub fn throttled(&self, ip: IpAddr) -> Option<Duration> {
        let m = lock(&self.failures);
        let (n, since) = m.get(&ip)?;
        let left = Duration::from_secs(60).saturating_sub(since.elapsed());
        (*n >= self.settings.failures_per_minute && !left.is_zero()).then_some(left)
    }

    pub fn count_failure(&self, ip: IpAddr) {
        let mut m = lock(&self.failures);
        if m.len() > 100_000 {
            m.retain(|_, (_, t)| t.elapsed() < Duration::from_secs(60));
        }
        let e = m.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= Duration::from_secs(60) {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    /// Checks a name, password and (when the role needs one) TOTP code;
    /// on success starts a session and answers its cookie value. Every
    /// attempt is audited in the same transaction as the account change it
    /// causes (failure count, lock).
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        otp: Option<&str>,
        source: IpAddr,
    ) -> Result<(String, Principal), LoginError> {
        if let Some(wait) = self.throttled(source) {
            return Err(LoginError::Throttled(wait));
        }
        // Read fresh: a lock set by another server counts.
        if let Err(e) = self.refresh().await {
            return Err(LoginError::Store(e.to_string()));
        }
        let user = self.snapshot().users.get(name).cloned();
        let now = now_ms();
        let entry = |outcome: &str, why: &str| {
            audit::entry(
                name,
                user.as_ref().map(|u| u.role.as_str()).unwrap_or(""),
                "login",
                outcome,
                &source.to_string(),
                name,
                serde_json::json!({ "why": why }),
            )
        };
        let Some(mut u) = user.clone() else {
            // The same work as a real check: no timing hint that the name
            // is unknown.
            let _ = accounts::hash_password(password).await;
            self.count_failure(source);
            self.write(AuthWrite {
                audit: vec![entry("failed", "unknown account")],
                ..Default::default()
            })
            .await?;
            return Err(LoginError::Wrong);
        };
        if let Some(until) = u.locked_until.filter(|t| *t > now) {
            self.count_failure(source);
            self.write(AuthWrite {
                audit: vec![entry("failed", "account locked")],
                ..Default::default()
            })
            .await?;
            return Err(LoginError::Locked(crate::model::value::format_utc(
                chrono::DateTime::from_timestamp_millis(until).unwrap_or_default(),
            )));
        }
        let ok = accounts::verify_password(&u.password, password).await && !u.disabled;
        if !ok {
            self.count_failure(source);
            u.failures += 1;
            let mut why = if u.disabled {
                "account disabled".to_string()
            } else {
                "wrong password".to_string()
            };
            if u.failures >= self.settings.lock_after {
                u.locked_until = Some(now + self.settings.lock_for.as_millis() as i64);
                u.failures = 0;
                why.push_str("; account locked");
            }
            self.write(AuthWrite {
                put: vec![u.record()],
                audit: vec![entry("failed", &why)],
                ..Default::default()
            })
            .await?;
            return Err(LoginError::Wrong);
        }
        if self.settings.require_2fa.contains(&u.role) || u.totp.is_some() {
            let Some(secret) = &u.totp else {
                self.write(AuthWrite {
                    audit: vec![entry("failed", "second factor required, none enrolled")],
                    ..Default::default()
                })
                .await?;
                return Err(LoginError::NeedOtp { enrolled: false });
            };
            // A code counts once: a step at or before the last one used
            // by this account is refused (a code seen over a shoulder or
            // on the wire cannot be replayed within its window).
            // The last step is kept in the account's record too (read
            // fresh above), so a restart or another server does not forget
            // it; the map closes the gap between two logins on this server
            // before the first one's record is written.
            let step = otp.and_then(|code| accounts::totp_step(secret, code));
            let good = step.is_some_and(|s| {
                let mut used = lock(&self.used_otp);
                let fresh = used.get(&u.name).is_none_or(|last| s > *last)
                    && u.totp_step.is_none_or(|last| s > last);
                if fresh {
                    used.insert(u.name.clone(), s);
                }
                fresh
            });
            if good {
                u.totp_step = step;
            }
            if !good {
                if otp.is_some() {
                    self.count_failure(source);
                }
                self.write(AuthWrite {
                    audit: vec![entry(
                        "failed",
                        if otp.is_some() {
                            "wrong second factor"
                        } else {
                            "second factor needed"
                        },
                    )],
                    ..Default::default()
                })
                .await?;
                return Err(LoginError::NeedOtp { enrolled: true });
            }
        }
        u.failures = 0;
        u.locked_until = None;
        let (cookie, session) = Session::for_user(&u.name);
        self.write(AuthWrite {
            put: vec![u.record(), session.record()],
            audit: vec![entry("ok", "")],
            ..Default::default()
        })
        .await?;
        Ok((cookie, u.principal(Via::Session)))
    }

    /// Exchanges a kiosk token for a session cookie.
    pub async fn kiosk(&self, secret: &str, source: IpAddr) -> Result<String, LoginError> {
        if let Some(wait) = self.throttled(source) {
            return Err(LoginError::Throttled(wait));
        }
        // Read fresh: a token just made with the CLI counts.
        if let Err(e) = self.refresh().await {
            return Err(LoginError::Store(e.to_string()));
        }
        let hash = accounts::secret_hash(secret);
        let t = self.snapshot().tokens.get(&hash).cloned();
        let Some(t) = t.filter(|t| t.kiosk && t.valid_at(now_ms())) else {
            self.count_failure(source);
            self.write(AuthWrite {
                audit: vec![audit::entry(
                    "",
                    "",
                    "kiosk",
                    "failed",
                    &source.to_string(),
                    "",
                    serde_json::json!({ "why": "not a valid kiosk token" }),
                )],
                ..Default::default()
            })
            .await?;
            return Err(LoginError::Wrong);
        };
        let (cookie, session) = Session::for_kiosk(&hash, &t.name);
        self.write(AuthWrite {
            put: vec![session.record()],
            audit: vec![audit::entry(
                &t.who(),
                t.role.as_str(),
                "kiosk",
                "ok",
                &source.to_string(),
                &t.id,
                serde_json::json!({}),
            )],
            ..Default::default()
        })
        .await?;
        Ok(cookie)
    }

    /// Ends a session.
    pub async fn logout(&self, cookie: &str, p: &Principal, source: IpAddr) {
        let id = accounts::secret_hash(cookie);
        lock(&self.seen).remove(&id);
        let w = AuthWrite {
            delete: vec![("session".into(), id)],
            audit: vec![audit::entry(
                &p.who,
                p.role.as_str(),
                "logout",
                "ok",
                &source.to_string(),
                "",
                serde_json::json!({}),
            )],
            ..Default::default()
        };
        if let Err(e) = self.write(w).await {
            tracing::warn!("cannot end a session: {e:?}");
        }
    }

    /// Writes and re-reads.
    pub async fn write(&self, w: AuthWrite) -> Result<(), LoginError> {
        self.store
            .write_auth(&w)
            .await
            .map_err(|e| LoginError::Store(e.to_string()))?;
        self.refresh()
            .await
            .map_err(|e| LoginError::Store(e.to_string()))
    }

    /// Whether any account or token exists (a store without any cannot be
    /// signed into: `onemap user add` first).
    pub fn has_accounts(&self) -> bool {
        let s = self.snapshot();
        !s.users.is_empty() || !s.tokens.is_empty()
    }

    pub fn users(&self) -> Vec<User> {
        let mut v: Vec<User> = self.snapshot().users.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn tokens(&self) -> Vec<Token> {
        let mut v: Vec<Token> = self.snapshot().tokens.values().cloned().collect();
        v.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        v
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// The records as a snapshot, and the ids of sessions past every idle limit
/// (to delete).
async fn read_snapshot(store: &dyn Store) -> crate::store::Result<(Snapshot, Vec<String>)> {
    let mut snap = Snapshot::default();
    let mut expired = Vec::new();
    let now = now_ms();
    for AuthRecord { kind, id, body } in store.auth_records().await? {
        let bad = |e: serde_json::Error| {
            tracing::warn!("account record {kind}/{id} is unreadable, ignored: {e}");
        };
        match kind.as_str() {
            "user" => match serde_json::from_str::<User>(&body) {
                Ok(u) => {
                    snap.users.insert(u.name.clone(), u);
                }
                Err(e) => bad(e),
            },
            "token" => match serde_json::from_str::<Token>(&body) {
                Ok(t) => {
                    if t.revoked.is_none()
                        && let Some(d) = digest_of(&t.hash)
                    {
                        snap.by_digest
                            .insert(d, (t.expires_ms, Arc::new(t.principal())));
                    }
                    snap.tokens.insert(t.hash.clone(), t);
                }
                Err(e) => bad(e),
            },
            "session" => match serde_json::from_str::<Session>(&body) {
                // Sessions older than any idle limit are not kept.
                Ok(s) if now - s.seen_ms < KIOSK_IDLE.as_millis() as i64 => {
                    snap.sessions.insert(s.id.clone(), s);
                }
                Ok(s) => expired.push(s.id),
                Err(e) => bad(e),
            },
            _ => {}
        }
    }
    Ok((snap, expired))
}

/// A hex SHA-256 back to its 32 bytes.
fn digest_of(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let s = std::str::from_utf8(&b[2 * i..2 * i + 2]).ok()?;
        *o = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}
