//! Access control (#14): every route declares its permission, every role is
//! checked against every route, sign-in (sessions, tokens, Basic, lockout,
//! throttling, TOTP, kiosk), authorship from the principal, and the audit
//! trail's hash chain (`onemap audit verify`).

mod common;

use common::{bearer_client, expect_problem, token};
use onemap::auth::{Perm, ROLES, Role};
use onemap::store::Store;
use reqwest::Method;
use serde_json::{Value as J, json};
use std::sync::Arc;

const STREET: &str = "990101001";

/// A concrete request for a declared route pattern: path and JSON body.
/// Reads use real codes and names so an allowed role gets a 2xx.
fn sample(pattern: &str, method: &Method, plan: i64, event: &str) -> (String, Option<J>) {
    let path = match pattern {
        "/kiosk/{token}" => "/kiosk/omk_not-a-token".to_string(),
        "/api/admin/users/{name}" => "/api/admin/users/daping".to_string(),
        "/api/admin/tokens/{id}" => "/api/admin/tokens/000000000000".to_string(),
        "/api/layers/{name}" => "/api/layers/cameras".to_string(),
        "/api/grids/{code}" | "/api/grids/{code}/history" | "/api/grids/{code}/revert" => {
            pattern.replace("{code}", STREET)
        }
        p if p.starts_with("/api/plans/{id}") => p.replace("{id}", &plan.to_string()),
        "/api/events/{id}" => format!("/api/events/{event}"),
        "/api/{*rest}" => "/api/no-such-thing".to_string(),
        "/ogc/{*rest}" => "/ogc/no-such-thing".to_string(),
        "/ogc/collections/{id}" | "/ogc/collections/{id}/queryables" => {
            pattern.replace("{id}", "cameras")
        }
        "/ogc/collections/{id}/items" => {
            if method == Method::GET {
                "/ogc/collections/cameras/items?limit=2".to_string()
            } else {
                format!("/ogc/collections/plan-{plan}/items")
            }
        }
        "/ogc/collections/{id}/items/{fid}" => {
            if method == Method::GET {
                "/ogc/collections/cameras/items/1".to_string()
            } else {
                format!("/ogc/collections/plan-{plan}/items/{STREET}999")
            }
        }
        "/tiles/{file}" => "/tiles/grids.json".to_string(),
        "/tiles/{layers}/{z}/{x}/{file}" => "/tiles/grids/14/13684/6296.mvt".to_string(),
        "/styles/{file}" => "/styles/screen.json".to_string(),
        "/api/locate" => {
            if method == Method::GET {
                "/api/locate?lon=120.0&lat=30.0".to_string()
            } else {
                "/api/locate".to_string()
            }
        }
        "/api/nearest" => "/api/nearest?layer=cameras&lon=120.0&lat=30.0&limit=3".to_string(),
        "/api/query.csv" | "/api/query.geojson" if method == Method::GET => {
            let q = json!({"area": {"grid": STREET}, "layers": ["cameras"]}).to_string();
            format!("{pattern}?q={}", common::url_escape(&q))
        }
        p => p.to_string(),
    };
    let body = match (pattern, method.as_str()) {
        (_, "GET" | "DELETE" | "OPTIONS") => None,
        ("/api/query" | "/api/query.csv" | "/api/query.geojson", _) => {
            Some(json!({"area": {"grid": STREET}, "layers": ["cameras"], "limit": 5}))
        }
        ("/api/locate", _) => Some(json!({"points": [[120.0, 30.0]]})),
        ("/api/login", _) => Some(json!({"name": "nobody", "password": "wrong-password"})),
        // Deliberately incomplete writes: they pass the guard and are
        // refused by the handler (400/404/409), so nothing changes.
        _ => Some(json!({"not": "a valid body"})),
    };
    (path, body)
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    method: &Method,
    path: &str,
    body: &Option<J>,
) -> reqwest::Response {
    let mut r = client
        .request(method.clone(), format!("{base}{path}"))
        .header("accept", "application/json");
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().await.expect("request")
}

