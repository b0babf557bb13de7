//! Geometry blobs: ISO WKB and the GeoPackage binary header around it.
//!
//! Written by hand (about 250 lines) instead of through geozero so that the
//! store does not tie the sqlx and geojson versions to geozero's, and so that
//! decoding a point costs no allocation beyond the result: loading four
//! million addresses is dominated by this function.
//!
//! We write little-endian 2D WKB with an XY envelope (none for points, as GDAL
//! does). We read either byte order, skip Z/M ordinates (ISO 1000/2000/3000
//! offsets and EWKB flag bits), and reject anything malformed with an error
//! instead of panicking: a GeoPackage may come from any tool.

use geo::{
    BoundingRect, Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint,
    MultiPolygon, Point, Polygon,
};

/// Encodes a geometry as a GeoPackage geometry blob with SRS `srs_id`.
///
/// ```
/// use geo::{Geometry, point};
/// use onemap::store::wkb::{from_gpkg, to_gpkg};
/// let g = Geometry::Point(point!(x: 112.95, y: 28.2));
/// let blob = to_gpkg(&g, 4326);
/// assert_eq!(&blob[..2], b"GP");
/// assert_eq!(from_gpkg(&blob).unwrap(), g);
/// ```
pub fn to_gpkg(g: &Geometry, srs_id: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"GP");
    out.push(0); // version 1.0
    let is_point = matches!(g, Geometry::Point(_));
    let rect = if is_point { None } else { g.bounding_rect() };
    let empty = !is_point && rect.is_none();
    // bit 0: little endian; bits 1-3: envelope (1 = xy); bit 4: empty.
    let flags: u8 = 1 | if rect.is_some() { 1 << 1 } else { 0 } | if empty { 1 << 4 } else { 0 };
    out.push(flags);
    out.extend_from_slice(&srs_id.to_le_bytes());
    if let Some(r) = rect {
        for v in [r.min().x, r.max().x, r.min().y, r.max().y] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    write_wkb(&mut out, g);
    out
}

/// Decodes a GeoPackage geometry blob (header + WKB).
pub fn from_gpkg(b: &[u8]) -> Result<Geometry, String> {
    if b.len() < 8 || &b[0..2] != b"GP" {
        return Err("not a GeoPackage geometry blob (missing 'GP' magic)".into());
    }
    let flags = b[3];
    if flags & 0b0010_0000 != 0 {
        return Err("extended GeoPackage geometry types are not supported".into());
    }
    let env_doubles = match (flags >> 1) & 0b111 {
        0 => 0,
        1 => 4,
        2 | 3 => 6,
        4 => 8,
        e => return Err(format!("invalid GeoPackage envelope indicator {e}")),
    };
    let start = 8 + env_doubles * 8;
    if b.len() < start {
        return Err("truncated GeoPackage header".into());
    }
    from_wkb(&b[start..])
}

/// Decodes WKB (ISO or EWKB, either byte order).
pub fn from_wkb(b: &[u8]) -> Result<Geometry, String> {
    let mut r = Reader { b, pos: 0 };
    let g = r.geometry(0)?;
    Ok(g)
}

/// Encodes ISO WKB, little endian, 2D.
pub fn to_wkb(g: &Geometry) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_wkb(&mut out, g);
    out
}

