//! `onemap import`: GeoJSON and CSV files into a new or an existing layer.
//!
//! The whole file is read and checked before anything is written, and then
//! written in one change set (creating the layer in the same transaction when
//! it is new): a file with one bad feature leaves the store as it was. Every
//! problem is reported with the feature's number (1-based, in file order; for
//! CSV also the line), not just the first.
//!
//! Coordinates are declared, never guessed: `--crs wgs84` (default),
//! `cgcs2000` (within a metre of WGS84 here; stored as is, the declaration
//! recorded), `gcj02` (Gaode/Tencent) or `bd09` (Baidu), which are converted
//! to WGS84 with `coordtransform`'s iterative inverse (sub-millimetre).

pub mod crs;

pub use crs::Crs;

use crate::index::{LayerIndex, NO_GRID, grids::GridTree, representative_point};
use crate::model::{GeomKind, LayerDef, PropDef, PropType, Value, builtin};
use crate::store::{ChangeSet, LogDetail, Op, Store};
use geo::{Geometry, MapCoords, Validation};
use std::path::Path;

/// At most this many problems are listed; the count of the rest follows.
const MAX_REPORTED: usize = 50;

/// What went wrong with an import. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    File(String),
    #[error("{} problem(s) in the file, nothing imported:\n{}", .total, .lines.join("\n"))]
    Features { total: usize, lines: Vec<String> },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What an import did.
#[derive(Debug)]
pub struct ImportReport {
    pub layer: String,
    pub created: bool,
    pub count: usize,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
}

/// A parsed, not yet validated, feature.
struct Raw {
    /// How to name it in messages: "feature 3" or "feature 3 (line 4)".
    label: String,
    geometry: Result<Geometry, String>,
    /// Property name → JSON value (CSV cells become strings).
    props: Vec<(String, serde_json::Value)>,
    from_text: bool,
}

/// Imports `path` (`.geojson`/`.json` or `.csv`) into `layer`.
pub async fn import_file(
    store: &dyn Store,
    layer: &str,
    crs: Crs,
    path: &Path,
    author: &str,
) -> Result<ImportReport, ImportError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ImportError::File(format!("cannot read {}: {e}", path.display())))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let raws = match ext.as_str() {
        "csv" => read_csv(&bytes)?,
        "geojson" | "json" => read_geojson(&bytes)?,
        _ => {
            return Err(ImportError::File(format!(
                "{}: unknown file type; use .geojson, .json or .csv",
                path.display()
            )));
        }
    };
    let reason = format!(
        "import {} (crs {})",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        crs.name()
    );
    import_features(store, layer, crs, raws, author, &reason).await
}