/// Every route the router answers is declared, method by method: on the
/// router without the guard, each undeclared method of a declared path
/// must be 405 (the handler does not answer it), and each declared one
/// must not be.
#[tokio::test]
async fn every_route_declares_its_permission() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    let app = onemap::app::load(store, common::config())
        .await
        .expect("load");
    let routes = onemap::api::routes();
    let declared: Vec<(&str, Method, Perm)> = routes.declared().to_vec();
    let router = routes.unguarded(app);
    let mut paths: Vec<&str> = declared.iter().map(|d| d.0).collect();
    paths.dedup();
    let mut missing = Vec::new();
    for path in paths {
        for m in onemap::api::auth::METHODS {
            let is_declared = declared.iter().any(|d| d.0 == path && d.1 == m);
            let (concrete, _) = sample(path, &m, 1, "x");
            let req = axum::http::Request::builder()
                .method(m.clone())
                .uri(&concrete)
                .body(axum::body::Body::empty())
                .expect("request");
            use tower::ServiceExt;
            let res = router.clone().oneshot(req).await.expect("answer");
            let answered = res.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED;
            if answered && !is_declared {
                missing.push(format!(
                    "{m} {path} is answered ({}) but declares no permission",
                    res.status()
                ));
            }
            if !answered && is_declared {
                missing.push(format!("{m} {path} is declared but not answered"));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
    // The walk covered the whole API (a broken `routes()` would pass it
    // vacuously).
    assert!(declared.len() > 40, "{} routes declared", declared.len());
}

/// Every role against every route: allowed → passes the guard (2xx for the
/// reads), not allowed → 403 problem JSON, anonymous → 401 with
/// WWW-Authenticate except the public routes. Denied writes change nothing.
#[tokio::test]
async fn role_route_matrix() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    let mut tokens = Vec::new();
    for r in ROLES {
        tokens.push((r, token(store.as_ref(), r, &[]).await));
    }
    let srv = common::serve(store.clone(), common::config()).await;
    // A draft plan for the plan routes.
    let plan = srv
        .client
        .post(format!("{}/api/plans", srv.base))
        .json(&json!({"title": "matrix", "scope": [STREET]}))
        .send()
        .await
        .expect("plan");
    assert_eq!(plan.status(), 201);
    let plan_id = plan.json::<J>().await.expect("plan json")["id"]
        .as_i64()
        .expect("plan id");
    let event = "matrix-order";
    let before_seq = store.last_seq().await.expect("seq");
    let before_counts = counts(&srv).await;

    let routes = onemap::api::routes();
    let anon = reqwest::Client::new();
    let mut failures = Vec::new();
    for (pattern, method, perm) in routes.declared() {
        let (path, body) = sample(pattern, method, plan_id, event);
        // Anonymous.
        let r = send(&anon, &srv.base, method, &path, &body).await;
        let s = r.status().as_u16();
        if *perm == Perm::Public {
            if s == 403 {
                failures.push(format!("anonymous {method} {path}: 401 on a public route"));
            }
        } else if s != 401 || r.headers().get("www-authenticate").is_none() {
            failures.push(format!(
                "anonymous {method} {path}: {s}, not 401 + WWW-Authenticate"
            ));
        }
        for (role, tok) in &tokens {
            let c = bearer_client(tok);
            let r = send(&c, &srv.base, method, &path, &body).await;
            let s = r.status().as_u16();
            let allowed = role.allows(*perm);
            if *perm == Perm::Public {
                // Login and the kiosk link answer 401 for bad credentials
                // themselves; the guard must not refuse them.
                if s == 403 {
                    failures.push(format!("{role} {method} {path}: 403 on a public route"));
                }
            } else if allowed {
                let read = *method == Method::GET
                    && !matches!(*pattern, "/kiosk/{token}" | "/api/{*rest}" | "/ogc/{*rest}");
                if s == 401 || s == 403 || (read && !(200..300).contains(&s)) {
                    failures.push(format!("{role} {method} {path}: {s}, allowed"));
                }
            } else if s != 403 {
                failures.push(format!("{role} {method} {path}: {s}, not 403"));
            } else {
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let j: J = r.json().await.unwrap_or(J::Null);
                if !ct.starts_with("application/problem+json") || j["status"] != 403 {
                    failures.push(format!("{role} {method} {path}: 403 without problem JSON"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    // The writes that were refused (by the guard or, for allowed roles
    // with an invalid body, by the handler) changed nothing but the plan's
    // own table.
    let after = counts(&srv).await;
    assert_eq!(before_counts, after, "catalog counts changed");
    let rows = store.changes_since(before_seq, 10_000).await.expect("log");
    assert!(
        rows.iter()
            .all(|r| r.layer == "onemap_plans" || r.layer == "onemap_plan_grids"),
        "feature changes after refused writes: {:?}",
        rows.iter()
            .map(|r| (&r.layer, &r.op, &r.author))
            .collect::<Vec<_>>()
    );
    srv.running.stop().await.expect("stop");
}

async fn counts(srv: &common::TestServer) -> J {
    let (s, j) = srv.get_json("/api/layers").await;
    assert_eq!(s, 200);
    j
}

/// Anonymous and wrong-role writes change nothing: the catalog and the
/// change log are the same before and after.
#[tokio::test]
async fn refused_writes_change_nothing() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    let viewer = token(store.as_ref(), Role::Viewer, &[]).await;
    let dept = token(store.as_ref(), Role::Department, &[]).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let seq = store.last_seq().await.expect("seq");
    let before = counts(&srv).await;
    let order = json!({"type": "Feature", "id": "x-1",
        "geometry": {"type": "Point", "coordinates": [120.0, 30.0]},
        "properties": {"title": "t", "source": "hotline_12345", "category": "other",
                       "status": "new", "created_at": "2026-12-01T00:00:00Z"}});
    for c in [
        reqwest::Client::new(),
        bearer_client(&viewer),
        bearer_client(&dept),
    ] {
        for (m, p, b) in [
            (Method::POST, "/api/events".to_string(), Some(order.clone())),
            (
                Method::PATCH,
                "/api/events/x-1".to_string(),
                Some(json!({"status": "closed"})),
            ),
            (
                Method::POST,
                "/api/plans".to_string(),
                Some(json!({"title": "t", "scope": [STREET]})),
            ),
            (
                Method::POST,
                format!("/api/grids/{STREET}/revert"),
                Some(json!({"version": 1, "reason": "r"})),
            ),
            (
                Method::POST,
                "/api/admin/users".to_string(),
                Some(json!({"name": "evil", "role": "admin", "password": "Evil-Pass-2026"})),
            ),
        ] {
            let r = send(&c, &srv.base, &m, &p, &b).await;
            assert!(
                matches!(r.status().as_u16(), 401 | 403),
                "{m} {p}: {}",
                r.status()
            );
        }
    }
    assert_eq!(counts(&srv).await, before);
    assert_eq!(
        store.last_seq().await.expect("seq"),
        seq,
        "the change log grew"
    );
    assert!(
        onemap::auth::accounts::find_user(store.as_ref(), "evil")
            .await
            .expect("users")
            .is_none()
    );
    srv.running.stop().await.expect("stop");
}

async fn add_user(store: &dyn onemap::store::Store, name: &str, role: Role, pw: &str) {
    onemap::auth::accounts::add_user(
        store,
        &onemap::auth::Principal::system("test"),
        "test",
        onemap::auth::accounts::NewUser {
            name: name.into(),
            role,
            scope: vec![],
            password: pw.into(),
        },
    )
    .await
    .expect("add user");
}

fn cookie_of(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn login(base: &str, name: &str, pw: &str, otp: Option<&str>) -> reqwest::Response {
    let mut b = json!({"name": name, "password": pw});
    if let Some(o) = otp {
        b["otp"] = o.into();
    }
    reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&b)
        .send()
        .await
        .expect("login")
}

/// Sessions: the cookie's flags, one answer for a wrong name and a wrong
/// password, lockout after repeated failures, throttling per address,
/// logout ending the session.
#[tokio::test]
async fn login_sessions_lockout_and_throttle() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    add_user(store.as_ref(), "zhang", Role::Department, "Zhang-Pass-2026").await;
    add_user(store.as_ref(), "li", Role::Viewer, "Li-Pass-2026x").await;
    let srv = common::serve(store.clone(), common::config()).await;

    let ok = login(&srv.base, "zhang", "Zhang-Pass-2026", None).await;
    assert_eq!(ok.status(), 200);
    let set = cookie_of(&ok).expect("set-cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain http: {set}");
    let me: J = ok.json().await.expect("me");
    assert_eq!(me["role"], "department");
    assert!(
        me["perms"]
            .as_array()
            .expect("perms")
            .contains(&json!("query"))
    );
    let value = set.split(';').next().expect("cookie").to_string();
    let with_cookie = |c: &str| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("cookie", c.parse().expect("cookie"));
        reqwest::Client::builder()
            .default_headers(h)
            .build()
            .expect("client")
    };
    let c = with_cookie(&value);
    let r = c
        .get(format!("{}/api/me", srv.base))
        .send()
        .await
        .expect("me");
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{}/api/query", srv.base))
        .json(&json!({"area": {"grid": STREET}, "layers": ["cameras"], "limit": 0}))
        .send()
        .await
        .expect("query");
    assert_eq!(r.status(), 200);

    // Wrong password and unknown name: the same answer.
    let a = login(&srv.base, "li", "wrong-password", None).await;
    let b = login(&srv.base, "nobody-here", "wrong-password", None).await;
    assert_eq!(a.status(), 401);
    assert_eq!(b.status(), 401);
    let (ja, jb): (J, J) = (a.json().await.expect("a"), b.json().await.expect("b"));
    assert_eq!(ja, jb, "the answers differ");

    // Lockout: 5 failures lock the account; the right password then fails.
    for _ in 0..4 {
        assert_eq!(
            login(&srv.base, "li", "wrong-password", None)
                .await
                .status(),
            401
        );
    }
    let locked = login(&srv.base, "li", "Li-Pass-2026x", None).await;
    assert_eq!(locked.status(), 401);
    let j: J = locked.json().await.expect("locked");
    assert_eq!(j["code"], "locked", "{j}");
    // The admin unlocks it.
    let r = srv
        .client
        .patch(format!("{}/api/admin/users/li", srv.base))
        .json(&json!({"unlock": true}))
        .send()
        .await
        .expect("unlock");
    assert_eq!(r.status(), 200);
    // Throttle: this address has failed 7 times; 3 more and it is told to wait.
    let mut last = 0;
    for _ in 0..4 {
        last = login(&srv.base, "nobody", "x", None)
            .await
            .status()
            .as_u16();
    }
    assert_eq!(last, 429);
    let r = login(&srv.base, "li", "Li-Pass-2026x", None).await;
    assert_eq!(r.status(), 429, "throttled even with the right password");
    assert!(r.headers().get("retry-after").is_some());

    // Logout ends the session.
    let r = c
        .post(format!("{}/api/logout", srv.base))
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    let r = c
        .get(format!("{}/api/me", srv.base))
        .send()
        .await
        .expect("me");
    assert_eq!(r.status(), 401);

    // The audit trail has the logins, failures, lock and logout.
    let (s, j) = srv.get_json("/api/audit?action=login&limit=50").await;
    assert_eq!(s, 200, "{j}");
    let rows = j["rows"].as_array().expect("rows");
    assert!(
        rows.iter()
            .any(|r| r["outcome"] == "ok" && r["actor"] == "zhang")
    );
    assert!(
        rows.iter()
            .any(|r| r["outcome"] == "failed" && r["actor"] == "nobody-here")
    );
    assert!(rows.iter().any(|r| {
        r["detail"]["why"]
            .as_str()
            .is_some_and(|w| w.contains("locked"))
    }));
    srv.running.stop().await.expect("stop");
}

/// Tokens as Bearer and as Basic's password, expiry and revocation, the
/// kiosk link becoming a session, and `/api/admin/tokens`.
#[tokio::test]
async fn tokens_basic_and_kiosk() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let r = srv
        .client
        .post(format!("{}/api/admin/tokens", srv.base))
        .json(&json!({"name": "qgis", "role": "department", "expires_days": 30}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let t: J = r.json().await.expect("token");
    let secret = t["token"].as_str().expect("secret").to_string();
    let id = t["id"].as_str().expect("id").to_string();
    // Basic with any user name and the token as password (GDAL, QGIS).
    let basic = reqwest::Client::new()
        .get(format!(
            "{}/ogc/collections/cameras/items?limit=1",
            srv.base
        ))
        .basic_auth("anyone", Some(&secret))
        .send()
        .await
        .expect("basic");
    assert_eq!(basic.status(), 200);
    // The list never shows a secret.
    let (s, list) = srv.get_json("/api/admin/tokens").await;
    assert_eq!(s, 200);
    assert!(!list.to_string().contains(&secret));
    // Revoked: 401 at once.
    let r = srv
        .client
        .delete(format!("{}/api/admin/tokens/{id}", srv.base))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let r = bearer_client(&secret)
        .get(format!("{}/api/layers", srv.base))
        .send()
        .await
        .expect("after revoke");
    assert_eq!(r.status(), 401);

    // Kiosk: the link sets a cookie and opens the screen; the session is a
    // viewer's; revoking the token ends it.
    let r = srv
        .client
        .post(format!("{}/api/admin/tokens", srv.base))
        .json(&json!({"name": "wall", "role": "viewer", "kiosk": true}))
        .send()
        .await
        .expect("kiosk");
    let k: J = r.json().await.expect("kiosk json");
    let ks = k["token"].as_str().expect("kiosk secret").to_string();
    let noredirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = noredirect
        .get(format!("{}/kiosk/{ks}", srv.base))
        .send()
        .await
        .expect("kiosk link");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/#/screen");
    let set = cookie_of(&r).expect("cookie");
    assert!(set.contains("Max-Age="), "{set}");
    let cookie = set.split(';').next().expect("value").to_string();
    let me = reqwest::Client::new()
        .get(format!("{}/api/me", srv.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200);
    assert!(cookie_of(&me).is_some(), "a kiosk's cookie is renewed");
    let j: J = me.json().await.expect("me json");
    assert_eq!(j["role"], "viewer");
    assert_eq!(j["kiosk"], true);
    let r = srv
        .client
        .delete(format!(
            "{}/api/admin/tokens/{}",
            srv.base,
            k["id"].as_str().expect("id")
        ))
        .send()
        .await
        .expect("revoke kiosk");
    assert_eq!(r.status(), 200);
    let me = reqwest::Client::new()
        .get(format!("{}/api/me", srv.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 401);
    // A kiosk link with a machine token is refused.
    let r = noredirect
        .get(format!(
            "{}/kiosk/{}",
            srv.base,
            common::admin_token(&srv.running)
        ))
        .send()
        .await
        .expect("not kiosk");
    assert_eq!(r.status(), 401);
    srv.running.stop().await.expect("stop");
}

/// A second factor required per role: without a code the login asks for
/// one, a wrong code is refused, the right one (RFC 6238) signs in.
#[tokio::test]
async fn totp_second_factor() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    add_user(store.as_ref(), "wang", Role::Planner, "Wang-Pass-2026").await;
    add_user(store.as_ref(), "zhao", Role::Planner, "Zhao-Pass-2026").await;
    let (u, url) = onemap::auth::accounts::change_user(
        store.as_ref(),
        &onemap::auth::Principal::system("test"),
        "test",
        "wang",
        onemap::auth::accounts::UserChange {
            totp: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("enrol");
    assert!(
        url.expect("url")
            .starts_with("otpauth://totp/onemap:wang?secret=")
    );
    let secret = u.totp.expect("secret");
    let mut config = common::config();
    config.auth.require_2fa = vec![Role::Planner];
    let srv = common::serve(store.clone(), config).await;
    let r = login(&srv.base, "wang", "Wang-Pass-2026", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<J>().await.expect("j")["code"], "otp_required");
    let r = login(&srv.base, "wang", "Wang-Pass-2026", Some("000000")).await;
    assert_eq!(r.status(), 401);
    let now = u64::try_from(chrono::Utc::now().timestamp()).expect("time");
    let code = onemap::auth::accounts::totp_code(&secret, now).expect("code");
    let r = login(&srv.base, "wang", "Wang-Pass-2026", Some(&code)).await;
    assert_eq!(r.status(), 200);
    // The same code again: refused (no replay within its window).
    let r = login(&srv.base, "wang", "Wang-Pass-2026", Some(&code)).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<J>().await.expect("j")["code"], "otp_required");
    // A planner without an enrolled factor cannot sign in.
    let r = login(&srv.base, "zhao", "Zhao-Pass-2026", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<J>().await.expect("j")["code"], "otp_not_enrolled");
    srv.running.stop().await.expect("stop");
    // After a restart (a new server on the same store, no memory of the
    // first): the used code is still refused, for it is in the account.
    let mut config = common::config();
    config.auth.require_2fa = vec![Role::Planner];
    let again = common::serve(store.clone(), config).await;
    let r = login(&again.base, "wang", "Wang-Pass-2026", Some(&code)).await;
    assert_eq!(r.status(), 401, "a used code counted again after a restart");
    assert_eq!(r.json::<J>().await.expect("j")["code"], "otp_required");
    again.running.stop().await.expect("stop");
}

/// The change log's author is the principal; an operator token may name
/// the person who acted in its source system beside its own name.
#[tokio::test]
async fn author_is_the_principal() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    let op = token(store.as_ref(), Role::Operator, &[]).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let seq = store.last_seq().await.expect("seq");
    let (_, centre) = common::grid_and_centre(&srv, STREET).await;
    let order = json!({"type": "Feature", "id": "hotline-42",
        "geometry": {"type": "Point", "coordinates": [centre.0, centre.1]},
        "properties": {"title": "路灯不亮", "source": "hotline_12345", "category": "facility",
                       "created_at": "2026-12-01T00:00:00Z"}});
    let r = bearer_client(&op)
        .post(format!("{}/api/events", srv.base))
        .header("x-onemap-user", "%E5%BC%A0%E4%B8%89")
        .json(&order)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let rows = store.changes_since(seq, 100).await.expect("log");
    let ev: Vec<_> = rows.iter().filter(|r| r.layer == "events").collect();
    assert!(!ev.is_empty());
    assert!(
        ev.iter().all(|r| r.author == "token:test-operator[张三]"),
        "{:?}",
        ev[0].author
    );
    // A signed-in person's header is ignored: the author is the account.
    add_user(store.as_ref(), "ops", Role::Admin, "Ops-Pass-2026x").await;
    let r = login(&srv.base, "ops", "Ops-Pass-2026x", None).await;
    assert_eq!(r.status(), 200);
    let cookie = cookie_of(&r).expect("cookie");
    let cookie = cookie.split(';').next().expect("value");
    let r = reqwest::Client::new()
        .patch(format!("{}/api/events/hotline-42", srv.base))
        .header("cookie", cookie)
        .header("x-onemap-user", "someone-else")
        .json(&json!({"status": "dispatched"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let rows = store.changes_since(seq, 100).await.expect("log");
    let last = rows
        .iter()
        .rev()
        .find(|r| r.layer == "events")
        .expect("row");
    assert_eq!(last.author, "ops");
    srv.running.stop().await.expect("stop");
}

/// `onemap audit verify` passes on an untouched store and names the first
/// broken row after one is edited with SQL directly; the CLI's token and
/// user commands follow the contract.
#[tokio::test]
async fn audit_verify_cli_and_tampering() {
    let dir = common::tempdir();
    let (path, store) = common::demo_store(dir.path(), "small", 1).await;
    drop(store);
    let bin = env!("CARGO_BIN_EXE_onemap");
    let run = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut c = std::process::Command::new(bin);
        c.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        if let Some(s) = stdin
            && let Some(mut i) = child.stdin.take()
        {
            i.write_all(s.as_bytes()).expect("stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("run")
    };
    let p = path.to_str().expect("path");
    let out = run(
        &[
            "user",
            "add",
            "chen",
            "--role",
            "planner",
            "--scope",
            STREET,
            "--password-stdin",
            "--store",
            p,
        ],
        Some("Chen-Pass-2026\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &[
            "user",
            "add",
            "weak",
            "--role",
            "viewer",
            "--password-stdin",
            "--store",
            p,
        ],
        Some("short\n"),
    );
    assert!(!out.status.success(), "a weak password is refused");
    let out = run(
        &[
            "token",
            "create",
            "--store",
            p,
            "--role",
            "operator",
            "--name",
            "hotline",
            "--expires-days",
            "90",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let tok = stdout.lines().last().expect("last line").to_string();
    assert!(tok.starts_with("om_") && tok.len() == 67, "{tok:?}");
    for i in 0..4 {
        let name = format!("gdal-{i}");
        let out = run(
            &[
                "token",
                "create",
                "--store",
                p,
                "--role",
                "department",
                "--name",
                &name,
            ],
            None,
        );
        assert!(out.status.success());
    }
    let out = run(&["user", "list", "--store", p], None);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("\"chen\"") && !listed.contains("argon2"),
        "{listed}"
    );
    let out = run(&["audit", "verify", "--store", p], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("intact"), "{text}");
    // The head it prints (SEQ:HASH) is what shows a cut at the end later.
    let head = text
        .split("; head ")
        .nth(1)
        .map(|h| h.trim().to_string())
        .expect("verify prints the head");
    let out = run(&["audit", "verify", "--store", p, "--expect", &head], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (seq, hash) = head.split_once(':').expect("SEQ:HASH");
    let wrong = format!("{seq}:{}", "0".repeat(hash.len()));
    let out = run(&["audit", "verify", "--store", p, "--expect", &wrong], None);
    assert_eq!(out.status.code(), Some(1));
    let out = run(
        &["audit", "verify", "--store", p, "--expect", "nonsense"],
        None,
    );
    assert!(!out.status.success());
    // Cut the newest row: the chain alone still verifies; against the head
    // noted before, the cut is named.
    let cut: i64 = seq.parse().expect("seq");
    assert!(cut >= 6, "{text}");
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{p}"))
            .await
            .expect("sqlite");
        sqlx::query("DELETE FROM onemap_audit WHERE seq >= ?")
            .bind(cut)
            .execute(&pool)
            .await
            .expect("cut");
        pool.close().await;
    }
    let out = run(&["audit", "verify", "--store", p], None);
    assert!(out.status.success());
    let out = run(&["audit", "verify", "--store", p, "--expect", &head], None);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(&format!("broken at row {cut}")) && text.contains("removed from its end"),
        "{text}"
    );
    // A new row in the cut one's place has another hash: named as well.
    let out = run(
        &[
            "token", "create", "--store", p, "--role", "viewer", "--name", "again",
        ],
        None,
    );
    assert!(out.status.success());
    let out = run(&["audit", "verify", "--store", p, "--expect", &head], None);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("now has hash"), "{text}");

    // Edit row 3 behind the server's back.
    let original: String;
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{p}"))
            .await
            .expect("sqlite");
        original = sqlx::query_scalar("SELECT actor FROM onemap_audit WHERE seq = 3")
            .fetch_one(&pool)
            .await
            .expect("row 3");
        sqlx::query("UPDATE onemap_audit SET actor = 'someone' WHERE seq = 3")
            .execute(&pool)
            .await
            .expect("edit");
        pool.close().await;
    }
    let out = run(&["audit", "verify", "--store", p], None);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("broken at row 3"), "{text}");
    // Deleting a row instead is named too.
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{p}"))
            .await
            .expect("sqlite");
        sqlx::query("UPDATE onemap_audit SET actor = ? WHERE seq = 3")
            .bind(&original)
            .execute(&pool)
            .await
            .expect("restore");
        sqlx::query("DELETE FROM onemap_audit WHERE seq = 5")
            .execute(&pool)
            .await
            .expect("delete");
        pool.close().await;
    }
    let out = run(&["audit", "verify", "--store", p], None);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("broken at row 6"), "{text}");
}

/// Accounts, tokens and the audit trail in PostGIS, and `onemap copy`
/// carrying them both ways with the chain intact.
#[tokio::test]
async fn postgis_accounts_and_copy() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    let dir = common::tempdir();
    let (_p, gpkg) = common::demo_store(dir.path(), "small", 1).await;
    add_user(gpkg.as_ref(), "sun", Role::Viewer, "Sun-Pass-2026").await;
    let tok = token(gpkg.as_ref(), Role::Department, &[]).await;
    let pgs = onemap::store::postgis::PostgisStore::open(&pg.url)
        .await
        .expect("open pg");
    onemap::store::copy::copy(gpkg.as_ref(), &pgs, |_| {})
        .await
        .expect("copy");
    let v = onemap::auth::audit::verify(&pgs).await.expect("verify");
    assert_eq!(v.broken, None);
    assert!(v.rows >= 2);
    let pgs: Arc<dyn onemap::store::Store> = Arc::new(pgs);
    let srv = common::serve(pgs.clone(), common::config()).await;
    // The copied token works against the PostGIS server; a login is
    // audited there and the chain still verifies.
    let r = bearer_client(&tok)
        .get(format!("{}/api/layers", srv.base))
        .send()
        .await
        .expect("layers");
    assert_eq!(r.status(), 200);
    assert_eq!(
        login(&srv.base, "sun", "Sun-Pass-2026", None)
            .await
            .status(),
        200
    );
    assert_eq!(login(&srv.base, "sun", "wrong", None).await.status(), 401);
    let v = onemap::auth::audit::verify(pgs.as_ref())
        .await
        .expect("verify");
    assert_eq!(v.broken, None);
    srv.running.stop().await.expect("stop");
    // And back into a new GeoPackage.
    let back = onemap::store::gpkg::GpkgStore::open(&dir.path().join("back.gpkg"))
        .await
        .expect("open");
    onemap::store::copy::copy(pgs.as_ref(), &back, |_| {})
        .await
        .expect("copy back");
    let v2 = onemap::auth::audit::verify(&back).await.expect("verify");
    assert_eq!(v2.broken, None);
    assert_eq!(v2.rows, v.rows);
    assert_eq!(
        back.auth_records().await.expect("records").len(),
        pgs.auth_records().await.expect("records").len()
    );
    pg.stop();
}

/// Security headers on every answer, CORS off by default.
#[tokio::test]
async fn security_headers_and_no_cors() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    let srv = common::serve(store, common::config()).await;
    for p in ["/", "/healthz", "/api/layers", "/no-such-page"] {
        let r = srv
            .client
            .get(format!("{}{p}", srv.base))
            .header("origin", "http://evil.example")
            .send()
            .await
            .expect("get");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().expect("csp");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.get("referrer-policy").is_some());
        assert!(
            h.get("access-control-allow-origin").is_none(),
            "{p}: CORS is on"
        );
    }
    // Healthz and the app are anonymous; the API is not.
    let anon = reqwest::Client::new();
    assert_eq!(
        anon.get(format!("{}/healthz", srv.base))
            .send()
            .await
            .expect("h")
            .status(),
        200
    );
    assert_eq!(
        anon.get(format!("{}/", srv.base))
            .send()
            .await
            .expect("h")
            .status(),
        200
    );
    let r = anon
        .get(format!("{}/api/layers", srv.base))
        .send()
        .await
        .expect("h");
    let p = expect_problem(r, 401).await;
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("sign in")));
    srv.running.stop().await.expect("stop");
}