fn write_wkb(out: &mut Vec<u8>, g: &Geometry) {
    fn header(out: &mut Vec<u8>, ty: u32) {
        out.push(1);
        out.extend_from_slice(&ty.to_le_bytes());
    }
    fn coord(out: &mut Vec<u8>, c: Coord) {
        out.extend_from_slice(&c.x.to_le_bytes());
        out.extend_from_slice(&c.y.to_le_bytes());
    }
    fn count(out: &mut Vec<u8>, n: usize) {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    fn line(out: &mut Vec<u8>, l: &LineString) {
        count(out, l.0.len());
        for c in &l.0 {
            coord(out, *c);
        }
    }
    fn polygon(out: &mut Vec<u8>, p: &Polygon) {
        if p.exterior().0.is_empty() {
            count(out, 0);
            return;
        }
        count(out, 1 + p.interiors().len());
        line(out, p.exterior());
        for i in p.interiors() {
            line(out, i);
        }
    }
    match g {
        Geometry::Point(p) => {
            header(out, 1);
            coord(out, p.0);
        }
        Geometry::LineString(l) => {
            header(out, 2);
            line(out, l);
        }
        Geometry::Line(l) => {
            header(out, 2);
            line(out, &LineString(vec![l.start, l.end]));
        }
        Geometry::Polygon(p) => {
            header(out, 3);
            polygon(out, p);
        }
        Geometry::Rect(r) => write_wkb(out, &Geometry::Polygon(r.to_polygon())),
        Geometry::Triangle(t) => write_wkb(out, &Geometry::Polygon(t.to_polygon())),
        Geometry::MultiPoint(m) => {
            header(out, 4);
            count(out, m.0.len());
            for p in &m.0 {
                write_wkb(out, &Geometry::Point(*p));
            }
        }
        Geometry::MultiLineString(m) => {
            header(out, 5);
            count(out, m.0.len());
            for l in &m.0 {
                header(out, 2);
                line(out, l);
            }
        }
        Geometry::MultiPolygon(m) => {
            header(out, 6);
            count(out, m.0.len());
            for p in &m.0 {
                header(out, 3);
                polygon(out, p);
            }
        }
        Geometry::GeometryCollection(c) => {
            header(out, 7);
            count(out, c.0.len());
            for g in &c.0 {
                write_wkb(out, g);
            }
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.pos + N;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or_else(|| "truncated WKB".to_string())?;
        self.pos = end;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, le: bool) -> Result<u32, String> {
        let a = self.take::<4>()?;
        Ok(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }

    fn f64(&mut self, le: bool) -> Result<f64, String> {
        let a = self.take::<8>()?;
        Ok(if le {
            f64::from_le_bytes(a)
        } else {
            f64::from_be_bytes(a)
        })
    }

    /// A count, checked against the bytes left so that a corrupt count cannot
    /// make us allocate gigabytes.
    fn count(&mut self, le: bool, min_item_bytes: usize) -> Result<usize, String> {
        let n = self.u32(le)? as usize;
        let left = self.b.len() - self.pos;
        if n.saturating_mul(min_item_bytes) > left {
            return Err(format!("WKB count {n} exceeds the data"));
        }
        Ok(n)
    }

    fn coord(&mut self, le: bool, extra: usize) -> Result<Coord, String> {
        let x = self.f64(le)?;
        let y = self.f64(le)?;
        for _ in 0..extra {
            self.f64(le)?;
        }
        Ok(Coord { x, y })
    }

    fn line(&mut self, le: bool, extra: usize) -> Result<LineString, String> {
        let n = self.count(le, 16 + 8 * extra)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.coord(le, extra)?);
        }
        Ok(LineString(v))
    }

    fn polygon(&mut self, le: bool, extra: usize) -> Result<Polygon, String> {
        let n = self.count(le, 4)?;
        if n == 0 {
            return Ok(Polygon::new(LineString(vec![]), vec![]));
        }
        let ext = self.line(le, extra)?;
        let mut holes = Vec::with_capacity(n - 1);
        for _ in 1..n {
            holes.push(self.line(le, extra)?);
        }
        Ok(Polygon::new(ext, holes))
    }

    fn geometry(&mut self, depth: usize) -> Result<Geometry, String> {
        if depth > 32 {
            return Err("WKB nested too deeply".into());
        }
        let order = self.take::<1>()?[0];
        let le = match order {
            0 => false,
            1 => true,
            o => return Err(format!("invalid WKB byte order {o}")),
        };
        let raw = self.u32(le)?;
        // EWKB: high bits flag Z (0x80000000), M (0x40000000), SRID (0x20000000).
        let mut extra = 0;
        if raw & 0x8000_0000 != 0 {
            extra += 1;
        }
        if raw & 0x4000_0000 != 0 {
            extra += 1;
        }
        if raw & 0x2000_0000 != 0 {
            self.u32(le)?; // SRID
        }
        let iso = raw & 0x0FFF_FFFF;
        let (ty, iso_extra) = (iso % 1000, iso / 1000);
        extra += match iso_extra {
            0 => 0,
            1 | 2 => 1,
            3 => 2,
            _ => return Err(format!("unknown WKB geometry type {raw}")),
        };
        Ok(match ty {
            1 => {
                let c = self.coord(le, extra)?;
                if c.x.is_nan() && c.y.is_nan() {
                    // The conventional empty point.
                    Geometry::MultiPoint(MultiPoint(vec![]))
                } else {
                    Geometry::Point(Point(c))
                }
            }
            2 => Geometry::LineString(self.line(le, extra)?),
            3 => Geometry::Polygon(self.polygon(le, extra)?),
            4..=7 => {
                let n = self.count(le, 5)?;
                let mut parts = Vec::with_capacity(n);
                for _ in 0..n {
                    parts.push(self.geometry(depth + 1)?);
                }
                let wrong = || format!("WKB multi-geometry type {ty} holds a part of another type");
                match ty {
                    4 => Geometry::MultiPoint(MultiPoint(
                        parts
                            .into_iter()
                            .map(|g| match g {
                                Geometry::Point(p) => Ok(p),
                                _ => Err(wrong()),
                            })
                            .collect::<Result<_, _>>()?,
                    )),
                    5 => Geometry::MultiLineString(MultiLineString(
                        parts
                            .into_iter()
                            .map(|g| match g {
                                Geometry::LineString(l) => Ok(l),
                                _ => Err(wrong()),
                            })
                            .collect::<Result<_, _>>()?,
                    )),
                    6 => Geometry::MultiPolygon(MultiPolygon(
                        parts
                            .into_iter()
                            .map(|g| match g {
                                Geometry::Polygon(p) => Ok(p),
                                _ => Err(wrong()),
                            })
                            .collect::<Result<_, _>>()?,
                    )),
                    _ => Geometry::GeometryCollection(GeometryCollection(parts)),
                }
            }
            _ => return Err(format!("unsupported WKB geometry type {raw}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{line_string, point, polygon};

    fn roundtrip(g: Geometry) {
        let blob = to_gpkg(&g, 4326);
        assert_eq!(from_gpkg(&blob).unwrap(), g);
        assert_eq!(from_wkb(&to_wkb(&g)).unwrap(), g);
    }

    #[test]
    fn roundtrips() {
        roundtrip(Geometry::Point(point!(x: 116.4, y: 39.9)));
        roundtrip(Geometry::LineString(
            line_string![(x: 0., y: 0.), (x: 1., y: 2.)],
        ));
        let p = polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 0., y: 0.)];
        roundtrip(Geometry::Polygon(p.clone()));
        roundtrip(Geometry::MultiPolygon(MultiPolygon(vec![p.clone(), p])));
    }

    #[test]
    fn point_blob_has_no_envelope_and_polygon_has_one() {
        let b = to_gpkg(&Geometry::Point(point!(x: 1., y: 2.)), 4326);
        assert_eq!(b.len(), 8 + 21);
        assert_eq!(b[3], 1);
        let p = polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 0., y: 0.)];
        let b = to_gpkg(&Geometry::Polygon(p), 4326);
        assert_eq!(b[3], 0b11);
        assert_eq!(f64::from_le_bytes(b[16..24].try_into().unwrap()), 1.0); // maxx
    }

    #[test]
    fn big_endian_and_z_are_read() {
        // Big-endian ISO Point Z (1001) at (1, 2, 3).
        let mut b = vec![0u8];
        b.extend_from_slice(&1001u32.to_be_bytes());
        for v in [1.0f64, 2.0, 3.0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(from_wkb(&b).unwrap(), Geometry::Point(point!(x: 1., y: 2.)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_gpkg(b"XX").is_err());
        assert!(from_wkb(&[1, 3, 0, 0, 0, 255, 255, 255, 255]).is_err());
        assert!(from_wkb(&[7]).is_err());
        assert!(from_wkb(&[1, 99, 0, 0, 0]).is_err());
    }
}