async fn import_features(
    store: &dyn Store,
    layer: &str,
    crs: Crs,
    raws: Vec<Raw>,
    author: &str,
    reason: &str,
) -> Result<ImportReport, ImportError> {
    LayerDef::check_name(layer).map_err(ImportError::File)?;
    if raws.is_empty() {
        return Err(ImportError::File("the file holds no features".into()));
    }
    let existing = store.layers().await?.into_iter().find(|d| d.name == layer);
    let mut problems: Vec<String> = Vec::new();

    // Geometry: parsed, in range, converted to WGS84, valid.
    let mut geoms: Vec<Option<Geometry>> = Vec::with_capacity(raws.len());
    for r in &raws {
        let g = r
            .geometry
            .clone()
            .and_then(|g| {
                check_range(&g)?;
                Ok(crs.to_wgs84(g))
            })
            .and_then(|g| check_valid(&g).map(|_| g));
        match g {
            Ok(g) => geoms.push(Some(g)),
            Err(e) => {
                problems.push(format!("{}: {e}", r.label));
                geoms.push(None);
            }
        }
    }

    // The schema: the layer's, the built-in one, or inferred from the file.
    let (def, created) = match existing {
        Some(d) => (d, false),
        None => {
            let mut d = match builtin::layer(layer) {
                Some(d) => d,
                None => infer_schema(layer, &raws, &geoms).map_err(ImportError::File)?,
            };
            d.declared_crs = crs.name().to_string();
            (d, true)
        }
    };

    // Properties: by name, of the schema's type; unknown names are refused
    // rather than silently dropped.
    let mut props_out: Vec<Vec<Value>> = Vec::with_capacity(raws.len());
    for (r, g) in raws.iter().zip(&geoms) {
        let mut vals = vec![Value::Null; def.properties.len()];
        for (k, v) in &r.props {
            match def.prop_index(k) {
                None => problems.push(format!(
                    "{}: property {k:?} is not in layer {} (its properties: {})",
                    r.label,
                    def.name,
                    def.properties
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Some(i) => {
                    let ty = def.properties[i].ty;
                    let res = if r.from_text {
                        Value::from_text(v.as_str().unwrap_or(""), ty)
                    } else {
                        Value::from_json(v, ty)
                    };
                    match res {
                        Ok(v) => vals[i] = v,
                        Err(e) => problems.push(format!("{}: property {k:?}: {e}", r.label)),
                    }
                }
            }
        }
        if let Some(g) = g
            && let Err(e) = def.geometry.coerce(g.clone())
        {
            problems.push(format!("{}: {e}", r.label));
        }
        props_out.push(vals);
    }

    if !problems.is_empty() {
        let total = problems.len();
        let mut lines: Vec<String> = problems.into_iter().take(MAX_REPORTED).collect();
        if total > MAX_REPORTED {
            lines.push(format!("… and {} more", total - MAX_REPORTED));
        }
        return Err(ImportError::Features { total, lines });
    }

    // Derived grid codes for layers that carry them, from the store's grids.
    if let Some(gi) = def.prop_index("grid")
        && def.name != builtin::GRIDS
        && def.properties[gi].ty == PropType::Text
    {
        let has_grids = store
            .layers()
            .await?
            .iter()
            .any(|d| d.name == builtin::GRIDS);
        if has_grids {
            let gdef =
                builtin::layer(builtin::GRIDS).ok_or_else(|| ImportError::File("schema".into()))?;
            let gfeat = store.load_layer(builtin::GRIDS).await?;
            let stored_def = store
                .layers()
                .await?
                .into_iter()
                .find(|d| d.name == builtin::GRIDS)
                .unwrap_or(gdef);
            let tree = GridTree::build(&LayerIndex::new(stored_def, gfeat));
            for (vals, g) in props_out.iter_mut().zip(&geoms) {
                if vals[gi].is_null()
                    && let Some(p) = g.as_ref().and_then(representative_point)
                {
                    let n = tree.locate(p);
                    if n != NO_GRID {
                        vals[gi] = Value::text(tree.nodes[n as usize].code.to_string());
                    }
                }
            }
        }
    }

    let mut cs = ChangeSet::new(author, reason);
    if created {
        cs.create.push(def.clone());
    }
    cs.detail = if raws.len() > 1000 {
        LogDetail::Summary
    } else {
        LogDetail::PerFeature
    };
    cs.ops = geoms
        .into_iter()
        .zip(props_out)
        .filter_map(|(g, p)| {
            g.map(|geometry| Op::Insert {
                layer: def.name.clone(),
                id: None,
                geometry,
                properties: p,
            })
        })
        .collect();
    let applied = store.apply(&cs).await?;
    Ok(ImportReport {
        layer: def.name,
        created,
        count: applied.ids.len(),
        first_id: applied.ids.iter().copied().min(),
        last_id: applied.ids.iter().copied().max(),
    })
}

/// Lon/lat must be finite and within [-180, 180] × [-90, 90].
fn check_range(g: &Geometry) -> Result<(), String> {
    use geo::CoordsIter;
    for c in g.coords_iter() {
        if !(c.x.is_finite() && c.y.is_finite()) {
            return Err("coordinate is not a finite number".into());
        }
        if !(-180.0..=180.0).contains(&c.x) || !(-90.0..=90.0).contains(&c.y) {
            return Err(format!(
                "coordinate ({}, {}) is out of range (lon -180..180, lat -90..90; \
                 projected coordinates are not accepted)",
                c.x, c.y
            ));
        }
    }
    Ok(())
}

/// OGC validity (closed rings of 4+ points, no self-intersection, holes
/// inside shells …), with geo's explanation.
fn check_valid(g: &Geometry) -> Result<(), String> {
    let errors = g.validation_errors();
    if errors.is_empty() {
        return Ok(());
    }
    let msgs: Vec<String> = errors.iter().take(3).map(|e| e.to_string()).collect();
    Err(format!("invalid geometry: {}", msgs.join("; ")))
}

/// A schema from the file: property names in order of first appearance,
/// each typed by its values (bool, int, float, else text); the geometry
/// kind shared by all features, or GEOMETRY when they differ.
fn infer_schema(layer: &str, raws: &[Raw], geoms: &[Option<Geometry>]) -> Result<LayerDef, String> {
    let mut names: Vec<String> = Vec::new();
    for r in raws {
        for (k, _) in &r.props {
            if !names.contains(k) {
                LayerDef::check_prop_name(k)?;
                names.push(k.clone());
            }
        }
    }
    let mut properties = Vec::with_capacity(names.len());
    for name in names {
        let mut ty: Option<PropType> = None;
        for r in raws {
            let Some((_, v)) = r.props.iter().find(|(k, _)| *k == name) else {
                continue;
            };
            let t = if r.from_text {
                text_type(v.as_str().unwrap_or(""))
            } else {
                json_type(v).map_err(|e| format!("{}: property {name:?}: {e}", r.label))?
            };
            ty = match (ty, t) {
                (x, None) => x,
                (None, Some(t)) => Some(t),
                (Some(a), Some(b)) if a == b => Some(a),
                (Some(PropType::Int), Some(PropType::Float))
                | (Some(PropType::Float), Some(PropType::Int)) => Some(PropType::Float),
                _ => Some(PropType::Text),
            };
        }
        properties.push(PropDef {
            name,
            ty: ty.unwrap_or(PropType::Text),
        });
    }
    let mut kinds = geoms.iter().flatten().map(GeomKind::of);
    let first = kinds.next().unwrap_or(GeomKind::Geometry);
    let geometry = kinds.fold(first, |acc, k| match (acc, k) {
        (a, b) if a == b => a,
        (
            GeomKind::Polygon | GeomKind::MultiPolygon,
            GeomKind::Polygon | GeomKind::MultiPolygon,
        ) => GeomKind::MultiPolygon,
        (GeomKind::Point | GeomKind::MultiPoint, GeomKind::Point | GeomKind::MultiPoint) => {
            GeomKind::MultiPoint
        }
        (
            GeomKind::LineString | GeomKind::MultiLineString,
            GeomKind::LineString | GeomKind::MultiLineString,
        ) => GeomKind::MultiLineString,
        _ => GeomKind::Geometry,
    });
    Ok(LayerDef {
        name: layer.to_string(),
        title: layer.to_string(),
        geometry,
        properties,
        minzoom: 0,
        maxzoom: 22,
        declared_crs: "wgs84".into(),
    })
}

fn json_type(v: &serde_json::Value) -> Result<Option<PropType>, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => None,
        J::Bool(_) => Some(PropType::Bool),
        J::Number(n) if n.is_i64() || n.is_u64() => Some(PropType::Int),
        J::Number(_) => Some(PropType::Float),
        J::String(_) => Some(PropType::Text),
        J::Array(_) | J::Object(_) => {
            return Err("nested arrays and objects are not supported as property values".into());
        }
    })
}

