//! The coordinate systems an import may declare.

use geo::Geometry;

/// A declared CRS of input coordinates (lon/lat degrees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crs {
    /// WGS84 (EPSG:4326): GPS, most GIS exports.
    Wgs84,
    /// CGCS2000 (EPSG:4490): China's national datum; it differs from WGS84 by
    /// well under a metre, so coordinates are kept and the datum recorded.
    Cgcs2000,
    /// GCJ-02, the obfuscated datum of Gaode (AMap) and Tencent maps.
    Gcj02,
    /// BD-09, Baidu's further offset on top of GCJ-02.
    Bd09,
}

impl Crs {
    /// Parses a declared CRS.
    ///
    /// ```
    /// use onemap::import::Crs;
    /// assert_eq!(Crs::parse("GCJ02"), Ok(Crs::Gcj02));
    /// assert_eq!(Crs::parse("epsg:4490"), Ok(Crs::Cgcs2000));
    /// assert!(Crs::parse("epsg:3857").is_err()); // projected: not accepted
    /// ```
    pub fn parse(s: &str) -> Result<Crs, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "wgs84" | "epsg:4326" | "4326" => Crs::Wgs84,
            "cgcs2000" | "epsg:4490" | "4490" => Crs::Cgcs2000,
            "gcj02" | "gcj-02" => Crs::Gcj02,
            "bd09" | "bd-09" => Crs::Bd09,
            _ => {
                return Err(format!(
                    "unknown CRS {s:?}: use wgs84, cgcs2000, gcj02 or bd09 \
                     (the CRS must be declared; onemap never guesses it)"
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Crs::Wgs84 => "wgs84",
            Crs::Cgcs2000 => "cgcs2000",
            Crs::Gcj02 => "gcj02",
            Crs::Bd09 => "bd09",
        }
    }

    /// Converts one lon/lat to WGS84.
    pub fn point_to_wgs84(self, lon: f64, lat: f64) -> (f64, f64) {
        match self {
            Crs::Wgs84 | Crs::Cgcs2000 => (lon, lat),
            Crs::Gcj02 => coordtransform::gcj02_to_wgs84(lon, lat),
            Crs::Bd09 => coordtransform::bd09_to_wgs84(lon, lat),
        }
    }

    /// Converts a geometry to WGS84.
    pub fn to_wgs84(self, g: Geometry) -> Geometry {
        match self {
            Crs::Wgs84 | Crs::Cgcs2000 => g,
            other => super::map_coords(g, move |x, y| other.point_to_wgs84(x, y)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Distance, Haversine, Point};

    /// The forward transforms are the published formulas (as every map SDK
    /// implements them); the inverse must land within a metre of the truth.
    #[test]
    fn inverse_is_within_a_metre() {
        for (lon, lat) in [
            (112.95, 28.2),
            (116.404, 39.915),
            (121.4737, 31.2304),
            (87.6, 43.8),
        ] {
            let truth = Point::new(lon, lat);
            let (gx, gy) = coordtransform::wgs84_to_gcj02(lon, lat);
            let (bx, by) = coordtransform::wgs84_to_bd09(lon, lat);
            // The offsets are real: hundreds of metres.
            assert!(Haversine.distance(truth, Point::new(gx, gy)) > 50.0);
            let (x, y) = Crs::Gcj02.point_to_wgs84(gx, gy);
            assert!(Haversine.distance(truth, Point::new(x, y)) < 1.0);
            let (x, y) = Crs::Bd09.point_to_wgs84(bx, by);
            assert!(Haversine.distance(truth, Point::new(x, y)) < 1.0);
        }
    }

    #[test]
    fn unknown_crs_is_refused() {
        assert!(Crs::parse("epsg:3857").is_err());
        assert_eq!(Crs::parse("GCJ02"), Ok(Crs::Gcj02));
    }
}