/// README's permission matrix is the one the router enforces.
#[test]
fn readme_lists_the_permission_matrix() {
    let routes = onemap::api::routes();
    let want = onemap::api::auth::matrix_markdown(routes.declared());
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let start = readme.find("<!-- permissions -->").expect("start marker") + 20;
    let end = readme.find("<!-- /permissions -->").expect("end marker");
    assert_eq!(
        readme[start..end].trim(),
        want.trim(),
        "README.md's permission matrix is out of date; paste this between the markers:\n{want}"
    );
}

/// The layers a scope applies to (roads and water are the map's context).
const SCOPED_LAYERS: [&str; 6] = [
    "grids",
    "addresses",
    "cameras",
    "risks",
    "buildings",
    "events",
];

/// The oracle: ids of each layer's features inside `scope`, from the store
/// itself (the stored `grid` column, or a grid's own `code`), not from the
/// server's catalog.
async fn oracle(
    store: &dyn Store,
    scope: &str,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<i64>> {
    let mut out = std::collections::BTreeMap::new();
    for def in store.layers().await.expect("layers") {
        if !SCOPED_LAYERS.contains(&def.name.as_str()) {
            continue;
        }
        let key = if def.name == "grids" { "code" } else { "grid" };
        let k = def.prop_index(key).expect("grid column");
        let ids = store
            .load_layer(&def.name)
            .await
            .expect("load")
            .into_iter()
            .filter(|f| {
                f.properties[k]
                    .as_str()
                    .is_some_and(|c| c.starts_with(scope))
            })
            .map(|f| f.id)
            .collect();
        out.insert(def.name.clone(), ids);
    }
    out
}

fn ids_of(features: &J) -> Vec<i64> {
    if let Some(inner) = features.get("features") {
        return ids_of(inner);
    }
    features
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["id"].as_i64()).collect())
        .unwrap_or_default()
}