fn text_type(s: &str) -> Option<PropType> {
    let t = s.trim();
    if t.is_empty() {
        None
    } else if t.parse::<i64>().is_ok() {
        Some(PropType::Int)
    } else if t.parse::<f64>().is_ok_and(|f| f.is_finite()) {
        Some(PropType::Float)
    } else if matches!(t.to_ascii_lowercase().as_str(), "true" | "false") {
        Some(PropType::Bool)
    } else {
        Some(PropType::Text)
    }
}

/// GeoJSON: a FeatureCollection or a single Feature.
fn read_geojson(bytes: &[u8]) -> Result<Vec<Raw>, ImportError> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ImportError::File(format!("malformed JSON: {e}")))?;
    let features: Vec<&serde_json::Value> = match v.get("type").and_then(|t| t.as_str()) {
        Some("FeatureCollection") => v
            .get("features")
            .and_then(|f| f.as_array())
            .ok_or_else(|| {
                ImportError::File("FeatureCollection without a \"features\" array".into())
            })?
            .iter()
            .collect(),
        Some("Feature") => vec![&v],
        Some(t) => {
            return Err(ImportError::File(format!(
                "expected a GeoJSON FeatureCollection or Feature, found type {t:?}"
            )));
        }
        None => return Err(ImportError::File("not GeoJSON: no \"type\" member".into())),
    };
    Ok(features
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let label = format!("feature {}", i + 1);
            let geometry = parse_geometry(f);
            let props = match f.get("properties") {
                Some(serde_json::Value::Object(m)) => {
                    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                }
                _ => Vec::new(),
            };
            Raw {
                label,
                geometry,
                props,
                from_text: false,
            }
        })
        .collect())
}

