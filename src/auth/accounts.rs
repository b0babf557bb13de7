//! Account records and the operations on them (CLI and admin endpoints
//! alike): users, machine and kiosk tokens, sessions. Each operation is one
//! store transaction together with its audit row.

use super::{Principal, Role, Via, audit, now_ms};
use crate::store::Store;
use crate::store::auth::{AuthRecord, AuthWrite, hex};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A person who signs in on the web pages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub scope: Vec<String>,
    /// Argon2id, PHC string format.
    pub password: String,
    /// TOTP secret (base32), when a second factor is enrolled.
    #[serde(default)]
    pub totp: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// Failed logins since the last success.
    #[serde(default)]
    pub failures: u32,
    /// Locked until (UTC ms) after repeated failures.
    #[serde(default)]
    pub locked_until: Option<i64>,
    /// The last TOTP time step a login used. Kept in the record (and so in
    /// the store), not only in memory: a code used just before a restart,
    /// or on another server sharing the store, cannot be used again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_step: Option<u64>,
    pub created: String,
    pub created_by: String,
}

impl User {
    pub fn principal(&self, via: Via) -> Principal {
        Principal {
            who: self.name.clone(),
            role: self.role,
            scope: self.scope.clone(),
            via,
        }
    }

    pub fn record(&self) -> AuthRecord {
        record("user", &self.name, self)
    }

    /// What is shown of a user (never the hash or the TOTP secret).
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "role": self.role,
            "scope": self.scope,
            "disabled": self.disabled,
            "two_factor": self.totp.is_some(),
            "locked_until": self.locked_until.filter(|t| *t > now_ms()).map(ms_text),
            "created": self.created,
            "created_by": self.created_by,
        })
    }
}

/// A machine token (the 12345 bridge, GDAL, QGIS) or a kiosk token (a wall
/// screen). Only the SHA-256 of the secret is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Short public id (first 12 hex digits of the hash): what lists show
    /// and `revoke` takes.
    pub id: String,
    pub hash: String,
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub scope: Vec<String>,
    /// Exchanged once for a session cookie (`/kiosk/{token}`).
    #[serde(default)]
    pub kiosk: bool,
    pub created: String,
    pub created_by: String,
    #[serde(default)]
    pub expires_ms: Option<i64>,
    #[serde(default)]
    pub revoked: Option<String>,
}

impl Token {
    pub fn valid_at(&self, now: i64) -> bool {
        self.revoked.is_none() && self.expires_ms.is_none_or(|e| e > now)
    }

    /// The author name a token's changes carry.
    pub fn who(&self) -> String {
        format!("token:{}", self.name)
    }

    pub fn principal(&self) -> Principal {
        Principal {
            who: self.who(),
            role: self.role,
            scope: self.scope.clone(),
            via: Via::Token,
        }
    }

    pub fn record(&self) -> AuthRecord {
        record("token", &self.id, self)
    }

    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "scope": self.scope,
            "kiosk": self.kiosk,
            "created": self.created,
            "created_by": self.created_by,
            "expires": self.expires_ms.map(ms_text),
            "revoked": self.revoked,
            "valid": self.valid_at(now_ms()),
        })
    }
}

/// A web session: the cookie value's SHA-256 is the id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    /// The user, or the kiosk token's name.
    pub user: String,
    /// The kiosk token's hash, for a wall screen's session.
    #[serde(default)]
    pub kiosk: Option<String>,
    pub created_ms: i64,
    pub seen_ms: i64,
}

impl Session {
    /// A new session for `user` and its cookie value.
    pub fn for_user(user: &str) -> (String, Session) {
        let cookie = new_secret("s_");
        let now = now_ms();
        let s = Session {
            id: secret_hash(&cookie),
            user: user.to_string(),
            kiosk: None,
            created_ms: now,
            seen_ms: now,
        };
        (cookie, s)
    }

    pub fn for_kiosk(token_hash: &str, name: &str) -> (String, Session) {
        let (cookie, mut s) = Session::for_user(name);
        s.kiosk = Some(token_hash.to_string());
        (cookie, s)
    }

    pub fn record(&self) -> AuthRecord {
        record("session", &self.id, self)
    }
}

fn record<T: Serialize>(kind: &str, id: &str, v: &T) -> AuthRecord {
    AuthRecord {
        kind: kind.to_string(),
        id: id.to_string(),
        body: serde_json::to_string(v).unwrap_or_default(),
    }
}

pub fn ms_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// 32 random bytes from the OS, as hex after `prefix`.
pub fn new_secret(prefix: &str) -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    format!("{prefix}{}", hex(&b))
}

pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes: OWASP's minimum).
pub async fn hash_password(password: &str) -> anyhow::Result<String> {
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
    })
    .await?
}

/// Checks a password on a blocking thread (Argon2 takes tens of ms).
pub async fn verify_password(phc: &str, password: &str) -> bool {
    let (phc, pw) = (phc.to_string(), password.to_string());
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(&phc).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(pw.as_bytes(), &h)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

fn totp(secret_b32: &str) -> Option<totp_rs::TOTP> {
    let raw = totp_rs::Secret::Encoded(secret_b32.to_string())
        .to_bytes()
        .ok()?;
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, raw).ok()
}

