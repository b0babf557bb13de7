//! Publishing a proposal of grids (a plan, or a revert) and reading a
//! grid's history.
//!
//! Publishing holds the server's write lock (shared with the live writer)
//! from the conflict check to the catalog swap: it checks that the grids
//! it replaces are still the versions the proposal started from,
//! validates, writes one change set (grids, their re-counted households,
//! the re-derived `grid` of every point feature that changes grid), builds
//! the next catalog, drops the tiles over the changed area and tells live
//! clients (`changed` for each layer, `stats`).

use super::check::{self, Changes, World};
use super::{Grid, PlanError, Result, bad};
use crate::app::App;
use crate::index::{Patch, rect_union};
use crate::model::{Feature, GridCode, Value, builtin};
use crate::store::{Change, ChangeSet, Op};
use geo::{BoundingRect, Geometry, Rect};
use serde_json::{Value as J, json};
use std::collections::{BTreeMap, BTreeSet};

/// Validation as `GET /api/plans/{id}/validate` answers it.
pub fn validation_json(world: &World, report: &check::Report, elapsed_ms: f64) -> J {
    json!({
        "ok": report.ok(),
        "changed": report.changed,
        "violations": report.violations.iter().map(|v| v.to_json()).collect::<Vec<_>>(),
        "impact": report.impact_json(world),
        "elapsed_ms": (elapsed_ms * 10.0).round() / 10.0,
    })
}

