//! Authentication and authorisation over HTTP: every route is declared with
//! the permission it needs ([`Routes`]); a route layer finds the principal
//! (session cookie, `Authorization: Bearer`, or HTTP Basic with a token as
//! the password), answers 401 with `WWW-Authenticate` for none, 403 for a
//! role without the permission (audited), 429 past a principal's rate on
//! expensive routes, and hands the principal to the handler ([`Who`]).
//! Also login, logout, who-am-I, the kiosk link, and the admin endpoints
//! for accounts, tokens and the audit trail.

use super::App;
use super::error::ApiError;
use crate::auth::{LoginError, Perm, Principal, Role, Via, accounts, audit};
use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde::Deserialize;
use serde_json::{Value as J, json};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The session cookie's name.
pub const COOKIE: &str = "onemap_session";

/// The methods a route may answer (HEAD is checked as GET).
pub const METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// The router under construction, with every route's declared permission
/// per method: the one place permissions are declared.
pub struct Routes {
    router: axum::Router<Arc<App>>,
    table: HashMap<&'static str, Vec<(Method, Perm)>>,
    list: Vec<(&'static str, Method, Perm)>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            router: axum::Router::new(),
            table: HashMap::new(),
            list: Vec::new(),
        }
    }
}

impl Routes {
    /// Adds `path` answered by `handler`, needing `perms` per method. A
    /// method the handler answers but `perms` does not name is refused
    /// (403) for everyone, and the route test fails for it.
    pub fn at(
        mut self,
        path: &'static str,
        perms: &[(Method, Perm)],
        handler: MethodRouter<Arc<App>>,
    ) -> Routes {
        let entry = self.table.entry(path).or_default();
        for (m, p) in perms {
            assert!(
                !entry.iter().any(|(x, _)| x == m),
                "{m} {path} declared twice"
            );
            entry.push((m.clone(), *p));
            self.list.push((path, m.clone(), *p));
        }
        self.router = self.router.route(path, handler);
        self
    }

    /// Every declared (path, method, permission).
    pub fn declared(&self) -> &[(&'static str, Method, Perm)] {
        &self.list
    }

    /// The router without the guard: only for the test that walks the
    /// routes and checks each answered method is declared.
    #[doc(hidden)]
    pub fn unguarded(self, app: Arc<App>) -> axum::Router {
        self.router.with_state(app)
    }

    /// The router with the guard in front of every route.
    pub fn finish(self, app: Arc<App>) -> (axum::Router, Vec<(&'static str, Method, Perm)>) {
        let guard = Arc::new(Guard {
            app: app.clone(),
            table: self.table,
            rates: Mutex::default(),
        });
        let router = self
            .router
            .route_layer(axum::middleware::from_fn_with_state(guard, guard_layer))
            .with_state(app);
        (router, self.list)
    }
}

/// The permission matrix as Markdown (README.md carries it; a test keeps
/// the two equal): each permission, the routes that need it, and the roles
/// that have it.
pub fn matrix_markdown(declared: &[(&'static str, Method, Perm)]) -> String {
    use crate::auth::{PERMS, ROLES};
    let mut out = String::from("| permission | routes |");
    for r in ROLES {
        out.push_str(&format!(" {} |", r.as_str()));
    }
    out.push_str("\n|---|---|");
    for _ in ROLES {
        out.push_str("---|");
    }
    out.push('\n');
    for p in PERMS {
        // Per path, the methods that need `p` ("any" when all do).
        let mut routes: Vec<(&str, Vec<&str>)> = Vec::new();
        for (path, m, q) in declared {
            if *q != p {
                continue;
            }
            match routes.iter_mut().find(|(x, _)| x == path) {
                Some((_, ms)) => ms.push(m.as_str()),
                None => routes.push((path, vec![m.as_str()])),
            }
        }
        let routes: Vec<String> = routes
            .into_iter()
            .map(|(path, ms)| {
                let ms = if ms.len() == METHODS.len() {
                    "any".to_string()
                } else {
                    ms.join("/")
                };
                format!("{ms} `{path}`")
            })
            .collect();
        let name = serde_json::to_value(p)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!("| **{name}** | {} |", routes.join(", ")));
        for r in ROLES {
            out.push_str(if r.allows(p) { " ✓ |" } else { " |" });
        }
        out.push('\n');
    }
    out
}

/// Every permission for all methods (a catch-all route).
pub fn all(p: Perm) -> [(Method, Perm); 6] {
    METHODS.map(|m| (m, p))
}

struct Guard {
    app: Arc<App>,
    table: HashMap<&'static str, Vec<(Method, Perm)>>,
    /// Requests to expensive routes per principal: (count, window start).
    rates: Mutex<HashMap<String, (u32, Instant)>>,
}

/// The principal a handler acts for (set by the guard; shared, so a
/// token's principal costs no copy per request).
#[derive(Clone, Debug)]
pub struct Who(pub Arc<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Who>()
            .cloned()
            .ok_or_else(|| unauthorized("sign in first"))
    }
}

/// The client address (for the audit trail and throttling).
pub fn peer(parts_ext: &axum::http::Extensions) -> IpAddr {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, detail)
}

fn challenge(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="onemap", Basic realm="onemap", charset="UTF-8""#),
    );
    res
}