/// The 30-second step whose TOTP code `code` is, within one step of now.
pub fn totp_step(secret_b32: &str, code: &str) -> Option<u64> {
    let t = totp(secret_b32)?;
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    let step = now / 30;
    let code = code.trim();
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|s| t.generate(s * 30) == code)
}

/// The TOTP code at `unix` seconds (for tests and `onemap user totp --code`).
pub fn totp_code(secret_b32: &str, unix: u64) -> Option<String> {
    totp(secret_b32).map(|t| t.generate(unix))
}

/// A new TOTP secret (160 bits, base32) and its `otpauth://` URL for an
/// authenticator app.
pub fn new_totp(user: &str) -> (String, String) {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut b = [0u8; 20];
    OsRng.fill_bytes(&mut b);
    let secret = totp_rs::Secret::Raw(b.to_vec()).to_encoded().to_string();
    let url = format!(
        "otpauth://totp/onemap:{}?secret={secret}&issuer=onemap&algorithm=SHA1&digits=6&period=30",
        form_urlencoded::byte_serialize(user.as_bytes()).collect::<String>()
    );
    (secret, url)
}

/// What `user add` and the admin endpoint take.
#[derive(Clone, Debug, Deserialize)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub scope: Vec<String>,
    pub password: String,
}

/// Names: letters (any script), digits, `._-@`, 1–64 characters.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let n = name.chars().count();
    if n == 0 || n > 64 {
        anyhow::bail!("a name has 1 to 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        anyhow::bail!("a name has letters, digits and . _ - @ only: {name:?}");
    }
    Ok(())
}

/// At least 10 characters, of at least three kinds (lower, upper, digit,
/// other): what MLPS level 3 assessments ask of passwords.
pub fn check_password(pw: &str) -> anyhow::Result<()> {
    let kinds = [
        pw.chars().any(|c| c.is_lowercase()),
        pw.chars().any(|c| c.is_uppercase()),
        pw.chars().any(|c| c.is_ascii_digit()),
        pw.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if pw.chars().count() < 10 || kinds < 3 {
        anyhow::bail!(
            "a password has at least 10 characters of at least three kinds \
             (lower case, upper case, digits, others)"
        );
    }
    if pw.len() > 1024 {
        anyhow::bail!("a password has at most 1,024 bytes");
    }
    Ok(())
}

/// Scope codes: grid codes (digits, 2–19 of them).
pub fn check_scope(scope: &[String]) -> anyhow::Result<()> {
    for c in scope {
        if c.is_empty() || c.len() > 32 || !c.chars().all(|c| c.is_ascii_alphanumeric()) {
            anyhow::bail!("not a grid code: {c:?}");
        }
    }
    Ok(())
}

async fn records(store: &dyn Store) -> anyhow::Result<(Vec<User>, Vec<Token>)> {
    let mut users = Vec::new();
    let mut tokens = Vec::new();
    for r in store.auth_records().await? {
        match r.kind.as_str() {
            "user" => users.push(serde_json::from_str::<User>(&r.body)?),
            "token" => tokens.push(serde_json::from_str::<Token>(&r.body)?),
            _ => {}
        }
    }
    Ok((users, tokens))
}

pub async fn find_user(store: &dyn Store, name: &str) -> anyhow::Result<Option<User>> {
    Ok(records(store).await?.0.into_iter().find(|u| u.name == name))
}

pub async fn list_users(store: &dyn Store) -> anyhow::Result<Vec<User>> {
    let mut u = records(store).await?.0;
    u.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(u)
}

pub async fn list_tokens(store: &dyn Store) -> anyhow::Result<Vec<Token>> {
    let mut t = records(store).await?.1;
    t.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(t)
}

fn now_text() -> String {
    ms_text(now_ms())
}

/// Adds a user (refused when the name is taken).
pub async fn add_user(
    store: &dyn Store,
    by: &Principal,
    source: &str,
    n: NewUser,
) -> anyhow::Result<User> {
    check_name(&n.name)?;
    check_password(&n.password)?;
    check_scope(&n.scope)?;
    if find_user(store, &n.name).await?.is_some() {
        anyhow::bail!("a user named {:?} exists already", n.name);
    }
    let u = User {
        name: n.name.clone(),
        role: n.role,
        scope: n.scope,
        password: hash_password(&n.password).await?,
        totp: None,
        disabled: false,
        failures: 0,
        locked_until: None,
        totp_step: None,
        created: now_text(),
        created_by: by.who.clone(),
    };
    store
        .write_auth(&AuthWrite {
            put: vec![u.record()],
            audit: vec![audit::entry(
                &by.who,
                by.role.as_str(),
                "user.add",
                "ok",
                source,
                &u.name,
                serde_json::json!({ "role": u.role, "scope": u.scope }),
            )],
            ..Default::default()
        })
        .await?;
    Ok(u)
}

/// What can change about a user.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct UserChange {
    pub password: Option<String>,
    pub disabled: Option<bool>,
    pub role: Option<Role>,
    pub scope: Option<Vec<String>>,
    /// `true`: enrol a new TOTP secret (answered once); `false`: remove it.
    pub totp: Option<bool>,
    /// Clear a lock after failed logins.
    pub unlock: Option<bool>,
}

