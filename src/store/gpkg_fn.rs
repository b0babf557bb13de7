//! The SQL functions a GeoPackage's R-tree triggers call, registered on
//! every connection the store opens, and the R-tree index itself.
//!
//! The GeoPackage RTree Spatial Index extension (`gpkg_rtree_index`, GPKG
//! 1.3 Annex F.3) keeps one SQLite `rtree` virtual table per feature table,
//! `rtree_<table>_<column>`, current through six triggers. Those triggers
//! call `ST_IsEmpty`, `ST_MinX`, `ST_MaxX`, `ST_MinY` and `ST_MaxY` on the
//! geometry blob, functions that SQLite does not have: GDAL registers them on
//! its own connections, and any other writer must too, or every insert,
//! update and delete of a feature fails with "no such function". So the store
//! registers them here (through the C API: sqlx has no way to add scalar
//! functions), and keeps the index the same way GDAL and QGIS do: a desktop
//! user's QGIS reads a bbox through it instead of scanning the table (1,892 ms
//! against 25 ms per pan at city scale), and edits from either side keep it
//! current.
//!
//! The functions read the envelope from the blob's header when it has one
//! (every non-point geometry we write does) and decode the WKB otherwise
//! (points: 21 bytes). A blob that cannot be read counts as empty, so a
//! damaged row drops out of the index rather than failing the write.

use crate::store::wkb;
use geo::BoundingRect;
use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_int};

/// A blob's bounds as (min x, max x, min y, max y), or `None` when it is
/// empty or cannot be read.
fn bounds(b: &[u8]) -> Option<[f64; 4]> {
    if b.len() < 8 || &b[0..2] != b"GP" {
        return None;
    }
    let flags = b[3];
    if flags & 0b0001_0000 != 0 {
        return None; // the empty-geometry flag
    }
    let le = flags & 1 == 1;
    let has_envelope = (flags >> 1) & 0b111 != 0;
    if has_envelope && b.len() >= 40 {
        let mut v = [0f64; 4];
        for (k, x) in v.iter_mut().enumerate() {
            let at = 8 + k * 8;
            let raw: [u8; 8] = b[at..at + 8].try_into().ok()?;
            *x = if le {
                f64::from_le_bytes(raw)
            } else {
                f64::from_be_bytes(raw)
            };
        }
        if v.iter().all(|x| x.is_finite()) {
            return Some(v);
        }
    }
    let r = wkb::from_gpkg(b).ok()?.bounding_rect()?;
    let v = [r.min().x, r.max().x, r.min().y, r.max().y];
    v.iter().all(|x| x.is_finite()).then_some(v)
}

/// The first argument as a byte slice, when it is a blob.
///
/// # Safety
/// `argv` must be the argument vector SQLite passed to a scalar function
/// with at least one argument.
unsafe fn blob_arg<'a>(argv: *mut *mut ffi::sqlite3_value) -> Option<&'a [u8]> {
    // SAFETY: SQLite hands the function `argc` (checked ≥ 1 by registering
    // with nArg = 1) valid value pointers; the blob pointer stays valid
    // until the function returns, which outlives the slice's use.
    unsafe {
        let v = *argv;
        if ffi::sqlite3_value_type(v) != ffi::SQLITE_BLOB {
            return None;
        }
        let p = ffi::sqlite3_value_blob(v) as *const u8;
        let n = ffi::sqlite3_value_bytes(v);
        if p.is_null() || n <= 0 {
            return Some(&[]);
        }
        Some(std::slice::from_raw_parts(p, n as usize))
    }
}

unsafe extern "C" fn st_is_empty(
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: called by SQLite with one argument (see `register`).
    unsafe {
        match blob_arg(argv) {
            None => ffi::sqlite3_result_null(ctx),
            Some(b) => ffi::sqlite3_result_int(ctx, c_int::from(bounds(b).is_none())),
        }
    }
}

/// `ST_MinX` … `ST_MaxY`: the bound at index `K` of [`bounds`].
unsafe extern "C" fn st_bound<const K: usize>(
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: called by SQLite with one argument (see `register`).
    unsafe {
        match blob_arg(argv).and_then(bounds) {
            Some(v) => ffi::sqlite3_result_double(ctx, v[K]),
            None => ffi::sqlite3_result_null(ctx),
        }
    }
}

type ScalarFn =
    unsafe extern "C" fn(*mut ffi::sqlite3_context, c_int, *mut *mut ffi::sqlite3_value);

/// The functions, by the names the GeoPackage triggers use.
const FUNCTIONS: [(&CStr, ScalarFn); 5] = [
    (c"ST_IsEmpty", st_is_empty),
    (c"ST_MinX", st_bound::<0>),
    (c"ST_MaxX", st_bound::<1>),
    (c"ST_MinY", st_bound::<2>),
    (c"ST_MaxY", st_bound::<3>),
];

