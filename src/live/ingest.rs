//! Work orders as clients send them: parsing and validation of
//! `POST /api/events` bodies and `PATCH /api/events/{id}` bodies, and the
//! status rules. Nothing here touches the store or the catalog.

use crate::model::value::{format_utc, parse_instant};
use crate::model::{LayerDef, Value};
use geo::Point;
use serde_json::Value as J;

/// Most work orders in one `POST /api/events`.
pub const MAX_BATCH: usize = 1000;

/// Where work orders come from: the "4 channels, 1 platform" and the rest.
pub const SOURCES: &[&str] = &[
    "hotline_12345",
    "police_110",
    "grid_report",
    "camera_alarm",
    "resident_app",
    "petition",
];

/// A work order's life: each status may only move forward (a step may be
/// skipped: an order can be closed straight from `new`).
pub const STATUSES: &[&str] = &["new", "dispatched", "processing", "closed"];

/// Properties a client may send (the rest of the schema is derived).
const SETTABLE: &[&str] = &[
    "title",
    "source",
    "category",
    "status",
    "created_at",
    "deadline",
    "closed_at",
    "department",
];

/// Properties that make up a work order's identity for idempotency: a
/// resend with these equal is the same order, whatever its status has
/// become since.
pub const IDENTITY: &[&str] = &[
    "title",
    "source",
    "category",
    "created_at",
    "deadline",
    "department",
];

/// A work order from a client, validated.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub ext_id: String,
    pub point: Point,
    /// The properties the client gave, normalised (times canonical UTC).
    pub given: Vec<(String, Value)>,
}

impl Incoming {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.given.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The full property vector for a new feature, in schema order, with
    /// defaults filled in (`now` for `created_at`, the category for the
    /// title) and the derived grid code.
    pub fn properties(&self, def: &LayerDef, now: &str, grid: Option<&str>) -> Vec<Value> {
        def.properties
            .iter()
            .map(|p| match p.name.as_str() {
                "ext_id" => Value::text(&self.ext_id),
                "grid" => grid.map(Value::text).unwrap_or(Value::Null),
                "status" => self.get("status").cloned().unwrap_or(Value::text("new")),
                "created_at" => self.get("created_at").cloned().unwrap_or(Value::text(now)),
                "title" => self
                    .get("title")
                    .or(self.get("category"))
                    .cloned()
                    .unwrap_or(Value::Null),
                "closed_at" => match self.get("closed_at") {
                    Some(v) => v.clone(),
                    None if self.get("status").and_then(Value::as_str) == Some("closed") => {
                        Value::text(now)
                    }
                    None => Value::Null,
                },
                name => self.get(name).cloned().unwrap_or(Value::Null),
            })
            .collect()
    }
}

fn text_prop(name: &str, v: &J, max: usize) -> Result<Value, String> {
    match v {
        J::Null => Ok(Value::Null),
        J::String(s) if s.chars().count() <= max && !s.chars().any(char::is_control) => {
            Ok(Value::text(s.trim()))
        }
        J::String(_) => Err(format!(
            "{name} is too long (at most {max} characters) or has control characters"
        )),
        _ => Err(format!("{name} must be text")),
    }
}

fn time_prop(name: &str, v: &J) -> Result<Value, String> {
    match v {
        J::Null => Ok(Value::Null),
        J::String(s) => {
            let ms = parse_instant(s)
                .ok_or_else(|| format!("{name} {s:?} is not an RFC 3339 date-time"))?;
            let t = chrono::DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| format!("{name} {s:?} is out of range"))?;
            Ok(Value::text(format_utc(t)))
        }
        _ => Err(format!("{name} must be an RFC 3339 date-time string")),
    }
}

/// Checks a status name.
pub fn check_status(s: &str) -> Result<(), String> {
    if STATUSES.contains(&s) {
        Ok(())
    } else {
        Err(format!(
            "unknown status {s:?}; use one of {} (overdue is derived from the deadline)",
            STATUSES.join(", ")
        ))
    }
}

/// Whether a work order may move from `from` to `to`.
pub fn transition_allowed(from: &str, to: &str) -> bool {
    // Data from before (a stored `overdue`) counts as `processing`.
    let from = if from == "overdue" {
        "processing"
    } else {
        from
    };
    let pos = |s: &str| STATUSES.iter().position(|x| *x == s);
    matches!((pos(from), pos(to)), (Some(a), Some(b)) if b > a)
}

