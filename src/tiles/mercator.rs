//! Web Mercator tile math (EPSG:3857 tiles over WGS84 lon/lat).

use geo::Rect;

/// Largest zoom served. Beyond it clients overzoom.
pub const MAX_ZOOM: u8 = 22;
/// Latitude limit of Web Mercator.
pub const MAX_LAT: f64 = 85.051_128_779_806_59;

/// A tile address, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl TileId {
    /// Checks `z <= MAX_ZOOM` and `x, y < 2^z`.
    pub fn new(z: u32, x: u32, y: u32) -> Result<TileId, String> {
        if z > u32::from(MAX_ZOOM) {
            return Err(format!("zoom {z} is out of range (0..={MAX_ZOOM})"));
        }
        let n = 1u64 << z;
        if u64::from(x) >= n || u64::from(y) >= n {
            return Err(format!(
                "tile {z}/{x}/{y} does not exist: x and y must be below {n} at zoom {z}"
            ));
        }
        Ok(TileId { z: z as u8, x, y })
    }

    /// The tile's bounds in lon/lat, grown by `buffer` (a fraction of the
    /// tile's size) on every side.
    pub fn bounds(&self, buffer: f64) -> Rect {
        let n = f64::from(1u32 << self.z);
        let (x0, x1) = (f64::from(self.x) - buffer, f64::from(self.x) + 1.0 + buffer);
        let (y0, y1) = (f64::from(self.y) - buffer, f64::from(self.y) + 1.0 + buffer);
        Rect::new(
            (world_x_to_lon(x0 / n), world_y_to_lat(y1 / n)),
            (world_x_to_lon(x1 / n), world_y_to_lat(y0 / n)),
        )
    }

    /// A projector from lon/lat to this tile's coordinates (0..extent, y down).
    pub fn projector(&self, extent: f64) -> Projector {
        let n = f64::from(1u32 << self.z);
        Projector {
            scale: n * extent,
            ox: f64::from(self.x) * extent,
            oy: f64::from(self.y) * extent,
        }
    }
}

/// Maps lon/lat to tile coordinates.
#[derive(Clone, Copy, Debug)]
pub struct Projector {
    scale: f64,
    ox: f64,
    oy: f64,
}

impl Projector {
    #[inline]
    pub fn project(&self, lon: f64, lat: f64) -> [f64; 2] {
        [
            lon_to_world_x(lon) * self.scale - self.ox,
            lat_to_world_y(lat) * self.scale - self.oy,
        ]
    }
}

/// Longitude to the world's x in [0, 1].
#[inline]
pub fn lon_to_world_x(lon: f64) -> f64 {
    (lon + 180.0) / 360.0
}

/// Latitude to the world's y in [0, 1] (0 at the top).
#[inline]
pub fn lat_to_world_y(lat: f64) -> f64 {
    let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0
}

pub fn world_x_to_lon(x: f64) -> f64 {
    x * 360.0 - 180.0
}

pub fn world_y_to_lat(y: f64) -> f64 {
    let n = std::f64::consts::PI * (1.0 - 2.0 * y);
    n.sinh().atan().to_degrees()
}

/// The tile at zoom `z` holding lon/lat.
pub fn tile_of(z: u8, lon: f64, lat: f64) -> TileId {
    let n = f64::from(1u32 << z);
    let max = (1u32 << z) - 1;
    TileId {
        z,
        x: ((lon_to_world_x(lon) * n).floor().max(0.0) as u32).min(max),
        y: ((lat_to_world_y(lat) * n).floor().max(0.0) as u32).min(max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_known_tiles() {
        for lat in [-80.0, -30.5, 0.0, 28.2, 60.0] {
            assert!((world_y_to_lat(lat_to_world_y(lat)) - lat).abs() < 1e-9);
        }
        // Zoom 1: four tiles; (112.95, 28.2) is in the north-east one.
        assert_eq!(tile_of(1, 112.95, 28.2), TileId { z: 1, x: 1, y: 0 });
        let t = TileId::new(10, 833, 430).unwrap();
        let b = t.bounds(0.0);
        let p = t.projector(4096.0);
        let [x, y] = p.project(b.min().x, b.max().y);
        assert!(x.abs() < 1e-6 && y.abs() < 1e-6);
        let [x, y] = p.project(b.max().x, b.min().y);
        assert!((x - 4096.0).abs() < 1e-6 && (y - 4096.0).abs() < 1e-6);
    }

    #[test]
    fn out_of_range_tiles_are_refused() {
        assert!(TileId::new(23, 0, 0).is_err());
        assert!(TileId::new(3, 8, 0).is_err());
        assert!(TileId::new(3, 0, 8).is_err());
        assert!(TileId::new(0, 0, 0).is_ok());
    }
}