/// Publishes `changes`. `expect`: the published (fid, version) each
/// replaced code had when the proposal was made; a code published since
/// (or changed) is a conflict.
pub async fn publish(
    st: &App,
    changes: &Changes,
    expect: &BTreeMap<String, (i64, i64)>,
    author: &str,
    reason: &str,
) -> Result<J> {
    let _w = st.write_lock.lock().await;
    let cat = st.catalog();
    let Some(gl) = cat.layer(builtin::GRIDS) else {
        return bad("this store has no grids layer");
    };
    let def = gl.def.clone();
    let mut conflicts = Vec::new();
    for code in changes.keys() {
        let now = cat
            .grids
            .get(code)
            .map(|(_, n)| &gl.features[n.feature as usize])
            .map(|f| (f.id, f.version));
        match (expect.get(code), now) {
            (Some(e), Some(n)) if *e == n => {}
            (None, None) => {}
            (Some(_), Some(n)) => conflicts.push(json!({"code": code, "detail": format!("grid {code} was changed (now version {}) since this was proposed", n.1)})),
            (Some(_), None) => conflicts.push(json!({"code": code, "detail": format!("grid {code} was deleted since this was proposed")})),
            (None, Some(_)) => conflicts.push(json!({"code": code, "detail": format!("grid {code} was published by someone else since this was proposed")})),
        }
    }
    if !conflicts.is_empty() {
        return Err(PlanError::Refused(
            format!(
                "{} grids changed since this was proposed; make a new plan from the current grids",
                conflicts.len()
            ),
            json!({"conflicts": conflicts}),
        ));
    }
    let cat2 = cat.clone();
    let changes2 = changes.clone();
    let report = st
        .work
        .run(crate::work::Lane::Heavy, move || {
            World::new(&cat2, &changes2).map(|w| check::validate(&w))
        })
        .await?
        .ok_or_else(|| PlanError::BadRequest("this store has no grids layer".into()))?;
    if !report.ok() {
        return Err(PlanError::Refused(
            format!(
                "{} violations: validate the plan and fix them first",
                report.violations.len()
            ),
            json!({"violations": report.violations.iter().map(|v| v.to_json()).collect::<Vec<_>>()}),
        ));
    }
    if report.changed.is_empty() {
        return bad("nothing to publish: the grids are as published");
    }
    let mut cs = ChangeSet::new(author, reason);
    let mut inserted = Vec::new();
    let mut updated = Vec::new();
    let mut deleted = Vec::new();
    let mut dirty: Vec<Rect> = Vec::new();
    for code in &report.changed {
        let published = cat
            .grids
            .get(code)
            .map(|(_, n)| &gl.features[n.feature as usize]);
        if let Some(f) = published
            && let Some(r) = f.geometry.bounding_rect()
        {
            dirty.push(r);
        }
        match (changes.get(code), published) {
            (Some(None), Some(f)) => {
                cs.ops.push(Op::Delete {
                    layer: builtin::GRIDS.into(),
                    id: f.id,
                    expected_version: f.version,
                });
                deleted.push(code.clone());
            }
            (Some(Some(g)), published) => {
                let mut g = g.clone();
                GridCode::parse(code).map_err(PlanError::BadRequest)?;
                g.set(&def, "code", Value::text(code));
                if let Some(l) = GridCode::parse(code).ok().map(|c| c.level()) {
                    g.set(&def, "level", Value::text(l.name()));
                }
                if let Some((_, after)) = report.counts.get(code) {
                    g.set(&def, "households", Value::Int(after.households));
                }
                if let Some(r) = g.geometry.bounding_rect() {
                    dirty.push(r);
                }
                let geometry = Geometry::MultiPolygon(g.geometry.clone());
                match published {
                    Some(f) => {
                        cs.ops.push(Op::Update {
                            layer: builtin::GRIDS.into(),
                            id: f.id,
                            expected_version: f.version,
                            geometry,
                            properties: g.props,
                        });
                        updated.push(code.clone());
                    }
                    None => {
                        cs.ops.push(Op::Insert {
                            layer: builtin::GRIDS.into(),
                            id: None,
                            geometry,
                            properties: g.props,
                        });
                        inserted.push(code.clone());
                    }
                }
            }
            _ => {}
        }
    }
    // Point features follow their new grid.
    let mut moved: BTreeMap<&str, usize> = BTreeMap::new();
    let mut layer_boxes: BTreeMap<&str, Rect> = BTreeMap::new();
    for m in &report.moved {
        let Some(l) = cat.layer(m.layer) else {
            continue;
        };
        let Some(f) = l.get(m.fid) else { continue };
        let Some(k) = l.def.prop_index("grid") else {
            continue;
        };
        let mut props = f.properties.clone();
        props[k] = m.to.as_deref().map(Value::text).unwrap_or(Value::Null);
        cs.ops.push(Op::Update {
            layer: m.layer.into(),
            id: f.id,
            expected_version: f.version,
            geometry: f.geometry.clone(),
            properties: props,
        });
        *moved.entry(m.layer).or_default() += 1;
        if let Some(r) = f.geometry.bounding_rect() {
            layer_boxes
                .entry(m.layer)
                .and_modify(|b| *b = rect_union(*b, r))
                .or_insert(r);
            dirty.push(r);
        }
    }
    // 全程留痕: the audit row goes in the same transaction as the change.
    cs.audit.push(crate::auth::audit::entry(
        author,
        "",
        if reason.starts_with("[revert ") {
            "revert"
        } else {
            "publish"
        },
        "ok",
        "",
        &changes.keys().cloned().collect::<Vec<_>>().join(","),
        json!({ "reason": reason, "grids": changes.len() }),
    ));
    let applied = st.store.apply(&cs).await?;
    // The next catalog.
    let mut patches = Vec::with_capacity(cs.ops.len());
    for (k, op) in cs.ops.iter().enumerate() {
        let id = applied.ids[k];
        match op {
            Op::Insert {
                layer,
                geometry,
                properties,
                ..
            }
            | Op::Update {
                layer,
                geometry,
                properties,
                ..
            } => {
                patches.push(Patch {
                    layer: layer.clone(),
                    id,
                    after: Some(Feature {
                        id,
                        version: applied.versions[k],
                        geometry: geometry.clone(),
                        properties: properties.clone(),
                    }),
                });
            }
            Op::Delete { layer, id, .. } => patches.push(Patch {
                layer: layer.clone(),
                id: *id,
                after: None,
            }),
        }
    }
    let seq = applied.last_seq;
    // Over a contiguous log only (see the live writer).
    let through = if applied.first_seq == cat.seq + 1 {
        seq
    } else {
        cat.seq
    };
    let cat3 = cat.clone();
    let next = tokio::task::spawn_blocking(move || cat3.apply(&patches, through))
        .await
        .map_err(|e| PlanError::Store(e.to_string()))?;
    st.set_catalog(next);
    st.tiles.invalidate_rects(dirty.clone());
    let grid_box = report.area;
    if let Some(b) = grid_box {
        st.live
            .publish(crate::live::changed_message(builtin::GRIDS, b, seq));
    }
    for (layer, b) in layer_boxes {
        st.live.publish(crate::live::changed_message(layer, b, seq));
    }
    let now = st.catalog();
    let nodes: BTreeSet<u32> = report
        .changed
        .iter()
        .filter_map(|c| now.grids.get(c).map(|(n, _)| n))
        .collect();
    if !nodes.is_empty() {
        st.live.publish(crate::live::stats_message(&now, &nodes));
    }
    Ok(json!({
        "seq": seq,
        "grids": {"inserted": inserted, "updated": updated, "deleted": deleted},
        "moved": moved,
        "bbox": grid_box.map(|b| [b.min().x, b.min().y, b.max().x, b.max().y]),
    }))
}