fn one(f: &J, index: usize) -> Result<Incoming, String> {
    let at = |m: String| format!("feature {index}: {m}");
    let obj = f
        .as_object()
        .ok_or_else(|| at("not a JSON object".into()))?;
    if obj.get("type").and_then(J::as_str) != Some("Feature") {
        return Err(at("type must be \"Feature\"".into()));
    }
    let ext_id = match obj.get("id") {
        Some(J::String(s))
            if !s.trim().is_empty() && s.len() <= 64 && !s.chars().any(char::is_control) =>
        {
            s.trim().to_string()
        }
        Some(J::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => {
            return Err(at(
                "id must be a non-empty string (at most 64 bytes) or an integer".into(),
            ));
        }
        None => {
            return Err(at(
                "id is required: the order's id in the system it comes from (it makes a resend harmless)"
                    .into(),
            ));
        }
    };
    let geom = obj
        .get("geometry")
        .and_then(J::as_object)
        .ok_or_else(|| at("geometry must be a GeoJSON Point".into()))?;
    if geom.get("type").and_then(J::as_str) != Some("Point") {
        return Err(at("geometry must be a GeoJSON Point".into()));
    }
    let c = geom
        .get("coordinates")
        .and_then(J::as_array)
        .filter(|a| a.len() == 2 || a.len() == 3)
        .ok_or_else(|| at("coordinates must be [lon, lat]".into()))?;
    let (lon, lat) = match (c[0].as_f64(), c[1].as_f64()) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(at("coordinates must be numbers".into())),
    };
    if !(lon.is_finite() && lat.is_finite() && lon.abs() <= 180.0 && lat.abs() <= 90.0) {
        return Err(at(format!(
            "coordinates ({lon}, {lat}) are out of range (lon -180..180, lat -90..90)"
        )));
    }
    let props = match obj.get("properties") {
        Some(J::Object(m)) => m.clone(),
        Some(J::Null) | None => serde_json::Map::new(),
        Some(_) => return Err(at("properties must be an object".into())),
    };
    let mut given = Vec::new();
    for (k, v) in &props {
        if !SETTABLE.contains(&k.as_str()) {
            return Err(at(if k == "grid" || k == "ext_id" {
                format!("{k} is derived by the server; leave it out")
            } else {
                format!(
                    "unknown property {k:?}; work orders have {}",
                    SETTABLE.join(", ")
                )
            }));
        }
        let value = match k.as_str() {
            "created_at" | "deadline" | "closed_at" => time_prop(k, v),
            "title" => text_prop(k, v, 200),
            _ => text_prop(k, v, 64),
        }
        .map_err(at)?;
        if !value.is_null() {
            given.push((k.clone(), value));
        }
    }
    let get = |k: &str| {
        given
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.as_str())
    };
    match get("source") {
        Some(s) if SOURCES.contains(&s) => {}
        Some(s) => {
            return Err(at(format!(
                "unknown source {s:?}; use one of {}",
                SOURCES.join(", ")
            )));
        }
        None => return Err(at("source is required".into())),
    }
    if get("category").is_none_or(str::is_empty) {
        return Err(at("category is required".into()));
    }
    if let Some(s) = get("status") {
        check_status(s).map_err(at)?;
    }
    if let (Some(c), Some(d)) = (get("created_at"), get("deadline"))
        && d < c
    {
        return Err(at(format!("deadline {d} is before created_at {c}")));
    }
    if get("closed_at").is_some() && get("status") != Some("closed") {
        return Err(at("closed_at is only for a closed order".into()));
    }
    Ok(Incoming {
        ext_id,
        point: Point::new(lon, lat),
        given,
    })
}

/// Reads a `POST /api/events` body: one Feature or a FeatureCollection of
/// up to [`MAX_BATCH`]. Every fault is named with the feature's position.
pub fn parse_batch(body: &J) -> Result<Vec<Incoming>, String> {
    let list: Vec<&J> = match body.get("type").and_then(J::as_str) {
        Some("Feature") => vec![body],
        Some("FeatureCollection") => {
            let fs = body
                .get("features")
                .and_then(J::as_array)
                .ok_or("a FeatureCollection needs a features array")?;
            if fs.is_empty() {
                return Err("the FeatureCollection has no features".into());
            }
            if fs.len() > MAX_BATCH {
                return Err(format!(
                    "{} work orders in one request; at most {MAX_BATCH}",
                    fs.len()
                ));
            }
            fs.iter().collect()
        }
        _ => return Err("the body must be a GeoJSON Feature or FeatureCollection".into()),
    };
    let out: Vec<Incoming> = list
        .iter()
        .enumerate()
        .map(|(i, f)| one(f, i))
        .collect::<Result<_, _>>()?;
    let mut ids: Vec<&str> = out.iter().map(|e| e.ext_id.as_str()).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("id {:?} appears twice in the request", w[0]));
    }
    Ok(out)
}

