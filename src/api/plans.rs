//! HTTP for grid edit plans, history and revert (docs/plans-api.md).

use super::App;
use super::auth::Who;
use super::error::ApiError;
use crate::plan::publish::{self, RevertBody};
use crate::plan::{Book, NewPlan, OpBody, PlanError, check};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as J, json};
use std::sync::Arc;

type S = State<Arc<App>>;

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> ApiError {
        match e {
            PlanError::BadRequest(m) => ApiError::bad_request(m),
            PlanError::NotFound(m) => ApiError::not_found(m),
            PlanError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            // A refused publish carries its reasons.
            PlanError::Refused(m, extra) => {
                ApiError::new(StatusCode::CONFLICT, m).with_extra(extra)
            }
            PlanError::Store(m) => ApiError::unavailable(m),
            PlanError::Work(w) => ApiError::from(w),
        }
    }
}

type R = Result<Response, ApiError>;

fn plan_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found(format!("no plan {s:?}")))
}

pub async fn book(st: &App) -> Result<tokio::sync::MutexGuard<'_, Book>, ApiError> {
    Ok(st.plans.book(st.store.as_ref()).await?)
}

/// A plan is a scoped planner's when its scope lies inside the planner's;
/// another's is answered as if it did not exist.
fn mine(who: &crate::auth::Principal, b: &Book, id: i64) -> Result<(), ApiError> {
    if b.get(id)?.scope.iter().all(|c| who.covers(c)) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no plan {id}")))
    }
}

/// `GET /api/plans`.
pub async fn list(State(st): S, Who(who): Who) -> R {
    let b = book(&st).await?;
    let v: Vec<J> = b
        .plans
        .values()
        .rev()
        .filter(|p| p.scope.iter().all(|c| who.covers(c)))
        .map(|p| p.summary())
        .collect();
    Ok(Json(J::Array(v)).into_response())
}

/// `POST /api/plans`.
pub async fn create(State(st): S, Who(who): Who, body: Result<Json<NewPlan>, JsonRejection>) -> R {
    let Json(mut body) = body?;
    // A plan's scope lies inside the planner's.
    for code in &body.scope {
        if !who.covers(code) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "grid {code} lies outside your scope ({})",
                    who.scope.join(", ")
                ),
            ));
        }
    }
    body.author = who.who.clone();
    let mut b = book(&st).await?;
    let cat = st.catalog();
    let id = b.create(st.store.as_ref(), &cat, body).await?;
    Ok((StatusCode::CREATED, Json(b.get(id)?.to_json(&cat))).into_response())
}

/// `GET /api/plans/{id}`.
pub async fn get(State(st): S, Who(who): Who, Path(id): Path<String>) -> R {
    let id = plan_id(&id)?;
    let b = book(&st).await?;
    mine(&who, &b, id)?;
    Ok(Json(b.get(id)?.to_json(&st.catalog())).into_response())
}

/// `DELETE /api/plans/{id}`: discards a draft.
pub async fn discard(State(st): S, Who(who): Who, Path(id): Path<String>) -> R {
    let id = plan_id(&id)?;
    let mut b = book(&st).await?;
    mine(&who, &b, id)?;
    let p = b.get(id)?;
    if !p.is_draft() {
        return Err(PlanError::Conflict(format!("plan {id} is {}", p.status)).into());
    }
    b.update_row(st.store.as_ref(), id, &who.who, "discarded", |p| {
        p.status = "discarded".into()
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanPatch {
    title: Option<String>,
}

/// `PATCH /api/plans/{id}`: renames a draft.
pub async fn rename(
    State(st): S,
    Who(who): Who,
    Path(id): Path<String>,
    body: Result<Json<PlanPatch>, JsonRejection>,
) -> R {
    let id = plan_id(&id)?;
    let Json(body) = body?;
    let title = body.title.map(|t| t.trim().to_string()).unwrap_or_default();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::bad_request("title: 1 to 200 characters"));
    }
    let mut b = book(&st).await?;
    mine(&who, &b, id)?;
    let p = b.get(id)?;
    if !p.is_draft() {
        return Err(PlanError::Conflict(format!("plan {id} is {}", p.status)).into());
    }
    b.update_row(st.store.as_ref(), id, &who.who, "renamed", |p| {
        p.title = title
    })
    .await?;
    Ok(Json(b.get(id)?.to_json(&st.catalog())).into_response())
}

/// `POST /api/plans/{id}/ops`.
pub async fn ops(
    State(st): S,
    Who(who): Who,
    Path(id): Path<String>,
    body: Result<Json<OpBody>, JsonRejection>,
) -> R {
    let id = plan_id(&id)?;
    let Json(op) = body?;
    let mut b = book(&st).await?;
    mine(&who, &b, id)?;
    let cat = st.catalog();
    let author = who.who.clone();
    let (rec, outcome, changed) = b.operate(st.store.as_ref(), &cat, id, op, &author).await?;
    Ok(Json(json!({
        "n": rec.n,
        "kind": rec.kind,
        "summary": rec.summary,
        "changed": changed,
        "created": outcome.created,
        "deleted": outcome.deleted,
        "plan": b.get(id)?.to_json(&cat),
    }))
    .into_response())
}

/// `GET /api/plans/{id}/validate`.
pub async fn validate(State(st): S, Who(who): Who, Path(id): Path<String>) -> R {
    let id = plan_id(&id)?;
    let changes = {
        let b = book(&st).await?;
        mine(&who, &b, id)?;
        b.get(id)?.changes()
    };
    let cat = st.catalog();
    let j = st
        .work
        .run(crate::work::Lane::Heavy, move || {
            let t = std::time::Instant::now();
            let world = check::World::new(&cat, &changes)?;
            let report = check::validate(&world);
            Some(publish::validation_json(
                &world,
                &report,
                t.elapsed().as_secs_f64() * 1000.0,
            ))
        })
        .await?
        .ok_or_else(|| ApiError::bad_request("this store has no grids layer"))?;
    Ok(Json(j).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// Ignored: the author is the signed-in principal.
    #[serde(default)]
    author: String,
    reason: String,
}

/// `POST /api/plans/{id}/publish`.
pub async fn publish_plan(
    State(st): S,
    Who(who): Who,
    Path(id): Path<String>,
    body: Result<Json<PublishBody>, JsonRejection>,
) -> R {
    let id = plan_id(&id)?;
    let Json(body) = body?;
    let _ = body.author;
    let mut b = book(&st).await?;
    mine(&who, &b, id)?;
    let j = b.publish(&st, id, &who.who, &body.reason).await?;
    Ok(Json(j).into_response())
}

/// `GET /api/grids/{code}/history`.
pub async fn history(State(st): S, Who(who): Who, Path(code): Path<String>) -> R {
    super::handlers::check_scope(&who, &code)?;
    Ok(Json(publish::history_json(&st, &code).await?).into_response())
}

/// `POST /api/grids/{code}/revert`.
pub async fn revert(
    State(st): S,
    Who(who): Who,
    Path(code): Path<String>,
    body: Result<Json<RevertBody>, JsonRejection>,
) -> R {
    super::handlers::check_scope(&who, &code)?;
    let Json(mut body) = body?;
    body.author = who.who.clone();
    // Plans and reverts are ordered by the book's lock.
    let _b = book(&st).await?;
    Ok(Json(publish::revert(&st, &code, &body).await?).into_response())
}
