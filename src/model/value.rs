//! Property values and their types.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The type of a property. Each maps to one GeoPackage column type
/// (`BOOLEAN`, `INTEGER`, `REAL`, `TEXT`, `DATETIME`, `DATE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PropType {
    Bool,
    Int,
    Float,
    Text,
    /// An instant, stored as ISO 8601 UTC text (`2026-05-01T08:30:00Z`), as
    /// GeoPackage's DATETIME requires.
    DateTime,
    /// A calendar date (`2026-05-01`).
    Date,
}

impl PropType {
    pub fn gpkg_name(self) -> &'static str {
        match self {
            PropType::Bool => "BOOLEAN",
            PropType::Int => "INTEGER",
            PropType::Float => "REAL",
            PropType::Text => "TEXT",
            PropType::DateTime => "DATETIME",
            PropType::Date => "DATE",
        }
    }

    pub fn from_gpkg_name(s: &str) -> Option<PropType> {
        let s = s.to_ascii_uppercase();
        Some(match s.as_str() {
            "BOOLEAN" => PropType::Bool,
            "INTEGER" | "INT" | "MEDIUMINT" | "SMALLINT" | "TINYINT" => PropType::Int,
            "REAL" | "FLOAT" | "DOUBLE" => PropType::Float,
            "DATETIME" => PropType::DateTime,
            "DATE" => PropType::Date,
            _ if s == "TEXT" || s.starts_with("TEXT(") => PropType::Text,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            PropType::Bool => "bool",
            PropType::Int => "int",
            PropType::Float => "float",
            PropType::Text => "text",
            PropType::DateTime => "datetime",
            PropType::Date => "date",
        }
    }
}

/// A property value. Text is boxed to keep the enum at 24 bytes: the city
/// demo holds tens of millions of these.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(Box<str>),
}

impl Value {
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into().into_boxed_str())
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Text(s) => serde_json::Value::String(s.to_string()),
        }
    }

    /// Converts a JSON value to a value of type `ty`, or says why not.
    ///
    /// Lenient where no information is lost (an integral float for an int
    /// column, a number for a text column, "true"/"false" for a bool), strict
    /// otherwise: a string where a number is expected is an error, so a typo
    /// in an import file is reported instead of silently stored as NULL.
    pub fn from_json(v: &serde_json::Value, ty: PropType) -> Result<Value, String> {
        use serde_json::Value as J;
        let wrong = |v: &J| format!("expected {} but found {}", ty.name(), short_json(v));
        Ok(match (ty, v) {
            (_, J::Null) => Value::Null,
            (PropType::Bool, J::Bool(b)) => Value::Bool(*b),
            (PropType::Bool, J::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Value::Bool(n.as_i64() == Some(1))
            }
            (PropType::Int, J::Number(n)) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::Int(f as i64),
                    _ => return Err(wrong(v)),
                },
            },
            (PropType::Float, J::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() => Value::Float(f),
                _ => return Err(wrong(v)),
            },
            (PropType::Text, J::String(s)) => Value::text(s.clone()),
            (PropType::Text, J::Number(n)) => Value::text(n.to_string()),
            (PropType::Text, J::Bool(b)) => Value::text(b.to_string()),
            (PropType::DateTime, J::String(s)) => Value::text(normalize_datetime(s)?),
            (PropType::Date, J::String(s)) => Value::text(normalize_date(s)?),
            _ => return Err(wrong(v)),
        })
    }

    /// Converts text (a CSV cell) to a value of type `ty`. An empty cell is NULL.
    pub fn from_text(s: &str, ty: PropType) -> Result<Value, String> {
        let t = s.trim();
        if t.is_empty() {
            return Ok(Value::Null);
        }
        let wrong = || format!("expected {} but found {:?}", ty.name(), s);
        Ok(match ty {
            PropType::Bool => match t.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "是" => Value::Bool(true),
                "false" | "0" | "no" | "否" => Value::Bool(false),
                _ => return Err(wrong()),
            },
            PropType::Int => Value::Int(t.parse().map_err(|_| wrong())?),
            PropType::Float => {
                let f: f64 = t.parse().map_err(|_| wrong())?;
                if !f.is_finite() {
                    return Err(wrong());
                }
                Value::Float(f)
            }
            PropType::Text => Value::text(s),
            PropType::DateTime => Value::text(normalize_datetime(t)?),
            PropType::Date => Value::text(normalize_date(t)?),
        })
    }
}