/// Changes a user; answers it and, when a second factor was enrolled, the
/// `otpauth://` URL (shown once).
pub async fn change_user(
    store: &dyn Store,
    by: &Principal,
    source: &str,
    name: &str,
    c: UserChange,
) -> anyhow::Result<(User, Option<String>)> {
    let Some(mut u) = find_user(store, name).await? else {
        anyhow::bail!("no user named {name:?}");
    };
    let mut what = serde_json::Map::new();
    if let Some(pw) = &c.password {
        check_password(pw)?;
        u.password = hash_password(pw).await?;
        what.insert("password".into(), "changed".into());
    }
    if let Some(d) = c.disabled {
        u.disabled = d;
        what.insert("disabled".into(), d.into());
    }
    if let Some(r) = c.role {
        u.role = r;
        what.insert("role".into(), r.as_str().into());
    }
    if let Some(s) = c.scope {
        check_scope(&s)?;
        what.insert("scope".into(), s.clone().into());
        u.scope = s;
    }
    let mut url = None;
    match c.totp {
        Some(true) => {
            let (secret, link) = new_totp(&u.name);
            u.totp = Some(secret);
            url = Some(link);
            what.insert("totp".into(), "enrolled".into());
        }
        Some(false) => {
            u.totp = None;
            what.insert("totp".into(), "removed".into());
        }
        None => {}
    }
    if c.unlock == Some(true) {
        u.locked_until = None;
        u.failures = 0;
        what.insert("unlock".into(), true.into());
    }
    store
        .write_auth(&AuthWrite {
            put: vec![u.record()],
            audit: vec![audit::entry(
                &by.who,
                by.role.as_str(),
                "user.change",
                "ok",
                source,
                &u.name,
                serde_json::Value::Object(what),
            )],
            ..Default::default()
        })
        .await?;
    Ok((u, url))
}

/// What `token create` and the admin endpoint take.
#[derive(Clone, Debug, Deserialize)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub expires_days: Option<u32>,
    #[serde(default)]
    pub kiosk: bool,
}

/// Creates a token; answers it and its secret (shown once, never stored).
pub async fn create_token(
    store: &dyn Store,
    by: &Principal,
    source: &str,
    n: NewToken,
) -> anyhow::Result<(Token, String)> {
    check_name(&n.name)?;
    check_scope(&n.scope)?;
    if n.kiosk && n.role != Role::Viewer {
        anyhow::bail!("a kiosk token has the viewer role");
    }
    if n.expires_days.is_some_and(|d| d == 0 || d > 3660) {
        anyhow::bail!("--expires-days is 1 to 3,660");
    }
    let secret = new_secret(if n.kiosk { "omk_" } else { "om_" });
    let hash = secret_hash(&secret);
    let t = Token {
        id: hash[..12].to_string(),
        hash,
        name: n.name,
        role: n.role,
        scope: n.scope,
        kiosk: n.kiosk,
        created: now_text(),
        created_by: by.who.clone(),
        expires_ms: n
            .expires_days
            .map(|d| now_ms() + i64::from(d) * crate::model::value::DAY_MS),
        revoked: None,
    };
    store
        .write_auth(&AuthWrite {
            put: vec![t.record()],
            audit: vec![audit::entry(
                &by.who,
                by.role.as_str(),
                "token.create",
                "ok",
                source,
                &t.id,
                serde_json::json!({ "name": t.name, "role": t.role, "scope": t.scope,
                                    "kiosk": t.kiosk, "expires": t.expires_ms.map(ms_text) }),
            )],
            ..Default::default()
        })
        .await?;
    Ok((t, secret))
}

/// Revokes tokens by id or by name; answers the ids revoked. A kiosk
/// token's sessions end with it.
pub async fn revoke_token(
    store: &dyn Store,
    by: &Principal,
    source: &str,
    id_or_name: &str,
) -> anyhow::Result<Vec<String>> {
    let (_, tokens) = records(store).await?;
    let hit: Vec<Token> = tokens
        .into_iter()
        .filter(|t| t.revoked.is_none() && (t.id == id_or_name || t.name == id_or_name))
        .collect();
    if hit.is_empty() {
        anyhow::bail!("no valid token with id or name {id_or_name:?}");
    }
    let mut w = AuthWrite::default();
    let now = now_text();
    for t in &hit {
        let mut t = t.clone();
        t.revoked = Some(now.clone());
        w.put.push(t.record());
        w.audit.push(audit::entry(
            &by.who,
            by.role.as_str(),
            "token.revoke",
            "ok",
            source,
            &t.id,
            serde_json::json!({ "name": t.name }),
        ));
    }
    store.write_auth(&w).await?;
    Ok(hit.into_iter().map(|t| t.id).collect())
}