/// For a token scoped to a street and one scoped to a community: every read
/// endpoint over the whole district answers no feature outside the scope
/// (checked against the oracle over the store), and the in-scope counts
/// equal the oracle's, which equal an unscoped admin's restricted to the
/// scope.
async fn scope_sweep(store: Arc<dyn Store>) {
    let grids = store.load_layer("grids").await.expect("grids");
    let gdef = store
        .layers()
        .await
        .expect("defs")
        .into_iter()
        .find(|d| d.name == "grids")
        .expect("grids def");
    let ci = gdef.prop_index("code").expect("code");
    let community = grids
        .iter()
        .filter_map(|f| f.properties[ci].as_str())
        .find(|c| c.len() == 12 && c.starts_with(STREET))
        .expect("a community")
        .to_string();
    let mut scoped = Vec::new();
    for scope in [STREET.to_string(), community] {
        let t = token(store.as_ref(), Role::Department, &[&scope]).await;
        scoped.push((scope.clone(), t));
    }
    let srv = common::serve(store.clone(), common::config()).await;
    let whole = json!({"bbox": [-180.0, -85.0, 180.0, 85.0]});
    for (scope, tok) in &scoped {
        // Read now: the orders an earlier round posted count.
        let want = &oracle(store.as_ref(), scope).await;
        let c = bearer_client(tok);
        // /api/query over the whole district, every layer.
        let r: J = c
            .post(format!("{}/api/query", srv.base))
            .json(&json!({"area": whole, "layers": SCOPED_LAYERS, "limit": 10000}))
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        let admin: J = srv
            .client
            .post(format!("{}/api/query", srv.base))
            .json(&json!({"area": whole, "layers": SCOPED_LAYERS, "limit": 10000}))
            .send()
            .await
            .expect("admin query")
            .json()
            .await
            .expect("json");
        for l in SCOPED_LAYERS {
            let got = ids_of(&r["layers"][l]["features"]);
            let inside = &want[l];
            assert!(
                !inside.is_empty() || l == "grids",
                "{scope}: no {l} in the oracle"
            );
            assert!(
                got.iter().all(|i| inside.contains(i)),
                "{scope}: /api/query {l} outside the scope"
            );
            assert_eq!(got.len(), inside.len(), "{scope}: /api/query {l} features");
            assert_eq!(
                r["layers"][l]["count"],
                json!(inside.len()),
                "{scope}: /api/query {l} count"
            );
            let admin_inside = ids_of(&admin["layers"][l]["features"])
                .into_iter()
                .filter(|i| inside.contains(i))
                .count();
            assert_eq!(
                admin_inside,
                inside.len(),
                "{scope}: admin's {l} restricted"
            );
        }
        // Statistics: a scoped account's areas and totals are its grids'
        // (the admin's with parent = the scope).
        let mine: J = c
            .get(format!("{}/api/stats?level=micro", srv.base))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        let (s, theirs) = srv
            .get_json(&format!("/api/stats?level=micro&parent={scope}"))
            .await;
        assert_eq!(s, 200);
        assert_eq!(mine["total"], theirs["total"], "{scope}: stats totals");
        assert_eq!(mine["areas"], theirs["areas"], "{scope}: stats areas");
        let r = c
            .get(format!(
                "{}/api/stats?level=micro&parent=990101002",
                srv.base
            ))
            .send()
            .await
            .expect("stats");
        assert_eq!(r.status(), 404, "{scope}: stats of another street");
        // Locate: a point in another street is in no grid this account sees.
        let (_, micro) = srv.get_json("/api/grids?level=micro").await;
        let outside = micro["grids"]
            .as_array()
            .expect("grids")
            .iter()
            .filter_map(|g| g["code"].as_str())
            .find(|c| !c.starts_with(STREET))
            .expect("a micro-grid in another street")
            .to_string();
        let (_, other) = common::grid_and_centre(&srv, &outside).await;
        let r: J = c
            .get(format!(
                "{}/api/locate?lon={}&lat={}",
                srv.base, other.0, other.1
            ))
            .send()
            .await
            .expect("locate")
            .json()
            .await
            .expect("json");
        assert!(r["grid"].is_null(), "{scope}: located outside: {r}");
        // Layer counts.
        let ls: J = c
            .get(format!("{}/api/layers", srv.base))
            .send()
            .await
            .expect("layers")
            .json()
            .await
            .expect("json");
        for l in ls.as_array().expect("layers") {
            let name = l["name"].as_str().expect("name");
            if let Some(inside) = want.get(name) {
                assert_eq!(
                    l["count"],
                    json!(inside.len()),
                    "{scope}: /api/layers {name}"
                );
            }
        }
        // Exports.
        let gj: J = c
            .post(format!("{}/api/query.geojson", srv.base))
            .json(&json!({"area": whole, "layers": SCOPED_LAYERS}))
            .send()
            .await
            .expect("export")
            .json()
            .await
            .expect("geojson");
        let feats = gj["features"].as_array().expect("features");
        let total: usize = want.values().map(|s| s.len()).sum();
        assert_eq!(feats.len(), total, "{scope}: GeoJSON export count");
        for f in feats {
            let l = f["properties"]["layer"].as_str().expect("layer");
            assert!(
                want[l].contains(&f["id"].as_i64().expect("id")),
                "{scope}: export {l} outside"
            );
        }
        for l in ["cameras", "addresses"] {
            let csv = c
                .post(format!("{}/api/query.csv", srv.base))
                .json(&json!({"area": whole, "layers": [l]}))
                .send()
                .await
                .expect("csv")
                .text()
                .await
                .expect("text");
            assert_eq!(
                csv.lines().count() - 1,
                want[l].len(),
                "{scope}: CSV {l} rows"
            );
        }
        // OGC API items and numberMatched.
        for l in SCOPED_LAYERS {
            let r: J = c
                .get(format!(
                    "{}/ogc/collections/{l}/items?limit=10000",
                    srv.base
                ))
                .send()
                .await
                .expect("items")
                .json()
                .await
                .expect("json");
            assert_eq!(
                r["numberMatched"],
                json!(want[l].len()),
                "{scope}: OGC {l} numberMatched"
            );
            assert!(
                ids_of(&r["features"]).iter().all(|i| want[l].contains(i)),
                "{scope}: OGC {l}"
            );
        }
        // Nearest from the far corner of the map: in-scope ones only.
        let r: J = c
            .get(format!(
                "{}/api/nearest?layer=cameras&lon=0&lat=0&k=1000",
                srv.base
            ))
            .send()
            .await
            .expect("nearest")
            .json()
            .await
            .expect("json");
        let got = ids_of(&r["features"]);
        assert_eq!(
            got.len(),
            want["cameras"].len().min(1000),
            "{scope}: nearest"
        );
        assert!(
            got.iter().all(|i| want["cameras"].contains(i)),
            "{scope}: nearest outside"
        );
        // Grids: lists, search, cards.
        let r: J = c
            .get(format!("{}/api/grids?level=micro", srv.base))
            .send()
            .await
            .expect("grids")
            .json()
            .await
            .expect("json");
        let codes: Vec<&str> = r["grids"]
            .as_array()
            .expect("grids")
            .iter()
            .filter_map(|g| g["code"].as_str())
            .collect();
        assert!(
            !codes.is_empty() && codes.iter().all(|c| c.starts_with(scope.as_str())),
            "{scope}: grid list"
        );
        let r = c
            .get(format!("{}/api/grids/990101002", srv.base))
            .send()
            .await
            .expect("card");
        assert_eq!(r.status(), 404, "{scope}: another street's card");
        let r = c
            .get(format!("{}/api/grids/{scope}", srv.base))
            .send()
            .await
            .expect("card");
        assert_eq!(r.status(), 200, "{scope}: its own card");
        // Tiles at z16 around features inside and outside: only inside.
        for l in ["cameras", "risks", "addresses", "events"] {
            let feats = store.load_layer(l).await.expect("load");
            for f in feats.iter().step_by((feats.len() / 15).max(1)) {
                let geo::Geometry::Point(p) = f.geometry else {
                    continue;
                };
                let t = onemap::tiles::mercator::tile_of(16, p.x(), p.y());
                let r = c
                    .get(format!(
                        "{}/tiles/all/{}/{}/{}.mvt",
                        srv.base, t.z, t.x, t.y
                    ))
                    .send()
                    .await
                    .expect("tile");
                if r.status() == 204 {
                    continue;
                }
                let bytes = r.bytes().await.expect("bytes");
                for layer in common::mvt_decode::decode(&bytes) {
                    if let Some(inside) = want.get(&layer.name) {
                        for tf in &layer.features {
                            if let Some(id) = tf.id {
                                assert!(
                                    inside.contains(&(id as i64)),
                                    "{scope}: tile {t:?} {} id {id}",
                                    layer.name
                                );
                            }
                        }
                    }
                }
            }
        }
        // The live stream: an order inside and one outside; the scoped
        // subscriber hears only the one inside, and statistics of its areas.
        live_in_scope(&srv, &c, scope).await;
    }
    srv.running.stop().await.expect("stop");
}