/// The credentials a request carries: (kind, secret).
enum Presented {
    None,
    Token(String),
    Cookie(String),
    Malformed,
}

fn presented(h: &HeaderMap) -> Presented {
    if let Some(v) = h.get(header::AUTHORIZATION) {
        let Ok(v) = v.to_str() else {
            return Presented::Malformed;
        };
        let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Presented::Token(rest.trim().to_string());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine;
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
                return Presented::Malformed;
            };
            let Ok(text) = String::from_utf8(raw) else {
                return Presented::Malformed;
            };
            // Any user name; the token is the password.
            return match text.split_once(':') {
                Some((_, pw)) => Presented::Token(pw.to_string()),
                None => Presented::Malformed,
            };
        }
        return Presented::Malformed;
    }
    match cookie(h) {
        Some(c) => Presented::Cookie(c),
        None => Presented::None,
    }
}

/// The session cookie's value.
pub fn cookie(h: &HeaderMap) -> Option<String> {
    for v in h.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(';') {
            if let Some((k, val)) = part.trim().split_once('=')
                && k == COOKIE
                && !val.is_empty()
            {
                return Some(val.to_string());
            }
        }
    }
    None
}

async fn guard_layer(
    State(g): State<Arc<Guard>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    let Some(path) = req.extensions().get::<MatchedPath>().map(|m| m.as_str()) else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "no permission is declared for this route",
        )
        .into_response();
    };
    let declared = g.table.get(path).map(Vec::as_slice).unwrap_or(&[]);
    let Some(perm) = declared.iter().find(|(m, _)| *m == method).map(|(_, p)| *p) else {
        // Not declared: refused for everyone, before the handler (405,
        // with the methods that are declared).
        let mut allow: Vec<&str> = Vec::new();
        for (m, _) in declared {
            allow.push(m.as_str());
            if *m == Method::GET {
                allow.push("HEAD");
            }
        }
        let mut res = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} answers {}", allow.join(", ")),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&allow.join(",")) {
            res.headers_mut().insert(header::ALLOW, v);
        }
        return res;
    };
    let ip = peer(req.extensions());
    let who = match presented(req.headers()) {
        Presented::Token(t) => match g.app.auth.by_token(&t) {
            Some(p) => Some(p),
            None => {
                if perm == Perm::Public {
                    None
                } else if let Some(wait) = g.app.auth.throttled(ip) {
                    // Guessing tokens is throttled like guessing passwords
                    // (and does not fill the audit trail).
                    return ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many failed sign-ins from this address",
                    )
                    .retry_after(wait.as_secs().max(1) as u32)
                    .into_response();
                } else {
                    g.app.auth.count_failure(ip);
                    g.app
                        .audit
                        .record(audit::entry(
                            "",
                            "",
                            "auth",
                            "failed",
                            &ip.to_string(),
                            path,
                            json!({ "why": "unknown, expired or revoked token" }),
                        ))
                        .await;
                    return challenge(
                        unauthorized("the token is unknown, expired or revoked").into_response(),
                    );
                }
            }
        },
        Presented::Cookie(c) => g.app.auth.by_session(&c).map(Arc::new),
        Presented::Malformed if perm != Perm::Public => {
            return challenge(
                unauthorized(
                    "the Authorization header is not `Bearer TOKEN` or Basic with the token as password",
                )
                .into_response(),
            );
        }
        _ => None,
    };
    if perm == Perm::Public {
        if let Some(p) = who {
            req.extensions_mut().insert(Who(p));
        }
        return next.run(req).await;
    }
    let Some(p) = who else {
        return challenge(
            unauthorized("sign in first: a session, `Authorization: Bearer TOKEN`, or Basic with a token as password")
                .into_response(),
        );
    };
    if !p.allows(perm) {
        g.app
            .audit
            .record(audit::entry(
                &p.who,
                p.role.as_str(),
                "denied",
                "denied",
                &ip.to_string(),
                &format!("{method} {path}"),
                json!({ "needs": perm }),
            ))
            .await;
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the {} role may not do this ({method} {path} needs the {perm:?} permission)",
                p.role
            ),
        )
        .with_extra(json!({ "role": p.role, "needs": perm }))
        .into_response();
    }
    if matches!(perm, Perm::Query) && g.app.config.rate_per_minute > 0 {
        let wait = {
            let mut m = match g.rates.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            if m.len() > 100_000 {
                m.retain(|_, (_, t)| t.elapsed().as_secs() < 60);
            }
            let e = m.entry(p.who.clone()).or_insert((0, Instant::now()));
            if e.1.elapsed().as_secs() >= 60 {
                *e = (0, Instant::now());
            }
            e.0 += 1;
            (e.0 > g.app.config.rate_per_minute).then(|| 60 - e.1.elapsed().as_secs().min(59))
        };
        if let Some(s) = wait {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "more than {} expensive requests in a minute from {}: retry in {s} s",
                    g.app.config.rate_per_minute, p.who
                ),
            )
            .retry_after(s as u32)
            .into_response();
        }
    }
    req.extensions_mut().insert(Who(p));
    next.run(req).await
}

