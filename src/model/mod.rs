//! The data model: layers with typed property schemas, features with stable
//! ids and versions, and the grid hierarchy's levels and codes.
//!
//! Everything here is plain data. The store persists it, the index derives
//! from it, the API renders it; none of them adds fields of its own, so a
//! feature read back from either store is equal to the one written.

pub mod builtin;
pub mod grid;
pub mod value;

pub use grid::{GridCode, GridLevel};
pub use value::{PropType, Value};

use geo::Geometry;
use serde::{Deserialize, Serialize};

/// The geometry type a layer declares (the GeoPackage `geometry_type_name`).
///
/// Values are coerced on write: a layer declared `MultiPolygon` stores a
/// `Polygon` as a one-part `MultiPolygon`, so the column holds one type and
/// QGIS shows it as such. `Geometry` accepts anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GeomKind {
    Point,
    LineString,
    Polygon,
    MultiPoint,
    MultiLineString,
    MultiPolygon,
    Geometry,
}

impl GeomKind {
    /// The name GeoPackage uses in `gpkg_geometry_columns`.
    pub fn gpkg_name(self) -> &'static str {
        match self {
            GeomKind::Point => "POINT",
            GeomKind::LineString => "LINESTRING",
            GeomKind::Polygon => "POLYGON",
            GeomKind::MultiPoint => "MULTIPOINT",
            GeomKind::MultiLineString => "MULTILINESTRING",
            GeomKind::MultiPolygon => "MULTIPOLYGON",
            GeomKind::Geometry => "GEOMETRY",
        }
    }

    pub fn from_gpkg_name(s: &str) -> Option<GeomKind> {
        Some(match s.to_ascii_uppercase().as_str() {
            "POINT" => GeomKind::Point,
            "LINESTRING" => GeomKind::LineString,
            "POLYGON" => GeomKind::Polygon,
            "MULTIPOINT" => GeomKind::MultiPoint,
            "MULTILINESTRING" => GeomKind::MultiLineString,
            "MULTIPOLYGON" => GeomKind::MultiPolygon,
            "GEOMETRY" => GeomKind::Geometry,
            _ => return None,
        })
    }

    /// The kind of a concrete geometry value.
    pub fn of(g: &Geometry) -> GeomKind {
        match g {
            Geometry::Point(_) => GeomKind::Point,
            Geometry::LineString(_) | Geometry::Line(_) => GeomKind::LineString,
            Geometry::Polygon(_) | Geometry::Rect(_) | Geometry::Triangle(_) => GeomKind::Polygon,
            Geometry::MultiPoint(_) => GeomKind::MultiPoint,
            Geometry::MultiLineString(_) => GeomKind::MultiLineString,
            Geometry::MultiPolygon(_) => GeomKind::MultiPolygon,
            Geometry::GeometryCollection(_) => GeomKind::Geometry,
        }
    }

    /// A short label for the API (`/api/layers`): point, line or polygon.
    pub fn label(self) -> &'static str {
        match self {
            GeomKind::Point | GeomKind::MultiPoint => "point",
            GeomKind::LineString | GeomKind::MultiLineString => "line",
            GeomKind::Polygon | GeomKind::MultiPolygon => "polygon",
            GeomKind::Geometry => "geometry",
        }
    }

    /// Coerce a value to this declared kind, or explain why it cannot be.
    pub fn coerce(self, g: Geometry) -> Result<Geometry, String> {
        use geo::{MultiLineString, MultiPoint, MultiPolygon};
        let have = GeomKind::of(&g);
        match (self, g) {
            (GeomKind::Geometry, g) => Ok(g),
            (want, g) if want == have => Ok(g),
            (GeomKind::MultiPolygon, Geometry::Polygon(p)) => {
                Ok(Geometry::MultiPolygon(MultiPolygon(vec![p])))
            }
            (GeomKind::MultiPoint, Geometry::Point(p)) => {
                Ok(Geometry::MultiPoint(MultiPoint(vec![p])))
            }
            (GeomKind::MultiLineString, Geometry::LineString(l)) => {
                Ok(Geometry::MultiLineString(MultiLineString(vec![l])))
            }
            (want, _) => Err(format!(
                "geometry is {} but the layer holds {}",
                have.gpkg_name(),
                want.gpkg_name()
            )),
        }
    }
}

/// One property of a layer's schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: PropType,
}

impl PropDef {
    pub fn new(name: &str, ty: PropType) -> PropDef {
        PropDef {
            name: name.to_string(),
            ty,
        }
    }
}

/// A layer: its name (part of the API), title, geometry type and schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDef {
    pub name: String,
    pub title: String,
    pub geometry: GeomKind,
    pub properties: Vec<PropDef>,
    pub minzoom: u8,
    pub maxzoom: u8,
    /// The CRS the data was declared in when imported (`wgs84`, `cgcs2000`,
    /// `gcj02`, `bd09`). Stored coordinates are always WGS84 lon/lat.
    pub declared_crs: String,
}