fn parse_geometry(f: &serde_json::Value) -> Result<Geometry, String> {
    if f.get("type").and_then(|t| t.as_str()) != Some("Feature") {
        return Err("not a GeoJSON Feature".into());
    }
    let g = match f.get("geometry") {
        None | Some(serde_json::Value::Null) => return Err("feature has no geometry".into()),
        Some(g) => g,
    };
    geometry_from_json(g)
}

/// A GeoJSON geometry object as a geometry (rings must be closed).
pub fn geometry_from_json(g: &serde_json::Value) -> Result<Geometry, String> {
    let gj =
        geojson::Geometry::from_json_value(g.clone()).map_err(|e| format!("bad geometry: {e}"))?;
    check_rings_closed(&gj.value)?;
    Geometry::try_from(gj.value).map_err(|e| format!("bad geometry: {e}"))
}

/// GeoJSON requires closed rings of at least four positions; geo would
/// silently close them, hiding a truncated file.
fn check_rings_closed(v: &geojson::Value) -> Result<(), String> {
    fn rings(rs: &[Vec<Vec<f64>>]) -> Result<(), String> {
        for (k, r) in rs.iter().enumerate() {
            let which = if k == 0 {
                "exterior ring".to_string()
            } else {
                format!("hole {k}")
            };
            if r.len() < 4 {
                return Err(format!(
                    "{which} has {} positions; a ring needs at least 4",
                    r.len()
                ));
            }
            if r.first() != r.last() {
                return Err(format!(
                    "{which} is not closed (first and last positions differ)"
                ));
            }
        }
        Ok(())
    }
    match v {
        geojson::Value::Polygon(p) => rings(p),
        geojson::Value::MultiPolygon(mp) => mp.iter().try_for_each(|p| rings(p)),
        geojson::Value::GeometryCollection(gs) => {
            gs.iter().try_for_each(|g| check_rings_closed(&g.value))
        }
        _ => Ok(()),
    }
}

const LON_NAMES: [&str; 6] = ["lon", "lng", "longitude", "x", "经度", "long"];
const LAT_NAMES: [&str; 4] = ["lat", "latitude", "y", "纬度"];

/// CSV with a header row and lon/lat columns (lon, lng, longitude, x, 经度 /
/// lat, latitude, y, 纬度; any case). Other columns become properties.
fn read_csv(bytes: &[u8]) -> Result<Vec<Raw>, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| ImportError::File(format!("cannot read the CSV header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let find = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.contains(&h.to_lowercase().as_str()))
    };
    let lon = find(&LON_NAMES).ok_or_else(|| {
        ImportError::File(format!(
            "no longitude column: name one of {}",
            LON_NAMES.join(", ")
        ))
    })?;
    let lat = find(&LAT_NAMES).ok_or_else(|| {
        ImportError::File(format!(
            "no latitude column: name one of {}",
            LAT_NAMES.join(", ")
        ))
    })?;
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let label = format!("feature {} (line {line})", i + 1);
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                out.push(Raw {
                    label,
                    geometry: Err(format!("unreadable CSV row: {e}")),
                    props: vec![],
                    from_text: true,
                });
                continue;
            }
        };
        let num = |k: usize, what: &str| -> Result<f64, String> {
            let s = rec.get(k).unwrap_or("").trim();
            s.parse::<f64>()
                .map_err(|_| format!("{what} {s:?} is not a number"))
        };
        let geometry = num(lon, "longitude")
            .and_then(|x| num(lat, "latitude").map(|y| Geometry::Point(geo::Point::new(x, y))));
        let props = headers
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != lon && *k != lat)
            .map(|(k, h)| {
                (
                    h.clone(),
                    serde_json::Value::String(rec.get(k).unwrap_or("").to_string()),
                )
            })
            .collect();
        out.push(Raw {
            label,
            geometry,
            props,
            from_text: true,
        });
    }
    Ok(out)
}

/// Converts every coordinate of a geometry (used by [`Crs::to_wgs84`]).
pub(crate) fn map_coords(g: Geometry, f: impl Fn(f64, f64) -> (f64, f64) + Copy) -> Geometry {
    g.map_coords(|c| {
        let (x, y) = f(c.x, c.y);
        geo::Coord { x, y }
    })
}