/// Security headers on every response.
pub async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; worker-src 'self' blob:; child-src blob:; \
         connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'; \
         base-uri 'self'; form-action 'self'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    res
}

fn set_cookie(app: &App, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = if app.config.auth.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let age = match max_age {
        Some(s) => format!("; Max-Age={s}"),
        None => String::new(),
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .unwrap_or(HeaderValue::from_static("onemap_session=; Path=/"))
}

/// What the web app is told about the signed-in principal.
pub fn me_json(p: &Principal, kiosk: bool) -> J {
    let perms: Vec<Perm> = crate::auth::PERMS
        .into_iter()
        .filter(|x| !matches!(x, Perm::Public | Perm::Signed) && p.allows(*x))
        .collect();
    json!({
        "name": p.who,
        "role": p.role,
        "role_label": p.role.label_zh(),
        "scope": p.scope,
        "perms": perms,
        "kiosk": kiosk,
        "via": p.via,
    })
}

#[derive(Deserialize)]
pub struct LoginBody {
    name: String,
    password: String,
    #[serde(default)]
    otp: Option<String>,
}

/// `POST /api/login`.
pub async fn login(
    State(st): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    if b.name.len() > 256 || b.password.len() > 1024 {
        return Err(ApiError::bad_request("name or password too long"));
    }
    match st
        .auth
        .login(&b.name, &b.password, b.otp.as_deref(), addr.ip())
        .await
    {
        Ok((cookie, p)) => {
            let mut res = Json(me_json(&p, false)).into_response();
            res.headers_mut()
                .insert(header::SET_COOKIE, set_cookie(&st, &cookie, None));
            Ok(res)
        }
        Err(e) => Err(login_error(e)),
    }
}

fn login_error(e: LoginError) -> ApiError {
    match e {
        LoginError::Wrong => ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password")
            .with_extra(json!({ "code": "wrong" })),
        LoginError::Locked(until) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("too many failed logins: the account is locked until {until}"),
        )
        .with_extra(json!({ "code": "locked", "until": until })),
        LoginError::Throttled(wait) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address",
        )
        .with_extra(json!({ "code": "throttled" }))
        .retry_after(wait.as_secs().max(1) as u32),
        LoginError::NeedOtp { enrolled: true } => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this account needs its 6-digit authenticator code",
        )
        .with_extra(json!({ "code": "otp_required" })),
        LoginError::NeedOtp { enrolled: false } => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this role needs a second factor and the account has none: an administrator \
             enrols one (onemap user totp NAME)",
        )
        .with_extra(json!({ "code": "otp_not_enrolled" })),
        LoginError::Store(s) => ApiError::unavailable(format!("the store did not answer: {s}")),
    }
}