/// Posts an order inside `scope` and one outside (as the admin) and reads
/// what the scoped client's stream carries.
async fn live_in_scope(srv: &common::TestServer, c: &reqwest::Client, scope: &str) {
    use futures::StreamExt;
    let (s, micro) = srv.get_json("/api/grids?level=micro").await;
    assert_eq!(s, 200);
    let all: Vec<String> = micro["grids"]
        .as_array()
        .expect("grids")
        .iter()
        .filter_map(|g| g["code"].as_str().map(str::to_string))
        .collect();
    let inside = all
        .iter()
        .find(|c| c.starts_with(scope))
        .expect("a micro-grid inside")
        .clone();
    let outside = all
        .iter()
        .find(|c| !c.starts_with(STREET))
        .expect("a micro-grid outside")
        .clone();
    let r = c
        .get(format!("{}/api/live", srv.base))
        .send()
        .await
        .expect("live");
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut ids = Vec::new();
    for (n, code) in [&inside, &outside].into_iter().enumerate() {
        let (_, centre) = common::grid_and_centre(srv, code).await;
        let id = format!("scope-{scope}-{n}");
        let r = srv
            .client
            .post(format!("{}/api/events", srv.base))
            .json(&json!({"type": "Feature", "id": id,
                "geometry": {"type": "Point", "coordinates": [centre.0, centre.1]},
                "properties": {"title": "t", "source": "grid_report", "category": "other"}}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        ids.push(id);
    }
    let mut text = String::new();
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while let Ok(Some(Ok(b))) = tokio::time::timeout_at(until, stream.next()).await {
        text.push_str(&String::from_utf8_lossy(&b));
    }
    let mut events = Vec::new();
    for frame in text.split("\n\n") {
        let event = frame
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap_or("");
        let data: J = frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(J::Null);
        match event {
            "event" => events.push(data["id"].as_str().unwrap_or("").to_string()),
            "stats" => {
                for code in data["areas"].as_object().expect("areas").keys() {
                    assert!(code.starts_with(scope), "{scope}: stats of {code} streamed");
                }
            }
            _ => {}
        }
    }
    assert!(
        events.contains(&ids[0]),
        "{scope}: the order inside was not streamed: {events:?}"
    );
    assert!(
        !events.contains(&ids[1]),
        "{scope}: the order outside was streamed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scope_sweep_gpkg() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    scope_sweep(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scope_sweep_postgis() {
    let Some(pg) = common::pg::PgCluster::start().await else {
        return;
    };
    common::demo_postgis(&pg.url, "small", 1).await;
    let s = onemap::store::postgis::PostgisStore::open(&pg.url)
        .await
        .expect("open");
    scope_sweep(Arc::new(s)).await;
    pg.stop();
}

/// Expensive routes are rate-limited per principal (429 with Retry-After),
/// others are not; CORS answers only configured origins.
#[tokio::test]
async fn rate_limit_and_configured_cors() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    let mut config = common::config();
    config.rate_per_minute = 3;
    config.cors_origins = vec!["https://partner.example".into()];
    let srv = common::serve(store, config).await;
    let body = json!({"area": {"grid": STREET}, "layers": ["cameras"], "limit": 0});
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = srv
            .client
            .post(format!("{}/api/query", srv.base))
            .json(&body)
            .send()
            .await
            .expect("query");
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // Cheap routes are not counted.
    for _ in 0..5 {
        assert_eq!(srv.get("/api/layers").await.status(), 200);
    }
    let allowed = srv
        .client
        .get(format!("{}/api/layers", srv.base))
        .header("origin", "https://partner.example")
        .send()
        .await
        .expect("cors");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://partner.example"
    );
    let other = srv
        .client
        .get(format!("{}/api/layers", srv.base))
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .expect("cors");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    srv.running.stop().await.expect("stop");
}

/// `--tls-cert`/`--tls-key`: HTTPS (checked with curl, as reqwest is built
/// without TLS here) and session cookies marked Secure.
#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_https_with_secure_cookies() {
    let ok = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
        && std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: openssl or curl not found");
        return;
    }
    let dir = common::tempdir();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    add_user(store.as_ref(), "tls", Role::Viewer, "Tls-Pass-2026").await;
    let mut config = common::config();
    config.tls = Some(onemap::api::serve::Tls::load(&cert, &key).expect("load cert"));
    config.auth.secure_cookies = true;
    let srv = common::serve(store, config).await;
    let url = srv.base.replace("http://", "https://");
    let curl = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("curl")
                .args(["-sk", "-i", "--max-time", "10"])
                .args(&args)
                .output()
                .expect("curl");
            String::from_utf8_lossy(&out.stdout).to_string()
        })
    };
    let h = curl(vec![format!("{url}/healthz")]).await.expect("curl");
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    let l = curl(vec![
        "-H".into(),
        "content-type: application/json".into(),
        "--data".into(),
        r#"{"name":"tls","password":"Tls-Pass-2026"}"#.into(),
        format!("{url}/api/login"),
    ])
    .await
    .expect("curl");
    assert!(l.starts_with("HTTP/1.1 200"), "{l}");
    let cookie = l
        .lines()
        .find(|x| x.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("cookie");
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("{}/healthz", srv.base))
        .send()
        .await;
    assert!(plain.is_err() || !plain.expect("r").status().is_success());
    srv.running.stop().await.expect("stop");
}