/// A status change (`PATCH /api/events/{id}`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    pub status: Option<String>,
    pub department: Option<String>,
    pub closed_at: Option<String>,
}

impl PatchBody {
    pub fn check(&self) -> Result<(), String> {
        if self.status.is_none() && self.department.is_none() {
            return Err("nothing to change: give status and/or department".into());
        }
        if let Some(s) = &self.status {
            check_status(s)?;
        }
        if let Some(d) = &self.department {
            text_prop("department", &J::String(d.clone()), 64)?;
        }
        if let Some(c) = &self.closed_at {
            if self.status.as_deref() != Some("closed") {
                return Err("closed_at is only given with status closed".into());
            }
            time_prop("closed_at", &J::String(c.clone()))?;
        }
        Ok(())
    }

    /// The normalised closing time, if given.
    pub fn closed_at(&self) -> Option<Value> {
        self.closed_at
            .as_ref()
            .and_then(|c| time_prop("closed_at", &J::String(c.clone())).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feature(id: J, props: J) -> J {
        json!({"type": "Feature", "id": id, "geometry": {"type": "Point", "coordinates": [112.9, 28.2]}, "properties": props})
    }

    #[test]
    fn good_and_bad_work_orders() {
        let ok = parse_batch(&feature(
            json!("A-1"),
            json!({"source": "hotline_12345", "category": "noise", "created_at": "2026-11-22T08:00:00+08:00"}),
        ))
        .expect("valid");
        assert_eq!(ok[0].ext_id, "A-1");
        assert_eq!(
            ok[0].get("created_at").and_then(Value::as_str),
            Some("2026-11-22T00:00:00Z")
        );
        for (body, expect) in [
            (
                feature(J::Null, json!({"source": "grid_report", "category": "x"})),
                "id",
            ),
            (
                feature(json!("a"), json!({"category": "x"})),
                "source is required",
            ),
            (
                feature(json!("a"), json!({"source": "fax", "category": "x"})),
                "unknown source",
            ),
            (
                feature(json!("a"), json!({"source": "grid_report"})),
                "category",
            ),
            (
                feature(
                    json!("a"),
                    json!({"source": "grid_report", "category": "x", "status": "overdue"}),
                ),
                "unknown status",
            ),
            (
                feature(
                    json!("a"),
                    json!({"source": "grid_report", "category": "x", "colour": 1}),
                ),
                "unknown property",
            ),
            (
                feature(
                    json!("a"),
                    json!({"source": "grid_report", "category": "x", "grid": "1"}),
                ),
                "derived",
            ),
            (
                feature(
                    json!("a"),
                    json!({"source": "grid_report", "category": "x", "created_at": "yesterday"}),
                ),
                "created_at",
            ),
            (
                feature(
                    json!("a"),
                    json!({"source": "grid_report", "category": "x",
                    "created_at": "2026-11-22T00:00:00Z", "deadline": "2026-11-21T00:00:00Z"}),
                ),
                "before",
            ),
            (
                json!({"type": "Feature", "id": "a", "geometry": {"type": "Point", "coordinates": [512.9, 28.2]},
                       "properties": {"source": "grid_report", "category": "x"}}),
                "out of range",
            ),
            (
                json!({"type": "Feature", "id": "a", "geometry": {"type": "LineString", "coordinates": [[1, 2], [3, 4]]},
                       "properties": {"source": "grid_report", "category": "x"}}),
                "Point",
            ),
            (
                json!({"type": "FeatureCollection", "features": []}),
                "no features",
            ),
            (json!([1, 2]), "Feature or FeatureCollection"),
        ] {
            let e = parse_batch(&body).expect_err(&body.to_string());
            assert!(e.contains(expect), "{body}: {e:?} does not name {expect:?}");
        }
        let twice = json!({"type": "FeatureCollection", "features": [
            feature(json!("a"), json!({"source": "grid_report", "category": "x"})),
            feature(json!("a"), json!({"source": "grid_report", "category": "y"}))]});
        assert!(parse_batch(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn statuses_only_move_forward() {
        assert!(transition_allowed("new", "dispatched"));
        assert!(transition_allowed("new", "closed"));
        assert!(transition_allowed("dispatched", "processing"));
        assert!(!transition_allowed("closed", "new"));
        assert!(!transition_allowed("processing", "dispatched"));
        assert!(!transition_allowed("new", "new"));
        assert!(transition_allowed("overdue", "closed"));
    }
}