/// `POST /api/logout`.
pub async fn logout(
    State(st): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Who(p): Who,
    headers: HeaderMap,
) -> Response {
    if let Some(c) = cookie(&headers) {
        st.auth.logout(&c, &p, addr.ip()).await;
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&st, "", Some(0)));
    res
}

/// How long a kiosk's cookie is kept by the browser (renewed by `/api/me`).
const KIOSK_COOKIE_SECS: u64 = 30 * 86_400;

/// `GET /api/me`: who is signed in. A kiosk's cookie is renewed.
pub async fn me(State(st): State<Arc<App>>, Who(p): Who, headers: HeaderMap) -> Response {
    let kiosk_cookie =
        cookie(&headers).filter(|_| p.via == Via::Session && p.who.starts_with("token:"));
    let mut res = Json(me_json(&p, kiosk_cookie.is_some())).into_response();
    if let Some(c) = kiosk_cookie {
        res.headers_mut().insert(
            header::SET_COOKIE,
            set_cookie(&st, &c, Some(KIOSK_COOKIE_SECS)),
        );
    }
    res
}

/// `GET /kiosk/{token}`: a wall screen's link: the kiosk token becomes a
/// session cookie, and the screen opens.
pub async fn kiosk(
    State(st): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let cookie = st
        .auth
        .kiosk(&token, addr.ip())
        .await
        .map_err(login_error)?;
    let mut res = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static("/#/screen"))],
    )
        .into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&st, &cookie, Some(KIOSK_COOKIE_SECS)),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

fn bad(e: anyhow::Error) -> ApiError {
    ApiError::bad_request(format!("{e:#}"))
}

/// `GET /api/admin/users`.
pub async fn users(State(st): State<Arc<App>>) -> Result<Json<J>, ApiError> {
    st.auth.refresh().await?;
    let list: Vec<J> = st.auth.users().iter().map(accounts::User::public).collect();
    Ok(Json(json!({ "users": list })))
}

/// `POST /api/admin/users`.
pub async fn add_user(
    State(st): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Who(p): Who,
    body: Result<Json<accounts::NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(n) = body?;
    check_grants(&st, &p, n.role, &n.scope)?;
    let u = accounts::add_user(st.store.as_ref(), &p, &addr.ip().to_string(), n)
        .await
        .map_err(bad)?;
    st.auth.refresh().await?;
    Ok((StatusCode::CREATED, Json(u.public())).into_response())
}

/// What a non-admin account manager may hand out: any role but admin and
/// auditor (三权分立: the security administrator must not be able to make
/// itself, or a token, that reads the audit trail), and only scopes of
/// grids that exist.
fn check_grants(st: &App, p: &Principal, role: Role, scope: &[String]) -> Result<(), ApiError> {
    if matches!(role, Role::Admin | Role::Auditor) && p.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("only an admin may give the {role} role"),
        ));
    }
    let cat = st.catalog();
    if let Some(c) = scope.iter().find(|c| cat.grids.get(c).is_none()) {
        return Err(ApiError::bad_request(format!(
            "scope: no grid with code {c}"
        )));
    }
    Ok(())
}

/// `PATCH /api/admin/users/{name}`.
pub async fn change_user(
    State(st): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Who(p): Who,
    Path(name): Path<String>,
    body: Result<Json<accounts::UserChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<J>, ApiError> {
    let Json(c) = body?;
    if let Some(r) = c.role {
        check_grants(&st, &p, r, &[])?;
    }
    if let Some(scope) = &c.scope {
        check_grants(&st, &p, Role::Viewer, scope)?;
    }
    // Nor may it take over an admin's or auditor's account (a new password,
    // a second factor removed).
    if p.role != Role::Admin
        && let Some(target) = st.auth.users().into_iter().find(|u| u.name == name)
        && matches!(target.role, Role::Admin | Role::Auditor)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "only an admin may change the {} account {name}",
                target.role
            ),
        ));
    }
    let (u, url) = accounts::change_user(st.store.as_ref(), &p, &addr.ip().to_string(), &name, c)
        .await
        .map_err(bad)?;
    st.auth.refresh().await?;
    let mut j = u.public();
    if let (Some(url), Some(o)) = (url, j.as_object_mut()) {
        o.insert("otpauth".into(), url.into());
    }
    Ok(Json(j))
}