/// Personal fields are masked for a viewer and shown to a department
/// user; queries returning personal data and exports are audited (who,
/// layers, rows), and the audit CSV keeps a name that looks like a formula
/// from running in Excel.
#[tokio::test]
async fn masking_and_personal_data_audit() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    let viewer = token(store.as_ref(), Role::Viewer, &[]).await;
    let dept = token(store.as_ref(), Role::Department, &[]).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let card = |t: String| {
        let base = srv.base.clone();
        async move {
            bearer_client(&t)
                .get(format!("{base}/api/grids/{STREET}"))
                .send()
                .await
                .expect("card")
                .json::<J>()
                .await
                .expect("json")
        }
    };
    let (v, d) = (card(viewer).await, card(dept.clone()).await);
    let (vp, dp) = (
        v["phone"].as_str().expect("phone"),
        d["phone"].as_str().expect("phone"),
    );
    assert!(
        vp.contains("****") && !dp.contains('*'),
        "viewer {vp}, department {dp}"
    );
    assert_eq!(vp.chars().count(), dp.chars().count());
    assert!(v["staff"].as_str().expect("staff").ends_with('*'));

    let c = bearer_client(&dept);
    let r = c
        .post(format!("{}/api/query", srv.base))
        .json(&json!({"area": {"grid": STREET}, "layers": ["addresses"], "limit": 7}))
        .send()
        .await
        .expect("query");
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{}/api/query.csv", srv.base))
        .json(&json!({"area": {"grid": STREET}, "layers": ["addresses"]}))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 200);
    let _ = r.text().await;
    assert_eq!(
        login(&srv.base, "=HYPERLINK(\"x\")", "wrong-password", None)
            .await
            .status(),
        401
    );
    // The audit writer batches: wait for the rows.
    let found = common::within(10, async || {
        let (_, j) = srv.get_json("/api/audit?limit=100").await;
        let rows = j["rows"].as_array().cloned().unwrap_or_default();
        let q = rows.iter().any(|r| {
            r["action"] == "query"
                && r["actor"] == "token:test-department"
                && r["detail"]["rows"] == 7
        });
        let e = rows
            .iter()
            .any(|r| r["action"] == "export" && r["detail"]["rows"].as_u64() > Some(7));
        q && e
    })
    .await;
    assert!(found, "query and export not audited");
    let csv = srv
        .get("/api/audit.csv?action=login")
        .await
        .text()
        .await
        .expect("csv");
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    assert!(!csv.contains(",=HYPERLINK"), "{csv}");
    srv.running.stop().await.expect("stop");
}