/// Registers the functions on one connection.
///
/// # Safety
/// `db` must be an open connection that no other thread uses during the
/// call (sqlx's `lock_handle` gives such a handle).
pub unsafe fn register(db: *mut ffi::sqlite3) -> Result<(), String> {
    for (name, f) in FUNCTIONS {
        // SAFETY: `db` is open and ours for the call; the name is a static
        // NUL-terminated string; no user data, so no destructor.
        let rc = unsafe {
            ffi::sqlite3_create_function_v2(
                db,
                name.as_ptr(),
                1,
                ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC,
                std::ptr::null_mut(),
                Some(f),
                None,
                None,
                None,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(format!(
                "cannot register the SQL function {} (SQLite error {rc})",
                name.to_string_lossy()
            ));
        }
    }
    Ok(())
}

/// The R-tree table of a feature table's `geom` column.
pub fn rtree_name(table: &str) -> String {
    format!("rtree_{table}_geom")
}

/// The six triggers of GPKG 1.3 Annex F.3 (`insert`, `update1`–`update4`,
/// `delete`) for `table`'s `geom` column, `fid` its primary key.
pub fn rtree_triggers(table: &str) -> Vec<(String, String)> {
    let t = super::gpkg::q(table);
    let r = rtree_name(table);
    let rq = super::gpkg::q(&r);
    let values =
        "NEW.fid, ST_MinX(NEW.geom), ST_MaxX(NEW.geom), ST_MinY(NEW.geom), ST_MaxY(NEW.geom)";
    let name = |s: &str| format!("{r}_{s}");
    let ddl = |s: &str, body: String| {
        (
            name(s),
            format!("CREATE TRIGGER {} {body}", super::gpkg::q(&name(s))),
        )
    };
    vec![
        ddl(
            "insert",
            format!(
                "AFTER INSERT ON {t} WHEN (NEW.geom NOT NULL AND NOT ST_IsEmpty(NEW.geom)) \
                 BEGIN INSERT OR REPLACE INTO {rq} VALUES ({values}); END"
            ),
        ),
        ddl(
            "update1",
            format!(
                "AFTER UPDATE OF geom ON {t} WHEN OLD.fid = NEW.fid AND \
                 (NEW.geom NOTNULL AND NOT ST_IsEmpty(NEW.geom)) \
                 BEGIN INSERT OR REPLACE INTO {rq} VALUES ({values}); END"
            ),
        ),
        ddl(
            "update2",
            format!(
                "AFTER UPDATE OF geom ON {t} WHEN OLD.fid = NEW.fid AND \
                 (NEW.geom ISNULL OR ST_IsEmpty(NEW.geom)) \
                 BEGIN DELETE FROM {rq} WHERE id = OLD.fid; END"
            ),
        ),
        ddl(
            "update3",
            format!(
                "AFTER UPDATE ON {t} WHEN OLD.fid != NEW.fid AND \
                 (NEW.geom NOTNULL AND NOT ST_IsEmpty(NEW.geom)) \
                 BEGIN DELETE FROM {rq} WHERE id = OLD.fid; \
                 INSERT OR REPLACE INTO {rq} VALUES ({values}); END"
            ),
        ),
        ddl(
            "update4",
            format!(
                "AFTER UPDATE ON {t} WHEN OLD.fid != NEW.fid AND \
                 (NEW.geom ISNULL OR ST_IsEmpty(NEW.geom)) \
                 BEGIN DELETE FROM {rq} WHERE id IN (OLD.fid, NEW.fid); END"
            ),
        ),
        ddl(
            "delete",
            format!(
                "AFTER DELETE ON {t} WHEN OLD.geom NOT NULL \
                 BEGIN DELETE FROM {rq} WHERE id = OLD.fid; END"
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Geometry, point, polygon};

    #[test]
    fn bounds_from_header_and_from_wkb() {
        let p = wkb::to_gpkg(&Geometry::Point(point!(x: 112.5, y: 28.25)), 4326);
        assert_eq!(bounds(&p), Some([112.5, 112.5, 28.25, 28.25]));
        let poly =
            Geometry::Polygon(polygon![(x: 1.0, y: 2.0), (x: 3.0, y: 2.0), (x: 3.0, y: 5.0)]);
        assert_eq!(
            bounds(&wkb::to_gpkg(&poly, 4326)),
            Some([1.0, 3.0, 2.0, 5.0])
        );
        let empty = Geometry::GeometryCollection(Default::default());
        assert_eq!(bounds(&wkb::to_gpkg(&empty, 4326)), None);
        assert_eq!(bounds(b"GP\0\x01garbage"), None);
        assert_eq!(bounds(b""), None);
        // A point with NaN coordinates is GeoPackage's empty point.
        let nan = wkb::to_gpkg(&Geometry::Point(point!(x: f64::NAN, y: f64::NAN)), 4326);
        assert_eq!(bounds(&nan), None);
    }
}
