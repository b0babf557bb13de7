//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! Every error the server answers with goes through [`ApiError`], including
//! the framework's own rejections (bad JSON, body too large, wrong method,
//! unknown path): [`problem_for_bare_errors`] turns any error response that
//! has no body of ours into a problem document, so a client never has to
//! parse an HTML page or an empty body.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error with an HTTP status and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    /// Extension members of the problem document (a refused publish's
    /// `violations` and `conflicts`).
    pub extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Seconds for a `Retry-After` header (a busy or stopped request).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            title: status.canonical_reason().unwrap_or("Error"),
            detail: detail.into(),
            extra: None,
            retry_after: None,
        }
    }
    /// The same error with extension members (an object's fields).
    pub fn with_extra(mut self, extra: serde_json::Value) -> ApiError {
        if let serde_json::Value::Object(m) = extra {
            self.extra = Some(Box::new(m));
        }
        self
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
    /// The same error with a `Retry-After` header.
    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<crate::work::WorkError> for ApiError {
    /// A full queue or a spent budget is a 503 with `Retry-After` (the
    /// request may well succeed later or narrower); a failed job is a bug.
    fn from(e: crate::work::WorkError) -> Self {
        use crate::work::WorkError as W;
        match &e {
            W::Busy { .. } => ApiError::unavailable(e.to_string()).retry_after(2),
            W::OverBudget { .. } => ApiError::unavailable(e.to_string()).retry_after(10),
            W::Failed(_) => ApiError::internal(e.to_string()),
        }
    }
}

/// The problem document for a status and detail.
pub fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    problem_with(status, title, detail, None)
}

/// The problem document with extension members.
pub(crate) fn problem_with(
    status: StatusCode,
    title: &str,
    detail: &str,
    extra: Option<serde_json::Map<String, serde_json::Value>>,
) -> Response {
    let mut body = json!({
        "type": format!("https://onemap.invalid/problems/{}", status.as_u16()),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let (Some(b), Some(x)) = (body.as_object_mut(), extra) {
        for (k, v) in x {
            b.entry(k).or_insert(v);
        }
    }
    let mut res = (status, Json(body)).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.detail);
        }
        let mut res = problem_with(
            self.status,
            self.title,
            &self.detail,
            self.extra.map(|b| *b),
        );
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

impl From<JsonRejection> for ApiError {
    /// Malformed and mistyped JSON are both a 400 (axum says 422 for the
    /// latter); a body over the limit stays 413, a wrong content type 415.
    fn from(r: JsonRejection) -> Self {
        let status = match r.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError::new(status, r.body_text())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as E;
        let status = match &e {
            E::UnknownLayer(_) | E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::Conflict { .. } | E::LayerExists(_) => StatusCode::CONFLICT,
            E::Invalid { .. } => StatusCode::BAD_REQUEST,
            // Only a store that may answer again is worth a retry (503);
            // a fault that stays (a missing SQL function, a broken table)
            // is the server's error, said as such.
            E::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            E::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Middleware: replaces a bodiless error response (axum's 405, a 404 from
/// the static files, a 413 from the body limit) with a problem document.
pub async fn problem_for_bare_errors(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if is_problem {
        return res;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "no such resource".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this resource".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large".to_string(),
        s => s.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut out = problem(
        status,
        status.canonical_reason().unwrap_or("Error"),
        &detail,
    );
    // Keep headers such as Allow on a 405.
    for (k, v) in res.headers() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}