/// `GET /api/admin/tokens`.
pub async fn tokens(State(st): State<Arc<App>>) -> Result<Json<J>, ApiError> {
    st.auth.refresh().await?;
    let list: Vec<J> = st
        .auth
        .tokens()
        .iter()
        .map(accounts::Token::public)
        .collect();
    Ok(Json(json!({ "tokens": list })))
}

/// `POST /api/admin/tokens`: the secret is in the answer, once.
pub async fn create_token(
    State(st): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Who(p): Who,
    body: Result<Json<accounts::NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(n) = body?;
    check_grants(&st, &p, n.role, &n.scope)?;
    let (t, secret) = accounts::create_token(st.store.as_ref(), &p, &addr.ip().to_string(), n)
        .await
        .map_err(bad)?;
    st.auth.refresh().await?;
    let mut j = t.public();
    if let Some(o) = j.as_object_mut() {
        o.insert("token".into(), secret.into());
    }
    Ok((StatusCode::CREATED, Json(j)).into_response())
}

/// `DELETE /api/admin/tokens/{id}`.
pub async fn revoke_token(
    State(st): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Who(p): Who,
    Path(id): Path<String>,
) -> Result<Json<J>, ApiError> {
    let ids = accounts::revoke_token(st.store.as_ref(), &p, &addr.ip().to_string(), &id)
        .await
        .map_err(|e| ApiError::not_found(format!("{e:#}")))?;
    st.auth.refresh().await?;
    Ok(Json(json!({ "revoked": ids })))
}

#[derive(Deserialize, Default)]
pub struct AuditParams {
    before: Option<i64>,
    actor: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
}

impl AuditParams {
    fn query(self, default: i64, max: i64) -> crate::store::auth::AuditQuery {
        crate::store::auth::AuditQuery {
            before: self.before,
            actor: self.actor,
            action: self.action,
            outcome: self.outcome,
            since: self.since,
            until: self.until,
            limit: self.limit.unwrap_or(default).clamp(1, max),
        }
    }
}

/// `GET /api/audit`: newest first, with `next` to page back.
pub async fn audit_page(
    State(st): State<Arc<App>>,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<J>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let q = q.query(100, 1000);
    let rows = st.store.audit_page(&q).await?;
    let next = (rows.len() as i64 == q.limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let rows: Vec<J> = rows
        .iter()
        .map(|r| {
            let mut j = serde_json::to_value(r).unwrap_or(J::Null);
            if let Some(o) = j.as_object_mut()
                && let Some(d) = o.get("detail").and_then(J::as_str)
            {
                let parsed = serde_json::from_str(d).unwrap_or(J::String(d.to_string()));
                o.insert("detail".into(), parsed);
            }
            j
        })
        .collect();
    Ok(Json(json!({ "rows": rows, "next_before": next })))
}

/// A CSV cell Excel will not run as a formula: the name tried in a failed
/// login is anyone's text (`=HYPERLINK(…)`), so a leading `= + - @` or
/// control character gets a `'` before it, as OWASP advises.
fn cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_string(),
    }
}

/// `GET /api/audit.csv`: the filtered trail as CSV (UTF-8 with BOM, for
/// Excel), newest first, up to 100,000 rows.
pub async fn audit_csv(
    State(st): State<Arc<App>>,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut q = q.query(100_000, 100_000);
    let mut w = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    let io = |e: csv::Error| ApiError::internal(e.to_string());
    w.write_record([
        "序号 seq",
        "时间 time (UTC)",
        "主体 actor",
        "角色 role",
        "操作 action",
        "结果 outcome",
        "来源 source",
        "对象 target",
        "详情 detail",
        "前序哈希 prev",
        "哈希 hash",
    ])
    .map_err(io)?;
    let mut left = q.limit;
    while left > 0 {
        q.limit = left.min(5_000);
        let rows = st.store.audit_page(&q).await?;
        for r in &rows {
            let e = &r.entry;
            w.write_record([
                r.seq.to_string(),
                cell(&e.time),
                cell(&e.actor),
                cell(&e.role),
                cell(&e.action),
                cell(&e.outcome),
                cell(&e.source),
                cell(&e.target),
                cell(&e.detail),
                r.prev.clone(),
                r.hash.clone(),
            ])
            .map_err(io)?;
        }
        left -= rows.len() as i64;
        match rows.last() {
            Some(l) if rows.len() as i64 == q.limit => q.before = Some(l.seq),
            _ => break,
        }
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"onemap-audit.csv\"",
            ),
        ],
        bytes,
    )
        .into_response())
}