fn short_json(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// Parses an instant and writes it as ISO 8601 UTC with a `Z`.
///
/// Accepts RFC 3339 with any offset; a value without an offset is taken as
/// China Standard Time (UTC+8), which is what every source these centres
/// import from means by a bare local time.
///
/// ```
/// use onemap::model::value::normalize_datetime;
/// assert_eq!(normalize_datetime("2026-05-01 08:30:00").unwrap(), "2026-05-01T00:30:00Z");
/// ```
pub fn normalize_datetime(s: &str) -> Result<String, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(format_utc(t.with_timezone(&Utc)));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            let utc = t - chrono::Duration::hours(8);
            return Ok(format_utc(utc.and_utc()));
        }
    }
    Err(format!(
        "{s:?} is not a date-time (use RFC 3339, e.g. 2026-05-01T08:30:00+08:00)"
    ))
}

/// Formats an instant the one way onemap stores it.
pub fn format_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Milliseconds since the epoch of an ISO 8601 instant or date (`2026-11-01`,
/// `2026-11-01T08:00:00Z`, with offset or fraction, or `2026-11-01 08:00:00`
/// read as UTC).
pub fn parse_instant(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // Fast path: the canonical `YYYY-MM-DDTHH:MM:SSZ` the stores write.
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        chrono::NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)?;
        let day = days_from_civil(y, m, d) * DAY_MS;
        if b.len() == 10 {
            return Some(day);
        }
        if b.len() == 20
            && (b[10] == b'T' || b[10] == b' ')
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'Z'
        {
            let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
            if h < 24 && mi < 60 && se < 60 {
                return Some(day + ((h * 60 + mi) * 60 + se) * 1000);
            }
            return None;
        }
    }
    let t = s.replacen(' ', "T", 1);
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(&t) {
        return Some(dt.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc().timestamp_millis())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn normalize_date(s: &str) -> Result<String, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .map_err(|_| format!("{s:?} is not a date (use YYYY-MM-DD)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn value_is_small() {
        assert_eq!(std::mem::size_of::<Value>(), 24);
    }

    #[test]
    fn json_conversion_is_strict_where_it_matters() {
        assert_eq!(
            Value::from_json(&json!(3), PropType::Int),
            Ok(Value::Int(3))
        );
        assert_eq!(
            Value::from_json(&json!(3.0), PropType::Int),
            Ok(Value::Int(3))
        );
        assert!(Value::from_json(&json!(3.5), PropType::Int).is_err());
        assert!(Value::from_json(&json!("3"), PropType::Int).is_err());
        assert_eq!(
            Value::from_json(&json!(7), PropType::Text),
            Ok(Value::text("7"))
        );
        assert!(Value::from_json(&json!({"a": 1}), PropType::Text).is_err());
        assert_eq!(
            Value::from_json(&json!(null), PropType::Int),
            Ok(Value::Null)
        );
    }

    #[test]
    fn datetimes_are_normalised_to_utc() {
        assert_eq!(
            normalize_datetime("2026-05-01T08:30:00+08:00").as_deref(),
            Ok("2026-05-01T00:30:00Z")
        );
        assert_eq!(
            normalize_datetime("2026-05-01 08:30:00").as_deref(),
            Ok("2026-05-01T00:30:00Z")
        );
        assert!(normalize_datetime("yesterday").is_err());
    }

    #[test]
    fn text_cells() {
        assert_eq!(Value::from_text("", PropType::Int), Ok(Value::Null));
        assert_eq!(
            Value::from_text("是", PropType::Bool),
            Ok(Value::Bool(true))
        );
        assert!(Value::from_text("abc", PropType::Float).is_err());
        assert!(Value::from_text("NaN", PropType::Float).is_err());
    }
}