/// One version of a grid, as history lists it.
#[derive(Clone, Debug)]
pub struct Version {
    pub version: usize,
    pub op: String,
    pub seq: i64,
    pub txn: i64,
    pub time: Option<String>,
    pub author: Option<String>,
    pub reason: Option<String>,
    pub plan: Option<i64>,
    /// Made by a revert.
    pub revert: bool,
    /// The state after this version (None: deleted).
    pub state: Option<J>,
}

fn plan_of(reason: &str) -> Option<i64> {
    reason
        .strip_prefix("[plan ")
        .and_then(|r| r.split(']').next())
        .and_then(|n| n.trim().parse().ok())
}

/// The reason as the person gave it: without the `[plan N] ` or
/// `[revert CODE to vN] ` tag the server puts in front in the change log.
fn plain_reason(reason: &str) -> &str {
    match reason.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((tag, rest)) if tag.starts_with("plan ") || tag.starts_with("revert ") => rest,
        _ => reason,
    }
}

/// Every version of the grid with this code, oldest first: the state it
/// was imported with (when the log has only a bulk row for it), then one
/// per change-log row.
pub async fn versions(st: &App, code: &str) -> Result<Vec<Version>> {
    GridCode::parse(code).map_err(PlanError::BadRequest)?;
    let rows = st.store.history_where(builtin::GRIDS, "code", code).await?;
    let cat = st.catalog();
    let mut out = Vec::new();
    let import = |state: Option<J>| Version {
        version: 1,
        op: "import".into(),
        seq: 0,
        txn: 0,
        time: None,
        author: None,
        reason: None,
        plan: None,
        revert: false,
        state,
    };
    match rows.first() {
        None => {
            let gl = cat.layer(builtin::GRIDS);
            let Some((gl, (_, n))) = gl.zip(cat.grids.get(code)) else {
                return Err(PlanError::NotFound(format!("no grid {code}, now or ever")));
            };
            out.push(import(Some(
                gl.features[n.feature as usize].to_geojson(&gl.def),
            )));
        }
        Some(first) if first.op != "insert" => out.push(import(first.before.clone())),
        _ => {}
    }
    for c in &rows {
        out.push(version_of(c, out.len() + 1));
    }
    Ok(out)
}

fn version_of(c: &Change, version: usize) -> Version {
    Version {
        version,
        op: c.op.clone(),
        seq: c.seq,
        txn: c.txn,
        time: Some(c.time.clone()),
        author: Some(c.author.clone()),
        reason: Some(plain_reason(&c.reason).to_string()),
        plan: plan_of(&c.reason),
        revert: c.reason.starts_with("[revert "),
        state: if c.op == "delete" {
            None
        } else {
            c.after.clone()
        },
    }
}

/// `GET /api/grids/{code}/history`.
pub async fn history_json(st: &App, code: &str) -> Result<J> {
    let vs = versions(st, code).await?;
    let list: Vec<J> = vs
        .iter()
        .map(|v| {
            json!({
                "version": v.version,
                "op": v.op,
                "seq": v.seq,
                "time": v.time,
                "author": v.author,
                "reason": v.reason,
                "plan": v.plan,
                "revert": v.revert,
                "geometry": v.state.as_ref().and_then(|s| s.get("geometry")).cloned(),
                "properties": v.state.as_ref().and_then(|s| s.get("properties")).cloned(),
            })
        })
        .collect();
    Ok(json!({"code": code, "versions": list}))
}

/// A grid from a change-log GeoJSON state.
fn grid_from(state: &J, def: &crate::model::LayerDef) -> Option<Grid> {
    Feature::from_geojson(state, 0, 0, def).map(|f| Grid::from_feature(&f))
}

/// The body of `POST /api/grids/{code}/revert`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevertBody {
    pub version: usize,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub reason: String,
    /// Only say what the revert would do: the grids it would put back, the
    /// change sets it would undo, its violations and its impact; nothing
    /// is written.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /api/grids/{code}/revert`: the grid, and every grid changed