impl LayerDef {
    /// The index of a property in the schema (and so in `Feature::properties`).
    pub fn prop_index(&self, name: &str) -> Option<usize> {
        self.properties.iter().position(|p| p.name == name)
    }

    /// Checks a layer name: lower-case ASCII letters, digits and `_`, starting
    /// with a letter, at most 63 bytes. Names appear in URLs and SQL
    /// identifiers, so nothing else is allowed.
    pub fn check_name(name: &str) -> Result<(), String> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name.as_bytes()[0].is_ascii_lowercase()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.starts_with("gpkg")
            && !name.starts_with("onemap")
            && !name.starts_with("rtree")
            && !name.starts_with("sqlite");
        if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid layer name {name:?}: use lower-case letters, digits and '_', \
                 starting with a letter (and not a reserved prefix)"
            ))
        }
    }

    /// Checks a property name (it becomes a column): letters (any script, so
    /// `名称` is fine), digits and `_`, not starting with a digit, at most 63
    /// bytes (PostgreSQL's identifier limit, which would silently truncate a
    /// longer one: 21 Chinese characters in UTF-8; applied to every store so
    /// that any store can be copied to PostGIS); `fid`, `geom` and
    /// `onemap_version` are ours.
    pub fn check_prop_name(name: &str) -> Result<(), String> {
        let reserved = ["fid", "geom", "onemap_version"];
        let ok = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_alphanumeric() || c == '_')
            && !reserved.contains(&name.to_lowercase().as_str());
        if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid property name {name:?}: use letters, digits and '_', not starting \
                 with a digit, at most 63 bytes (21 Chinese characters); fid, geom and \
                 onemap_version are reserved"
            ))
        }
    }
}

/// One feature. `id` is stable for the life of the feature (never reused);
/// `version` starts at 1 and grows by one with every accepted change, which is
/// what optimistic locking compares. `properties` follow the layer's schema
/// order, one value per property.
#[derive(Clone, Debug, PartialEq)]
pub struct Feature {
    pub id: i64,
    pub version: i64,
    pub geometry: Geometry,
    pub properties: Vec<Value>,
}

impl Feature {
    /// The feature as a GeoJSON Feature object (properties by name).
    pub fn to_geojson(&self, def: &LayerDef) -> serde_json::Value {
        let geometry = geojson::Geometry::from(&self.geometry);
        let mut props = serde_json::Map::with_capacity(self.properties.len());
        for (d, v) in def.properties.iter().zip(&self.properties) {
            props.insert(d.name.clone(), v.to_json());
        }
        serde_json::json!({
            "type": "Feature",
            "id": self.id,
            "geometry": geometry,
            "properties": props,
        })
    }

    /// A feature back from its GeoJSON (as the change log keeps it):
    /// properties by the layer's schema (a missing or mistyped one is
    /// NULL), the geometry as stored. None when there is no readable
    /// geometry.
    pub fn from_geojson(
        doc: &serde_json::Value,
        id: i64,
        version: i64,
        def: &LayerDef,
    ) -> Option<Feature> {
        let geometry = crate::import::geometry_from_json(doc.get("geometry")?).ok()?;
        let null = serde_json::Value::Null;
        let props = doc.get("properties").unwrap_or(&null);
        Some(Feature {
            id,
            version,
            geometry,
            properties: def
                .properties
                .iter()
                .map(|p| {
                    Value::from_json(props.get(&p.name).unwrap_or(&null), p.ty)
                        .unwrap_or(Value::Null)
                })
                .collect(),
        })
    }

    /// A property by name.
    pub fn get<'a>(&'a self, def: &LayerDef, name: &str) -> Option<&'a Value> {
        def.prop_index(name).and_then(|i| self.properties.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::LayerDef;

    #[test]
    fn property_names_fit_a_postgresql_identifier() {
        // 21 Chinese characters are 63 bytes in UTF-8: the most PostgreSQL
        // keeps; 22 would be truncated there, so every store refuses them.
        let ok = "网".repeat(21);
        let long = "网".repeat(22);
        assert!(LayerDef::check_prop_name(&ok).is_ok());
        let e = LayerDef::check_prop_name(&long).unwrap_err();
        assert!(e.contains("63 bytes"), "{e}");
        assert!(LayerDef::check_prop_name(&"a".repeat(63)).is_ok());
        assert!(LayerDef::check_prop_name(&"a".repeat(64)).is_err());
        assert!(LayerDef::check_prop_name("名称").is_ok());
        assert!(LayerDef::check_prop_name("1st").is_err());
        assert!(LayerDef::check_prop_name("GEOM").is_err());
    }
}