/// 三权分立: a security administrator cannot make an auditor or admin, nor
/// take over their accounts; a scope must name grids that exist. Guessed
/// tokens are throttled.
#[tokio::test]
async fn separation_of_duties_and_token_guessing() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    add_user(store.as_ref(), "shen", Role::Auditor, "Shen-Pass-2026").await;
    let sec = token(store.as_ref(), Role::Security, &[]).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let c = bearer_client(&sec);
    let post = |path: &'static str, body: J| {
        let (c, base) = (c.clone(), srv.base.clone());
        async move {
            c.post(format!("{base}{path}"))
                .json(&body)
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post("/api/admin/tokens", json!({"name": "a", "role": "auditor"})).await,
        403
    );
    assert_eq!(
        post("/api/admin/tokens", json!({"name": "b", "role": "admin"})).await,
        403
    );
    assert_eq!(
        post(
            "/api/admin/users",
            json!({"name": "c", "role": "auditor", "password": "Some-Pass-2026"})
        )
        .await,
        403
    );
    assert_eq!(
        post(
            "/api/admin/tokens",
            json!({"name": "d", "role": "viewer", "scope": ["990199999"]})
        )
        .await,
        400
    );
    assert_eq!(
        post(
            "/api/admin/tokens",
            json!({"name": "e", "role": "operator"})
        )
        .await,
        201
    );
    let r = c
        .patch(format!("{}/api/admin/users/shen", srv.base))
        .json(&json!({"password": "Taken-Over-2026"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 403);
    assert_eq!(
        login(&srv.base, "shen", "Shen-Pass-2026", None)
            .await
            .status(),
        200
    );
    // Guessing tokens: after 10 wrong ones a minute, 429.
    let mut last = 0;
    for i in 0..12 {
        last = bearer_client(&format!("om_guess{i}"))
            .get(format!("{}/api/layers", srv.base))
            .send()
            .await
            .expect("guess")
            .status()
            .as_u16();
    }
    assert_eq!(last, 429);
    srv.running.stop().await.expect("stop");
}

/// A scoped operator's orders outside its grids are refused and nothing is
/// written; a scoped planner does not see another scope's plan.
#[tokio::test]
async fn scoped_operator_and_planner() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    let op = token(store.as_ref(), Role::Operator, &[STREET]).await;
    let planner = token(store.as_ref(), Role::Planner, &[STREET]).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let (_, micro) = srv.get_json("/api/grids?level=micro").await;
    let codes: Vec<String> = micro["grids"]
        .as_array()
        .expect("grids")
        .iter()
        .filter_map(|g| g["code"].as_str().map(str::to_string))
        .collect();
    let inside = codes
        .iter()
        .find(|c| c.starts_with(STREET))
        .expect("inside")
        .clone();
    let outside = codes
        .iter()
        .find(|c| !c.starts_with(STREET))
        .expect("outside")
        .clone();
    let order = |id: &str, at: (f64, f64)| {
        json!({"type": "Feature", "id": id,
            "geometry": {"type": "Point", "coordinates": [at.0, at.1]},
            "properties": {"title": "t", "source": "grid_report", "category": "other"}})
    };
    let (_, at_in) = common::grid_and_centre(&srv, &inside).await;
    let (_, at_out) = common::grid_and_centre(&srv, &outside).await;
    let seq = store.last_seq().await.expect("seq");
    let c = bearer_client(&op);
    let r = c
        .post(format!("{}/api/events", srv.base))
        .json(&json!({"type": "FeatureCollection",
            "features": [order("op-in", at_in), order("op-out", at_out)]}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(
        store.last_seq().await.expect("seq"),
        seq,
        "a refused batch wrote"
    );
    let r = c
        .post(format!("{}/api/events", srv.base))
        .json(&order("op-in", at_in))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    // An order outside, made by the admin, cannot be moved on by it.
    let r = srv
        .client
        .post(format!("{}/api/events", srv.base))
        .json(&order("admin-out", at_out))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let patch = |id: &str| {
        c.patch(format!("{}/api/events/{id}", srv.base))
            .json(&json!({"status": "dispatched"}))
            .send()
    };
    assert_eq!(patch("admin-out").await.expect("patch").status(), 404);
    assert_eq!(patch("op-in").await.expect("patch").status(), 200);

    // Plans: the admin's plan over another street is not the planner's.
    let r = srv
        .client
        .post(format!("{}/api/plans", srv.base))
        .json(&json!({"title": "other", "scope": [outside.clone()]}))
        .send()
        .await
        .expect("plan");
    assert_eq!(r.status(), 201);
    let id = r.json::<J>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    let p = bearer_client(&planner);
    let r = p
        .get(format!("{}/api/plans/{id}", srv.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let r = p
        .post(format!("{}/api/plans/{id}/publish", srv.base))
        .json(&json!({"reason": "x"}))
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 404);
    let list: J = p
        .get(format!("{}/api/plans", srv.base))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(
        list.as_array()
            .expect("plans")
            .iter()
            .all(|x| x["id"] != id)
    );
    let r = p
        .post(format!("{}/api/plans", srv.base))
        .json(&json!({"title": "mine?", "scope": [outside]}))
        .send()
        .await
        .expect("plan");
    assert_eq!(r.status(), 403);
    // Nor through the OGC API: the plan's collection, items and an item
    // are as if absent, and the collections list does not name it.
    let cid = format!("plan-{id}-grids");
    let (st, admin_items) = srv.get_json(&format!("/ogc/collections/{cid}/items")).await;
    assert_eq!(st, 200);
    let some = admin_items["features"][0]["id"]
        .as_str()
        .expect("a draft grid")
        .to_string();
    for path in [
        format!("/ogc/collections/{cid}"),
        format!("/ogc/collections/{cid}/items"),
        format!("/ogc/collections/{cid}/items/{some}"),
    ] {
        let r = p
            .get(format!("{}{path}", srv.base))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 404, "{path}");
    }
    let listed = |j: &J| {
        j["collections"]
            .as_array()
            .expect("collections")
            .iter()
            .any(|c| c["id"] == cid.as_str())
    };
    let (_, all) = srv.get_json("/ogc/collections").await;
    assert!(listed(&all), "the admin sees the plan's collection");
    let mine: J = p
        .get(format!("{}/ogc/collections", srv.base))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(!listed(&mine), "a scoped planner sees another scope's plan");
    srv.running.stop().await.expect("stop");
}

/// Collection metadata is scoped as the items are: a scoped token's
/// `/ogc/collections/{id}` and `/api/layers` give the count and the extent
/// of the features inside its scope, not the district's.
#[tokio::test]
async fn scoped_metadata() {
    let dir = common::tempdir();
    let (_p, store) = common::demo_store(dir.path(), "small", 1).await;
    let viewer = token(store.as_ref(), Role::Department, &[STREET]).await;
    let srv = common::serve(store.clone(), common::config()).await;
    let c = bearer_client(&viewer);
    let get = |path: String| {
        let c = c.clone();
        async move {
            c.get(path)
                .send()
                .await
                .expect("get")
                .json::<J>()
                .await
                .expect("json")
        }
    };
    let (_, street) = srv.get_json(&format!("/api/grids/{STREET}")).await;
    let sb: Vec<f64> = street["bbox"]
        .as_array()
        .expect("bbox")
        .iter()
        .filter_map(J::as_f64)
        .collect();
    let within = |b: &[f64]| {
        b.len() == 4
            && b[0] >= sb[0] - 1e-9
            && b[1] >= sb[1] - 1e-9
            && b[2] <= sb[2] + 1e-9
            && b[3] <= sb[3] + 1e-9
    };
    let mine = get(format!("{}/api/layers", srv.base)).await;
    let (_, all) = srv.get_json("/api/layers").await;
    for layer in ["addresses", "cameras", "grids"] {
        let of = |j: &J| {
            j.as_array()
                .and_then(|a| a.iter().find(|l| l["name"] == layer).cloned())
                .expect("layer")
        };
        let (m, a) = (of(&mine), of(&all));
        let n = m["count"].as_u64().expect("count");
        assert!(n > 0 && n < a["count"].as_u64().expect("count"), "{layer}");
        let b: Vec<f64> = m["bbox"]
            .as_array()
            .expect("bbox")
            .iter()
            .filter_map(J::as_f64)
            .collect();
        assert!(within(&b), "{layer}: {b:?} is not inside the street {sb:?}");
        // OGC: the same count in the description, the same extent.
        let col = get(format!("{}/ogc/collections/{layer}", srv.base)).await;
        let ob: Vec<f64> = col["extent"]["spatial"]["bbox"][0]
            .as_array()
            .expect("extent")
            .iter()
            .filter_map(J::as_f64)
            .collect();
        assert_eq!(ob, b, "{layer}");
        assert!(
            col["description"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("({n} features"))),
            "{layer}: {}",
            col["description"]
        );
        let listed = get(format!("{}/ogc/collections", srv.base)).await;
        let entry = listed["collections"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == layer).cloned())
            .expect("listed");
        assert_eq!(entry["extent"], col["extent"], "{layer}");
    }
    srv.running.stop().await.expect("stop");
}