/// together with it since that version (and, in turn, with those), go
/// back to their state at that version; validated and published.
pub async fn revert(st: &App, code: &str, body: &RevertBody) -> Result<J> {
    // A dry run is asked before anyone signs: author and reason come with
    // the real one.
    if !body.dry_run {
        super::check_person(&body.author, "author")?;
        if body.reason.trim().is_empty() {
            return bad("reason is required");
        }
    }
    let vs = versions(st, code).await?;
    let Some(target) = vs.get(body.version.wrapping_sub(1)) else {
        return bad(format!("grid {code} has versions 1 to {}", vs.len()));
    };
    if body.version == vs.len() {
        return bad(format!("version {} is the current one", body.version));
    }
    let cat = st.catalog();
    let Some(gl) = cat.layer(builtin::GRIDS) else {
        return bad("this store has no grids layer");
    };
    let def = gl.def.clone();
    // Transactions to undo: those after the target that touched the grid,
    // then (to a fixed point) later ones touching any grid they touched.
    let mut txns: BTreeSet<i64> = vs
        .iter()
        .filter(|v| v.seq > target.seq)
        .map(|v| v.txn)
        .collect();
    let mut codes: BTreeSet<String> = BTreeSet::from([code.to_string()]);
    let mut rows_of: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for _ in 0..64 {
        let mut grew = false;
        for t in txns.clone() {
            for c in txn_rows(st, t).await? {
                if c.layer != builtin::GRIDS {
                    continue;
                }
                for s in [&c.before, &c.after].into_iter().flatten() {
                    if let Some(k) = s.pointer("/properties/code").and_then(J::as_str)
                        && codes.insert(k.to_string())
                    {
                        grew = true;
                    }
                }
            }
        }
        let first = txns.first().copied().unwrap_or(i64::MAX);
        for k in &codes {
            if !rows_of.contains_key(k) {
                rows_of.insert(
                    k.clone(),
                    st.store.history_where(builtin::GRIDS, "code", k).await?,
                );
            }
            for r in &rows_of[k] {
                if r.txn >= first && txns.insert(r.txn) {
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    let mut changes: Changes = BTreeMap::new();
    for k in &codes {
        let rows = rows_of.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let Some(first) = rows.iter().find(|r| txns.contains(&r.txn)) else {
            continue;
        };
        let before = match (&first.before, first.op.as_str()) {
            (_, "insert") => None,
            (Some(b), _) => Some(grid_from(b, &def).ok_or_else(|| {
                PlanError::Store(format!("change {} of {k} cannot be read", first.seq))
            })?),
            (None, _) => None,
        };
        changes.insert(k.clone(), before);
    }
    let expect: BTreeMap<String, (i64, i64)> = changes
        .keys()
        .filter_map(|k| {
            cat.grids
                .get(k)
                .map(|(_, n)| &gl.features[n.feature as usize])
                .map(|f| (k.clone(), (f.id, f.version)))
        })
        .collect();
    if body.dry_run {
        return preview(st, code, body.version, &changes, &codes, &txns).await;
    }
    let reason = format!(
        "[revert {code} to v{}] {}",
        body.version,
        body.reason.trim()
    );
    let mut out = publish(st, &changes, &expect, body.author.trim(), &reason).await?;
    out["reverted"] = json!(codes);
    Ok(out)
}

/// What a revert would do, for a planner to confirm: every grid it puts
/// back (and how), every change set it undoes (who, when, why), and the
/// validation and impact of the result. Writes nothing.
async fn preview(
    st: &App,
    code: &str,
    version: usize,
    changes: &Changes,
    codes: &BTreeSet<String>,
    txns: &BTreeSet<i64>,
) -> Result<J> {
    let mut undone = Vec::new();
    for &t in txns {
        if let Some(first) = txn_rows(st, t).await?.into_iter().next() {
            undone.push(json!({
                "seq": t,
                "time": first.time,
                "author": first.author,
                "reason": plain_reason(&first.reason),
                "plan": plan_of(&first.reason),
                "revert": first.reason.starts_with("[revert "),
            }));
        }
    }
    let cat = st.catalog();
    let grids: Vec<J> = changes
        .iter()
        .map(|(k, target)| {
            let now = cat.grids.get(k).is_some();
            let action = match (now, target.is_some()) {
                (true, true) => "restore",
                (true, false) => "delete",
                (false, true) => "recreate",
                (false, false) => "none",
            };
            json!({"code": k, "action": action})
        })
        .collect();
    let (cat2, changes2) = (cat.clone(), changes.clone());
    let (report_ok, violations, impact) = st
        .work
        .run(crate::work::Lane::Heavy, move || {
            World::new(&cat2, &changes2).map(|w| {
                let r = check::validate(&w);
                (
                    r.ok(),
                    r.violations.iter().map(|v| v.to_json()).collect::<Vec<_>>(),
                    r.impact_json(&w),
                )
            })
        })
        .await?
        .ok_or_else(|| PlanError::BadRequest("this store has no grids layer".into()))?;
    Ok(json!({
        "dry_run": true,
        "code": code,
        "version": version,
        "ok": report_ok,
        "reverted": codes,
        "grids": grids,
        "undone": undone,
        "violations": violations,
        "impact": impact,
    }))
}

/// Every change-log row of one transaction.
async fn txn_rows(st: &App, txn: i64) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    let mut from = txn - 1;
    loop {
        let batch = st.store.changes_since(from, 2000).await?;
        if batch.is_empty() {
            return Ok(out);
        }
        for c in batch {
            if c.txn != txn {
                return Ok(out);
            }
            from = c.seq;
            out.push(c);
        }
    }
}
