//! CQL2 filters (OGC 21-065r2), compiled against a layer's schema.
//!
//! The `cql2` crate parses cql2-text and cql2-json into an expression tree;
//! [`compile`] turns that tree into a [`Filter`] whose property references are
//! schema indexes and whose literals are already typed (numbers, text,
//! instants in milliseconds, prepared geometries). Evaluating a filter on a
//! feature then allocates nothing for most predicates, so a filter runs at
//! R-tree speed over millions of points. Everything a filter could get wrong
//! (an unknown property, comparing text with a number, an invalid geometry, a
//! function we do not have) is found at compile time and reported by name.
//!
//! Logic is CQL2's three-valued logic: a comparison with a null is unknown,
//! `NOT unknown` is unknown, and a feature matches only when the whole filter
//! is true.
//!
//! Supported: basic CQL2 (comparisons, AND/OR/NOT, IS NULL), advanced
//! comparisons (LIKE, BETWEEN, IN), CASEI, property–property comparisons,
//! arithmetic (+ - * / % div ^), every spatial function (S_INTERSECTS,
//! S_EQUALS, S_DISJOINT, S_TOUCHES, S_WITHIN, S_OVERLAPS, S_CROSSES,
//! S_CONTAINS) on points, lines, polygons, collections and BBOX, and every
//! temporal function (T_AFTER … T_INTERSECTS) on instants, dates and
//! intervals. Not supported (a 400 says so): ACCENTI and array functions
//! (no layer has array properties).

use crate::index::{rect_intersection, rect_union};
use crate::model::value::DAY_MS;
pub use crate::model::value::parse_instant;
use crate::model::{LayerDef, PropType, Value};
use cql2::Expr;
use geo::{
    BoundingRect, Contains, Coord, CoordsIter, Geometry, Intersects, Point, Rect, Relate,
    Validation,
};
use std::borrow::Cow;

/// How deeply a filter may nest before it is refused (keeps recursion bounded).
const MAX_DEPTH: usize = 64;
/// Most vertices the geometries of one filter may have together.
pub const MAX_VERTICES: usize = 10_000;
/// Most values of one `IN` list.
pub const MAX_IN_ITEMS: usize = 10_000;
/// Longest filter text accepted, bytes.
pub const MAX_FILTER_BYTES: usize = 1024 * 1024;

/// The language a filter is written in (`filter-lang`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Text,
    Json,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "cql2-text" => Some(Lang::Text),
            "cql2-json" => Some(Lang::Json),
            _ => None,
        }
    }
}

/// Parses a filter in either encoding. The error says where it went wrong.
///
/// Every filter is bounded: at most [`MAX_FILTER_BYTES`] long and nested
/// at most [`MAX_DEPTH`] deep, found in linear time before anything deep is
/// built, so no input can make parsing recurse or backtrack without bound.
pub fn parse(src: &str, lang: Lang) -> Result<Expr, String> {
    if src.trim().is_empty() {
        return Err("filter is empty".into());
    }
    if src.len() > MAX_FILTER_BYTES {
        return Err(format!(
            "filter is {} bytes long; at most {MAX_FILTER_BYTES}",
            src.len()
        ));
    }
    match lang {
        // Our own parser, not `cql2::parse_text`: the crate's pest grammar
        // backtracks ×2 per level of a failing nested input (18 bytes of
        // `(` take 1.1 s, 24 bytes 50 s) and recurses without a bound (725
        // bytes of balanced parentheses overflow a 2 MiB stack). This one is
        // linear, counts depth as it descends, and builds the same `Expr`.
        Lang::Text => super::cql2_text::parse_text(
            src,
            &super::cql2_text::Limits {
                max_len: MAX_FILTER_BYTES,
                max_depth: MAX_TEXT_DEPTH,
            },
        )
        .map_err(|e| format!("filter is not valid cql2-text: {e}")),
        Lang::Json => {
            check_json_depth(src)?;
            cql2::parse_json(src).map_err(|e| format!("filter is not valid cql2-json: {e}"))
        }
    }
}

/// How deeply cql2-text may nest: [`super::cql2_text`] counts every level
/// as it enters it, so parsing never recurses deeper.
pub const MAX_TEXT_DEPTH: usize = MAX_DEPTH;

/// Refuses cql2-json nested deeper than the compiler accepts, in one pass
/// over the text (brackets outside strings), before serde builds anything.
fn check_json_depth(src: &str) -> Result<(), String> {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for (at, c) in src.bytes().enumerate() {
        if in_str {
            match c {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > 3 * MAX_DEPTH {
                    return Err(format!(
                        "filter nests deeper than {MAX_DEPTH} levels (at byte {at})"
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a cql2-json filter already decoded as JSON.
pub fn parse_value(v: &serde_json::Value) -> Result<Expr, String> {
    // serde_json's own parser stops at 128 levels, so `v` is at most that
    // deep; the compiler refuses beyond MAX_DEPTH with a message.
    serde_json::from_value::<Expr>(v.clone())
        .map_err(|e| format!("filter is not valid cql2-json: {e}"))
}

/// A compiled filter for one layer.
#[derive(Clone, Debug)]
pub struct Filter {
    root: Node,
    /// Every matching feature's envelope intersects this rectangle (from the
    /// spatial predicates the whole filter requires), so callers can narrow
    /// by R-tree first. None: no such bound.
    pub envelope: Option<Rect>,
}

impl Filter {
    /// Whether the feature with these properties and geometry matches.
    pub fn matches(&self, id: i64, geometry: &Geometry, props: &[Value]) -> bool {
        let f = Feat {
            id,
            geometry,
            props,
        };
        self.root.eval(&f) == Some(true)
    }
}

struct Feat<'a> {
    id: i64,
    geometry: &'a Geometry,
    props: &'a [Value],
}

/// Compiles a parsed filter against a layer's schema.
pub fn compile(e: &Expr, def: &LayerDef) -> Result<Filter, String> {
    let cx = Cx { def };
    let root = cx.predicate(e, 0)?;
    let envelope = root.envelope();
    Ok(Filter { root, envelope })
}

/// The names a filter may use on a layer: its properties, plus `id` (unless
/// a property has that name) and `geometry` (alias `geom`).
pub fn queryable_names(def: &LayerDef) -> Vec<String> {
    let mut v: Vec<String> = def.properties.iter().map(|p| p.name.clone()).collect();
    if def.prop_index("id").is_none() {
        v.insert(0, "id".into());
    }
    v.push("geometry".into());
    v
}

// ---------------------------------------------------------------------------
// The compiled tree.

#[derive(Clone, Debug)]
enum Node {
    Const(Option<bool>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Cmp(Cmp, Operand, Operand),
    Like {
        value: Operand,
        pattern: Vec<Tok>,
        casei: bool,
    },
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    /// `IN` over a long list of text literals: a hash lookup per feature.
    InText(Operand, std::collections::HashSet<String>),
    /// `IN` over a long list of number or instant literals (sorted bits).
    InNum(Operand, Vec<f64>),
    InTime(Operand, Vec<i64>),
    IsNull(Operand),
    Spatial(SpatialOp, GeomOperand, GeomOperand),
    Temporal(TemporalOp, TimeOperand, TimeOperand),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A scalar operand.
#[derive(Clone, Debug)]
enum Operand {
    Prop(usize, PropType),
    Id,
    Lit(Lit),
    Casei(Box<Operand>),
    Arith(Arith, Box<Operand>, Box<Operand>),
}

#[derive(Clone, Debug)]
enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Text(String),
    /// Milliseconds since the epoch.
    Time(i64),
}

#[derive(Clone, Copy, Debug)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    IntDiv,
    Pow,
}

/// The static type of an operand, for checking comparisons at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Null,
    Bool,
    Num,
    Text,
    Time,
}

/// A value during evaluation.
#[derive(Debug, PartialEq)]
enum V<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Text(Cow<'a, str>),
    Time(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpatialOp {
    Intersects,
    Equals,
    Disjoint,
    Touches,
    Within,
    Overlaps,
    Crosses,
    Contains,
}

#[derive(Clone, Debug)]
enum GeomOperand {
    Prop,
    /// A literal, its envelope, and for a polygon of many vertices a raster
    /// that decides most point tests without its edges (built once, at
    /// compile time).
    Lit(Box<Geometry>, Rect, Option<std::sync::Arc<super::Raster>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TemporalOp {
    After,
    Before,
    Contains,
    Disjoint,
    During,
    Equals,
    FinishedBy,
    Finishes,
    Intersects,
    Meets,
    MetBy,
    OverlappedBy,
    Overlaps,
    StartedBy,
    Starts,
}

/// An instant or an interval operand of a temporal function. Instants are
/// intervals whose ends are equal; a date is the whole day.
#[derive(Clone, Debug)]
enum TimeOperand {
    Prop(usize, PropType),
    Lit(i64, i64),
    /// An interval with one or two property ends (`..` ends are literals).
    Interval(Box<TimeOperand>, Box<TimeOperand>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Char(char),
    One,
    Any,
}

// ---------------------------------------------------------------------------
// Compilation.

struct Cx<'a> {
    def: &'a LayerDef,
}

enum Name {
    Prop(usize, PropType),
    Id,
    Geometry,
}

fn arity(op: &str, args: &[Box<Expr>], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "{op} takes {n} argument{}, not {}",
            if n == 1 { "" } else { "s" },
            args.len()
        ))
    }
}

impl Cx<'_> {
    fn name(&self, property: &str) -> Result<Name, String> {
        if let Some(i) = self.def.prop_index(property) {
            return Ok(Name::Prop(i, self.def.properties[i].ty));
        }
        match property {
            "id" => Ok(Name::Id),
            "geometry" | "geom" => Ok(Name::Geometry),
            _ => Err(format!(
                "unknown property {property:?} in filter: layer {} has {}",
                self.def.name,
                queryable_names(self.def).join(", ")
            )),
        }
    }

    fn predicate(&self, e: &Expr, depth: usize) -> Result<Node, String> {
        if depth > MAX_DEPTH {
            return Err(format!("filter nests deeper than {MAX_DEPTH} levels"));
        }
        let d = depth + 1;
        match e {
            Expr::Bool(b) => Ok(Node::Const(Some(*b))),
            Expr::Property { property } => match self.name(property)? {
                Name::Prop(i, PropType::Bool) => Ok(Node::Cmp(
                    Cmp::Eq,
                    Operand::Prop(i, PropType::Bool),
                    Operand::Lit(Lit::Bool(true)),
                )),
                _ => Err(format!(
                    "property {property:?} is not a boolean, so it is not a condition by itself"
                )),
            },
            Expr::Operation { op, args } => self.operation(op, args, d),
            other => Err(format!(
                "{} is not a condition",
                other.to_text().unwrap_or_else(|_| format!("{other:?}"))
            )),
        }
    }

    fn operation(&self, op: &str, args: &[Box<Expr>], d: usize) -> Result<Node, String> {
        let cmp = match op {
            "=" => Some(Cmp::Eq),
            "<>" => Some(Cmp::Ne),
            "<" => Some(Cmp::Lt),
            "<=" => Some(Cmp::Le),
            ">" => Some(Cmp::Gt),
            ">=" => Some(Cmp::Ge),
            _ => None,
        };
        if let Some(c) = cmp {
            arity(op, args, 2)?;
            let (a, ta) = self.operand(&args[0], d)?;
            let (b, tb) = self.operand(&args[1], d)?;
            let (a, b) = comparable(op, a, ta, b, tb)?;
            if matches!(c, Cmp::Lt | Cmp::Le | Cmp::Gt | Cmp::Ge) && (ta == Ty::Bool) {
                return Err(format!("{op} does not order booleans"));
            }
            return Ok(Node::Cmp(c, a, b));
        }
        if let Some(sop) = spatial_op(op) {
            arity(op, args, 2)?;
            let a = self.geom_operand(&args[0])?;
            let b = self.geom_operand(&args[1])?;
            let mut vertices = 0;
            for g in [&a, &b] {
                if let GeomOperand::Lit(g, _, _) = g {
                    vertices += g.coords_count();
                }
            }
            if vertices > MAX_VERTICES {
                return Err(format!(
                    "the geometries of the filter have {vertices} vertices; at most {MAX_VERTICES}"
                ));
            }
            return Ok(match (&a, &b) {
                (GeomOperand::Lit(..), GeomOperand::Lit(..)) => {
                    Node::Const(Some(spatial(sop, &a.lit_geom(), &b.lit_geom())))
                }
                _ => Node::Spatial(sop, a, b),
            });
        }
        if let Some(top) = temporal_op(op) {
            arity(op, args, 2)?;
            let a = self.time_operand(&args[0], d)?;
            let b = self.time_operand(&args[1], d)?;
            return Ok(Node::Temporal(top, a, b));
        }
        match op {
            "and" | "or" => {
                if args.is_empty() {
                    return Err(format!("{op} needs at least one argument"));
                }
                let v = args
                    .iter()
                    .map(|a| self.predicate(a, d))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if op == "and" {
                    Node::And(v)
                } else {
                    Node::Or(v)
                })
            }
            "not" => {
                arity(op, args, 1)?;
                Ok(Node::Not(Box::new(self.predicate(&args[0], d)?)))
            }
            "isNull" => {
                arity("IS NULL", args, 1)?;
                if let Expr::Property { property } = args[0].as_ref()
                    && let Name::Geometry = self.name(property)?
                {
                    return Ok(Node::Const(Some(false)));
                }
                Ok(Node::IsNull(self.operand(&args[0], d)?.0))
            }
            "like" => {
                arity("LIKE", args, 2)?;
                let (value, tv) = self.operand(&args[0], d)?;
                if !matches!(tv, Ty::Text | Ty::Null) {
                    return Err("LIKE compares text; its left side is not text".into());
                }
                let (pat, casei_pat) = match args[1].as_ref() {
                    Expr::Literal(s) => (s.clone(), false),
                    Expr::Operation { op, args } if op == "casei" && args.len() == 1 => {
                        match args[0].as_ref() {
                            Expr::Literal(s) => (s.clone(), true),
                            _ => return Err("the pattern of LIKE must be a text literal".into()),
                        }
                    }
                    _ => return Err("the pattern of LIKE must be a text literal".into()),
                };
                let casei = casei_pat || matches!(value, Operand::Casei(_));
                let pat = if casei { pat.to_lowercase() } else { pat };
                Ok(Node::Like {
                    value,
                    pattern: like_pattern(&pat),
                    casei,
                })
            }
            "between" => {
                arity("BETWEEN", args, 3)?;
                let (x, tx) = self.operand(&args[0], d)?;
                let (lo, tl) = self.operand(&args[1], d)?;
                let (hi, th) = self.operand(&args[2], d)?;
                let (x, lo) = comparable("BETWEEN", x, tx, lo, tl)?;
                let (x, hi) = comparable("BETWEEN", x, tx, hi, th)?;
                if tx == Ty::Bool {
                    return Err("BETWEEN does not order booleans".into());
                }
                Ok(Node::Between(x, lo, hi))
            }
            "in" => {
                arity("IN", args, 2)?;
                let (x, tx) = self.operand(&args[0], d)?;
                let Expr::Array(items) = args[1].as_ref() else {
                    return Err("IN needs a list: x IN (a, b, …)".into());
                };
                if items.len() > MAX_IN_ITEMS {
                    return Err(format!(
                        "the IN list has {} values; at most {MAX_IN_ITEMS}",
                        items.len()
                    ));
                }
                let mut list = Vec::with_capacity(items.len());
                let mut x = x;
                for it in items {
                    let (o, t) = self.operand(it, d)?;
                    let (nx, no) = comparable("IN", x, tx, o, t)?;
                    x = nx;
                    list.push(no);
                }
                Ok(in_node(x, list))
            }
            "casei" | "+" | "-" | "*" | "/" | "%" | "^" | "div" => {
                Err(format!("{op}(…) is a value, not a condition"))
            }
            "accenti" => Err("ACCENTI is not supported by this server".into()),
            a if a.starts_with("a_") => Err(format!(
                "{a}: array functions are not supported (no layer has array properties)"
            )),
            other => Err(format!("unknown function {other:?} in filter")),
        }
    }

    fn operand(&self, e: &Expr, depth: usize) -> Result<(Operand, Ty), String> {
        if depth > MAX_DEPTH {
            return Err(format!("filter nests deeper than {MAX_DEPTH} levels"));
        }
        let d = depth + 1;
        Ok(match e {
            Expr::Null => (Operand::Lit(Lit::Null), Ty::Null),
            Expr::Bool(b) => (Operand::Lit(Lit::Bool(*b)), Ty::Bool),
            Expr::Float(f) => (Operand::Lit(Lit::Num(*f)), Ty::Num),
            Expr::Literal(s) => (Operand::Lit(Lit::Text(s.clone())), Ty::Text),
            Expr::Timestamp { timestamp } | Expr::Date { date: timestamp } => {
                let s = literal_text(timestamp)?;
                let t = parse_instant(&s).ok_or_else(|| format!("{s:?} is not a valid instant"))?;
                (Operand::Lit(Lit::Time(t)), Ty::Time)
            }
            Expr::Property { property } => match self.name(property)? {
                Name::Prop(i, ty) => (Operand::Prop(i, ty), prop_ty(ty)),
                Name::Id => (Operand::Id, Ty::Num),
                Name::Geometry => {
                    return Err(format!(
                        "{property} is a geometry: compare it with S_INTERSECTS and the other spatial functions"
                    ));
                }
            },
            Expr::Operation { op, args } if op == "casei" => {
                arity("CASEI", args, 1)?;
                let (o, t) = self.operand(&args[0], d)?;
                if !matches!(t, Ty::Text | Ty::Null) {
                    return Err("CASEI takes text".into());
                }
                (Operand::Casei(Box::new(o)), Ty::Text)
            }
            Expr::Operation { op, args } if op == "accenti" => {
                let _ = args;
                return Err("ACCENTI is not supported by this server".into());
            }
            Expr::Operation { op, args } if arith_op(op).is_some() => {
                let a = arith_op(op).unwrap_or(Arith::Add);
                if args.len() < 2 {
                    return Err(format!("{op} takes two operands"));
                }
                let mut it = args.iter();
                let first = it.next().map(|e| self.operand(e, d)).transpose()?;
                let Some((mut acc, ta)) = first else {
                    return Err(format!("{op} takes two operands"));
                };
                if !matches!(ta, Ty::Num | Ty::Null) {
                    return Err(format!("{op} takes numbers"));
                }
                for e in it {
                    let (b, tb) = self.operand(e, d)?;
                    if !matches!(tb, Ty::Num | Ty::Null) {
                        return Err(format!("{op} takes numbers"));
                    }
                    acc = Operand::Arith(a, Box::new(acc), Box::new(b));
                }
                (acc, Ty::Num)
            }
            Expr::Operation { op, .. } => {
                return Err(format!("{op}(…) is not a value that can be compared here"));
            }
            Expr::Geometry(_) | Expr::BBox { .. } => {
                return Err(
                    "a geometry can only be an argument of a spatial function (S_INTERSECTS …)"
                        .into(),
                );
            }
            Expr::Interval { .. } => {
                return Err(
                    "an interval can only be an argument of a temporal function (T_INTERSECTS …)"
                        .into(),
                );
            }
            Expr::Array(_) => return Err("a list is only allowed after IN".into()),
        })
    }

    fn geom_operand(&self, e: &Expr) -> Result<GeomOperand, String> {
        let g = match e {
            Expr::Property { property } => match self.name(property)? {
                Name::Geometry => return Ok(GeomOperand::Prop),
                _ => {
                    return Err(format!(
                        "{property} is not the geometry; spatial functions take `geometry` and a geometry literal"
                    ));
                }
            },
            Expr::Geometry(cql2::Geometry::GeoJSON(g)) => {
                Geometry::try_from(g.clone()).map_err(|e| format!("geometry in filter: {e}"))?
            }
            Expr::Geometry(cql2::Geometry::Wkt(s)) => {
                <Geometry as wkt::TryFromWkt<f64>>::try_from_wkt_str(s)
                    .map_err(|e| format!("geometry in filter is not valid WKT: {e}"))?
            }
            Expr::BBox { bbox } => {
                let n: Vec<f64> = bbox
                    .iter()
                    .map(|b| match b.as_ref() {
                        Expr::Float(f) => Ok(*f),
                        _ => Err("BBOX takes numbers".to_string()),
                    })
                    .collect::<Result<_, _>>()?;
                let (w, s, e, nn) = match n.as_slice() {
                    [w, s, e, n] => (*w, *s, *e, *n),
                    [w, s, _, e, n, _] => (*w, *s, *e, *n),
                    _ => return Err("BBOX takes 4 (or 6) numbers".into()),
                };
                if !(w <= e && s <= nn) {
                    return Err(format!(
                        "BBOX({w},{s},{e},{nn}) has west > east or south > north"
                    ));
                }
                Geometry::Rect(Rect::new(Coord { x: w, y: s }, Coord { x: e, y: nn }))
            }
            _ => {
                return Err(
                    "spatial functions take `geometry` and a geometry literal (WKT, GeoJSON or BBOX)"
                        .into(),
                );
            }
        };
        // Counted before anything costlier than the count is done with it.
        let n = g.coords_count();
        if n > MAX_VERTICES {
            return Err(format!(
                "the geometry in the filter has {n} vertices; at most {MAX_VERTICES}"
            ));
        }
        check_literal_geometry(&g)?;
        let rect = g
            .bounding_rect()
            .ok_or("the geometry in the filter is empty")?;
        let raster = match &g {
            Geometry::Polygon(p) if n > 32 => {
                super::Raster::build(&geo::MultiPolygon(vec![p.clone()])).map(std::sync::Arc::new)
            }
            Geometry::MultiPolygon(m) if n > 32 => super::Raster::build(m).map(std::sync::Arc::new),
            _ => None,
        };
        Ok(GeomOperand::Lit(Box::new(g), rect, raster))
    }

    fn time_operand(&self, e: &Expr, d: usize) -> Result<TimeOperand, String> {
        if d > MAX_DEPTH {
            return Err(format!("filter nests deeper than {MAX_DEPTH} levels"));
        }
        match e {
            Expr::Property { property } => match self.name(property)? {
                Name::Prop(i, ty @ (PropType::DateTime | PropType::Date)) => {
                    Ok(TimeOperand::Prop(i, ty))
                }
                _ => Err(format!(
                    "{property} is not a date or time property, so temporal functions do not apply"
                )),
            },
            Expr::Timestamp { timestamp } => {
                let s = literal_text(timestamp)?;
                let t = parse_instant(&s).ok_or_else(|| format!("{s:?} is not a valid instant"))?;
                Ok(TimeOperand::Lit(t, t))
            }
            Expr::Date { date } => {
                let s = literal_text(date)?;
                let t = parse_instant(&s).ok_or_else(|| format!("{s:?} is not a valid date"))?;
                Ok(TimeOperand::Lit(t, t + DAY_MS - 1))
            }
            Expr::Literal(s) => {
                let t = parse_instant(s)
                    .ok_or_else(|| format!("{s:?} is not a valid instant or date"))?;
                Ok(if s.len() == 10 {
                    TimeOperand::Lit(t, t + DAY_MS - 1)
                } else {
                    TimeOperand::Lit(t, t)
                })
            }
            Expr::Interval { interval } => {
                let [a, b] = interval.as_slice() else {
                    return Err("INTERVAL takes two ends".into());
                };
                let end = |x: &Expr, start: bool| -> Result<TimeOperand, String> {
                    if let Expr::Literal(s) = x
                        && s == ".."
                    {
                        return Ok(if start {
                            TimeOperand::Lit(i64::MIN, i64::MIN)
                        } else {
                            TimeOperand::Lit(i64::MAX, i64::MAX)
                        });
                    }
                    self.time_operand(x, d + 1)
                };
                let (a, b) = (end(a, true)?, end(b, false)?);
                if let (TimeOperand::Lit(s, _), TimeOperand::Lit(_, e)) = (&a, &b) {
                    if s > e {
                        return Err("INTERVAL ends before it starts".into());
                    }
                    return Ok(TimeOperand::Lit(*s, *e));
                }
                Ok(TimeOperand::Interval(Box::new(a), Box::new(b)))
            }
            _ => Err(
                "temporal functions take a date/time property, TIMESTAMP, DATE or INTERVAL".into(),
            ),
        }
    }
}

fn literal_text(e: &Expr) -> Result<String, String> {
    match e {
        Expr::Literal(s) => Ok(s.clone()),
        _ => Err("TIMESTAMP and DATE take a text literal".into()),
    }
}

fn prop_ty(t: PropType) -> Ty {
    match t {
        PropType::Bool => Ty::Bool,
        PropType::Int | PropType::Float => Ty::Num,
        PropType::Text => Ty::Text,
        PropType::DateTime | PropType::Date => Ty::Time,
    }
}

/// Checks that two operands can be compared; text literals compared with
/// instants are read as instants.
/// `x IN (list)`: a set lookup when the list is long and all literals of
/// one type (the answer is the same as comparing one by one: a list of
/// non-null literals is unknown only when `x` is null or of another type).
fn in_node(x: Operand, list: Vec<Operand>) -> Node {
    if list.len() < 16 {
        return Node::In(x, list);
    }
    let texts: Option<std::collections::HashSet<String>> = list
        .iter()
        .map(|o| match o {
            Operand::Lit(Lit::Text(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    if let Some(set) = texts {
        return Node::InText(x, set);
    }
    let nums: Option<Vec<f64>> = list
        .iter()
        .map(|o| match o {
            Operand::Lit(Lit::Num(n)) if n.is_finite() => Some(*n),
            _ => None,
        })
        .collect();
    if let Some(mut v) = nums {
        v.sort_by(f64::total_cmp);
        return Node::InNum(x, v);
    }
    let times: Option<Vec<i64>> = list
        .iter()
        .map(|o| match o {
            Operand::Lit(Lit::Time(t)) => Some(*t),
            _ => None,
        })
        .collect();
    if let Some(mut v) = times {
        v.sort_unstable();
        return Node::InTime(x, v);
    }
    Node::In(x, list)
}

fn comparable(
    op: &str,
    a: Operand,
    ta: Ty,
    b: Operand,
    tb: Ty,
) -> Result<(Operand, Operand), String> {
    let to_time = |o: Operand| -> Result<Operand, String> {
        match o {
            Operand::Lit(Lit::Text(s)) => parse_instant(&s)
                .map(|t| Operand::Lit(Lit::Time(t)))
                .ok_or_else(|| {
                    format!("{s:?} is not a date or time, so {op} cannot compare it with one")
                }),
            o => Ok(o),
        }
    };
    match (ta, tb) {
        (x, y) if x == y => Ok((a, b)),
        (Ty::Null, _) | (_, Ty::Null) => Ok((a, b)),
        (Ty::Time, Ty::Text) => Ok((a, to_time(b)?)),
        (Ty::Text, Ty::Time) => Ok((to_time(a)?, b)),
        (x, y) => Err(format!(
            "{op} compares {} with {}: the types differ",
            ty_name(x),
            ty_name(y)
        )),
    }
}

fn ty_name(t: Ty) -> &'static str {
    match t {
        Ty::Null => "null",
        Ty::Bool => "a boolean",
        Ty::Num => "a number",
        Ty::Text => "text",
        Ty::Time => "a date/time",
    }
}

fn spatial_op(op: &str) -> Option<SpatialOp> {
    Some(match op {
        "s_intersects" => SpatialOp::Intersects,
        "s_equals" => SpatialOp::Equals,
        "s_disjoint" => SpatialOp::Disjoint,
        "s_touches" => SpatialOp::Touches,
        "s_within" => SpatialOp::Within,
        "s_overlaps" => SpatialOp::Overlaps,
        "s_crosses" => SpatialOp::Crosses,
        "s_contains" => SpatialOp::Contains,
        _ => return None,
    })
}

fn temporal_op(op: &str) -> Option<TemporalOp> {
    use TemporalOp::*;
    Some(match op {
        "t_after" => After,
        "t_before" => Before,
        "t_contains" => Contains,
        "t_disjoint" => Disjoint,
        "t_during" => During,
        "t_equals" => Equals,
        "t_finishedBy" => FinishedBy,
        "t_finishes" => Finishes,
        "t_intersects" => Intersects,
        "t_meets" => Meets,
        "t_metBy" => MetBy,
        "t_overlappedBy" => OverlappedBy,
        "t_overlaps" => Overlaps,
        "t_startedBy" => StartedBy,
        "t_starts" => Starts,
        _ => return None,
    })
}

fn arith_op(op: &str) -> Option<Arith> {
    Some(match op {
        "+" => Arith::Add,
        "-" => Arith::Sub,
        "*" => Arith::Mul,
        "/" => Arith::Div,
        "%" => Arith::Mod,
        "div" => Arith::IntDiv,
        "^" => Arith::Pow,
        _ => return None,
    })
}

/// Literal geometries must be finite lon/lat and valid (no self-intersecting
/// rings), as for query areas.
fn check_literal_geometry(g: &Geometry) -> Result<(), String> {
    for c in g.coords_iter() {
        if !(c.x.is_finite() && c.y.is_finite()) || c.x.abs() > 180.0 || c.y.abs() > 90.0 {
            return Err(format!(
                "geometry in filter has coordinate ({}, {}) outside lon/lat range",
                c.x, c.y
            ));
        }
    }
    match g {
        Geometry::Rect(_) => Ok(()),
        // Polygons in O(n log n) (geo's check compares every pair of
        // segments: 0.7 s for 10,000 vertices).
        Geometry::Polygon(p) => super::valid::check_area(&geo::MultiPolygon(vec![p.clone()]))
            .map_err(|e| format!("geometry in filter is invalid: {e}")),
        Geometry::MultiPolygon(m) => {
            super::valid::check_area(m).map_err(|e| format!("geometry in filter is invalid: {e}"))
        }
        _ => g
            .check_validation()
            .map_err(|e| format!("geometry in filter is invalid: {e}")),
    }
}

fn like_pattern(p: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut it = p.chars();
    while let Some(c) = it.next() {
        out.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => Tok::Char(it.next().unwrap_or('\\')),
            c => Tok::Char(c),
        });
    }
    out
}

/// Glob matching with backtracking to the last `%` (linear in practice).
fn like_match(pat: &[Tok], s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < chars.len() {
        match pat.get(p) {
            Some(Tok::Any) => {
                star = Some((p, i));
                p += 1;
            }
            Some(Tok::One) => {
                p += 1;
                i += 1;
            }
            Some(Tok::Char(c)) if *c == chars[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|t| *t == Tok::Any)
}

// ---------------------------------------------------------------------------
// Time.

// ---------------------------------------------------------------------------
// Evaluation.

fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

impl Node {
    fn eval(&self, f: &Feat<'_>) -> Option<bool> {
        match self {
            Node::Const(b) => *b,
            Node::And(v) => {
                let mut acc = Some(true);
                for n in v {
                    acc = and3(acc, n.eval(f));
                    if acc == Some(false) {
                        break;
                    }
                }
                acc
            }
            Node::Or(v) => {
                let mut acc = Some(false);
                for n in v {
                    match n.eval(f) {
                        Some(true) => return Some(true),
                        None => acc = None,
                        Some(false) => {}
                    }
                }
                acc
            }
            Node::Not(n) => n.eval(f).map(|b| !b),
            Node::Cmp(c, a, b) => compare(&a.eval(f), &b.eval(f)).map(|o| match c {
                Cmp::Eq => o.is_eq(),
                Cmp::Ne => o.is_ne(),
                Cmp::Lt => o.is_lt(),
                Cmp::Le => o.is_le(),
                Cmp::Gt => o.is_gt(),
                Cmp::Ge => o.is_ge(),
            }),
            Node::Like {
                value,
                pattern,
                casei,
            } => match value.eval(f) {
                V::Text(s) => Some(if *casei {
                    like_match(pattern, &s.to_lowercase())
                } else {
                    like_match(pattern, &s)
                }),
                _ => None,
            },
            Node::Between(x, lo, hi) => {
                let x = x.eval(f);
                let a = compare(&x, &lo.eval(f)).map(|o| o.is_ge());
                let b = compare(&x, &hi.eval(f)).map(|o| o.is_le());
                and3(a, b)
            }
            Node::In(x, list) => {
                let x = x.eval(f);
                let mut acc = Some(false);
                for o in list {
                    match compare(&x, &o.eval(f)) {
                        Some(std::cmp::Ordering::Equal) => return Some(true),
                        None => acc = None,
                        Some(_) => {}
                    }
                }
                acc
            }
            Node::InText(x, set) => match x.eval(f) {
                V::Text(s) => Some(set.contains(s.as_ref())),
                _ => None,
            },
            Node::InNum(x, v) => match x.eval(f) {
                // -0.0 equals 0.0, as compare says.
                V::Num(n) => Some(
                    v.binary_search_by(|p| p.partial_cmp(&n).unwrap_or(std::cmp::Ordering::Less))
                        .is_ok(),
                ),
                _ => None,
            },
            Node::InTime(x, v) => match x.eval(f) {
                V::Time(t) => Some(v.binary_search(&t).is_ok()),
                _ => None,
            },
            Node::IsNull(o) => Some(matches!(o.eval(f), V::Null)),
            Node::Spatial(op, a, b) => Some(spatial_node(*op, a, b, f)),
            Node::Temporal(op, a, b) => {
                let a = a.eval(f)?;
                let b = b.eval(f)?;
                Some(temporal(*op, a, b))
            }
        }
    }

    /// A rectangle every match's envelope must intersect.
    fn envelope(&self) -> Option<Rect> {
        match self {
            Node::Spatial(op, a, b) if *op != SpatialOp::Disjoint => match (a, b) {
                (GeomOperand::Prop, GeomOperand::Lit(_, r, _))
                | (GeomOperand::Lit(_, r, _), GeomOperand::Prop) => Some(*r),
                _ => None,
            },
            // Disjoint bounds: nothing can match; a degenerate rect far
            // from any data keeps callers simple.
            Node::And(v) => v.iter().filter_map(Node::envelope).reduce(|a, b| {
                rect_intersection(a, b).unwrap_or(Rect::new((1e9, 1e9), (1e9, 1e9)))
            }),
            Node::Or(v) => {
                let mut acc: Option<Rect> = None;
                for n in v {
                    let r = n.envelope()?;
                    acc = Some(acc.map_or(r, |a| rect_union(a, r)));
                }
                acc
            }
            _ => None,
        }
    }
}

impl GeomOperand {
    fn geom<'a>(&'a self, f: &Feat<'a>) -> Cow<'a, Geometry> {
        match self {
            GeomOperand::Prop => Cow::Borrowed(f.geometry),
            GeomOperand::Lit(g, _, _) => Cow::Borrowed(g),
        }
    }
    fn lit_geom(&self) -> Cow<'_, Geometry> {
        match self {
            GeomOperand::Lit(g, _, _) => Cow::Borrowed(g),
            GeomOperand::Prop => Cow::Owned(Geometry::Point(Point::new(f64::NAN, f64::NAN))),
        }
    }
}

/// Whether two rectangles share at least a point.
fn rects_meet(a: &Rect, b: &Rect) -> bool {
    a.min().x <= b.max().x
        && b.min().x <= a.max().x
        && a.min().y <= b.max().y
        && b.min().y <= a.max().y
}

/// A spatial predicate between a feature and a literal (or two of
/// either): the literal's envelope is the one computed at compile time, and
/// a point against a many-vertex polygon literal is decided by its raster
/// where the raster can.
fn spatial_node(op: SpatialOp, a: &GeomOperand, b: &GeomOperand, f: &Feat<'_>) -> bool {
    let rect = |o: &GeomOperand| match o {
        GeomOperand::Prop => f.geometry.bounding_rect(),
        GeomOperand::Lit(_, r, _) => Some(*r),
    };
    let (Some(ra), Some(rb)) = (rect(a), rect(b)) else {
        return op == SpatialOp::Disjoint;
    };
    if !rects_meet(&ra, &rb) {
        return op == SpatialOp::Disjoint;
    }
    if let Geometry::Point(p) = f.geometry {
        let decided = match (op, a, b) {
            (
                SpatialOp::Intersects | SpatialOp::Disjoint,
                GeomOperand::Prop,
                GeomOperand::Lit(_, _, Some(r)),
            )
            | (
                SpatialOp::Intersects | SpatialOp::Disjoint,
                GeomOperand::Lit(_, _, Some(r)),
                GeomOperand::Prop,
            )
            | (SpatialOp::Within, GeomOperand::Prop, GeomOperand::Lit(_, _, Some(r)))
            | (SpatialOp::Contains, GeomOperand::Lit(_, _, Some(r)), GeomOperand::Prop) => {
                r.decide(p.x(), p.y())
            }
            _ => None,
        };
        // The raster's "inside" cells hold no edge: the point is interior.
        if let Some(inside) = decided {
            return if op == SpatialOp::Disjoint {
                !inside
            } else {
                inside
            };
        }
    }
    spatial_met(op, &a.geom(f), &b.geom(f))
}

fn spatial(op: SpatialOp, a: &Geometry, b: &Geometry) -> bool {
    // Every predicate but DISJOINT needs the envelopes to meet.
    let (Some(ra), Some(rb)) = (a.bounding_rect(), b.bounding_rect()) else {
        return op == SpatialOp::Disjoint;
    };
    if !rects_meet(&ra, &rb) {
        return op == SpatialOp::Disjoint;
    }
    spatial_met(op, a, b)
}

/// A spatial predicate between geometries whose envelopes meet.
fn spatial_met(op: SpatialOp, a: &Geometry, b: &Geometry) -> bool {
    // Fast paths for a point against an area.
    match (op, a, b) {
        (SpatialOp::Intersects, Geometry::Point(p), g)
        | (SpatialOp::Intersects, g, Geometry::Point(p)) => return g.intersects(p),
        (SpatialOp::Disjoint, Geometry::Point(p), g)
        | (SpatialOp::Disjoint, g, Geometry::Point(p)) => {
            return !g.intersects(p);
        }
        (SpatialOp::Within, Geometry::Point(p), Geometry::Rect(r))
        | (SpatialOp::Contains, Geometry::Rect(r), Geometry::Point(p)) => return r.contains(p),
        (SpatialOp::Within, Geometry::Point(p), Geometry::Polygon(g))
        | (SpatialOp::Contains, Geometry::Polygon(g), Geometry::Point(p)) => return g.contains(p),
        (SpatialOp::Within, Geometry::Point(p), Geometry::MultiPolygon(g))
        | (SpatialOp::Contains, Geometry::MultiPolygon(g), Geometry::Point(p)) => {
            return g.contains(p);
        }
        (SpatialOp::Intersects, _, _) => return a.intersects(b),
        (SpatialOp::Disjoint, _, _) => return !a.intersects(b),
        _ => {}
    }
    let m = a.relate(b);
    match op {
        SpatialOp::Equals => m.is_equal_topo(),
        SpatialOp::Touches => m.is_touches(),
        SpatialOp::Within => m.is_within(),
        SpatialOp::Overlaps => m.is_overlaps(),
        SpatialOp::Crosses => m.is_crosses(),
        SpatialOp::Contains => m.is_contains(),
        SpatialOp::Intersects => m.is_intersects(),
        SpatialOp::Disjoint => m.is_disjoint(),
    }
}

impl TimeOperand {
    fn eval(&self, f: &Feat<'_>) -> Option<(i64, i64)> {
        match self {
            TimeOperand::Lit(a, b) => Some((*a, *b)),
            TimeOperand::Prop(i, ty) => match f.props.get(*i)? {
                Value::Text(s) => {
                    let t = parse_instant(s)?;
                    Some(if *ty == PropType::Date {
                        (t, t + DAY_MS - 1)
                    } else {
                        (t, t)
                    })
                }
                _ => None,
            },
            TimeOperand::Interval(a, b) => {
                let (s, _) = a.eval(f)?;
                let (_, e) = b.eval(f)?;
                Some((s, e))
            }
        }
    }
}

/// Allen's relations as CQL2 defines them (21-065r2, temporal functions).
fn temporal(op: TemporalOp, a: (i64, i64), b: (i64, i64)) -> bool {
    use TemporalOp::*;
    let ((a0, a1), (b0, b1)) = (a, b);
    match op {
        After => a0 > b1,
        Before => a1 < b0,
        Contains => a0 < b0 && a1 > b1,
        Disjoint => !(a0 <= b1 && a1 >= b0),
        During => a0 > b0 && a1 < b1,
        Equals => a0 == b0 && a1 == b1,
        FinishedBy => a0 < b0 && a1 == b1,
        Finishes => a0 > b0 && a1 == b1,
        Intersects => a0 <= b1 && a1 >= b0,
        Meets => a1 == b0,
        MetBy => a0 == b1,
        OverlappedBy => a0 > b0 && a0 < b1 && a1 > b1,
        Overlaps => a0 < b0 && a1 > b0 && a1 < b1,
        StartedBy => a0 == b0 && a1 > b1,
        Starts => a0 == b0 && a1 < b1,
    }
}

impl Operand {
    fn eval<'a>(&'a self, f: &Feat<'a>) -> V<'a> {
        match self {
            Operand::Id => V::Num(f.id as f64),
            Operand::Lit(l) => match l {
                Lit::Null => V::Null,
                Lit::Bool(b) => V::Bool(*b),
                Lit::Num(n) => V::Num(*n),
                Lit::Text(s) => V::Text(Cow::Borrowed(s)),
                Lit::Time(t) => V::Time(*t),
            },
            Operand::Prop(i, ty) => match f.props.get(*i) {
                None | Some(Value::Null) => V::Null,
                Some(Value::Bool(b)) => V::Bool(*b),
                Some(Value::Int(n)) => V::Num(*n as f64),
                Some(Value::Float(x)) => V::Num(*x),
                Some(Value::Text(s)) => match ty {
                    PropType::DateTime | PropType::Date => {
                        parse_instant(s).map_or(V::Null, V::Time)
                    }
                    _ => V::Text(Cow::Borrowed(s)),
                },
            },
            Operand::Casei(o) => match o.eval(f) {
                V::Text(s) => V::Text(Cow::Owned(s.to_lowercase())),
                v => v,
            },
            Operand::Arith(op, a, b) => match (a.eval(f), b.eval(f)) {
                (V::Num(x), V::Num(y)) => {
                    let r = match op {
                        Arith::Add => x + y,
                        Arith::Sub => x - y,
                        Arith::Mul => x * y,
                        Arith::Div => x / y,
                        Arith::Mod => x % y,
                        Arith::IntDiv => (x / y).trunc(),
                        Arith::Pow => x.powf(y),
                    };
                    if r.is_finite() { V::Num(r) } else { V::Null }
                }
                _ => V::Null,
            },
        }
    }
}

fn compare(a: &V<'_>, b: &V<'_>) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (V::Num(x), V::Num(y)) => x.partial_cmp(y),
        (V::Text(x), V::Text(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        (V::Time(x), V::Time(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::builtin;

    fn events() -> LayerDef {
        builtin::layer(builtin::EVENTS).expect("events schema")
    }

    fn props(def: &LayerDef, kv: &[(&str, Value)]) -> Vec<Value> {
        let mut v = vec![Value::Null; def.properties.len()];
        for (k, x) in kv {
            v[def.prop_index(k).expect("prop")] = x.clone();
        }
        v
    }

    fn check(src: &str, p: &[Value], g: &Geometry) -> bool {
        let def = events();
        let f = compile(&parse(src, Lang::Text).expect(src), &def).expect(src);
        f.matches(7, g, p)
    }

    #[test]
    fn comparisons_logic_and_nulls() {
        let def = events();
        let p = props(
            &def,
            &[
                ("category", Value::text("消防安全")),
                ("status", Value::text("new")),
                ("created_at", Value::text("2026-11-10T08:00:00Z")),
            ],
        );
        let g = Geometry::Point(Point::new(112.9, 28.2));
        assert!(check("category = '消防安全'", &p, &g));
        assert!(check("status IN ('new', 'dispatched')", &p, &g));
        assert!(!check("status NOT IN ('new')", &p, &g));
        assert!(check("id = 7 AND NOT status = 'closed'", &p, &g));
        assert!(check("category LIKE '消防%'", &p, &g));
        assert!(check("CASEI(status) = CASEI('NEW')", &p, &g));
        assert!(check(
            "created_at > TIMESTAMP('2026-11-01T00:00:00Z')",
            &p,
            &g
        ));
        assert!(check("created_at > '2026-11-01'", &p, &g));
        assert!(check(
            "T_INTERSECTS(created_at, INTERVAL('2026-11-10', '2026-11-11'))",
            &p,
            &g
        ));
        assert!(check(
            "T_DURING(created_at, INTERVAL('2026-11-01T00:00:00Z', '..'))",
            &p,
            &g
        ));
        assert!(!check("T_BEFORE(created_at, DATE('2026-11-10'))", &p, &g));
        // closed_at is null: comparisons are unknown, and NOT unknown too.
        assert!(!check("closed_at > '2026-01-01'", &p, &g));
        assert!(!check("NOT (closed_at > '2026-01-01')", &p, &g));
        assert!(check("closed_at IS NULL", &p, &g));
        assert!(check(
            "closed_at IS NULL OR closed_at > '2026-01-01'",
            &p,
            &g
        ));
        assert!(check(
            "S_INTERSECTS(geometry, BBOX(112, 28, 113, 29))",
            &p,
            &g
        ));
        assert!(check(
            "S_WITHIN(geometry, POLYGON((112 28, 113 28, 113 29, 112 29, 112 28)))",
            &p,
            &g
        ));
        assert!(!check("S_DISJOINT(geometry, POINT(112.9 28.2))", &p, &g));
        assert!(check("id + 3 = 10 AND id * 2 BETWEEN 13 AND 15", &p, &g));
    }

    #[test]
    fn json_and_text_agree() {
        let def = events();
        let j = r#"{"op":"and","args":[{"op":"=","args":[{"property":"status"},"new"]},
            {"op":"s_intersects","args":[{"property":"geometry"},{"bbox":[112,28,113,29]}]}]}"#;
        let f = compile(&parse(j, Lang::Json).expect("json"), &def).expect("compile");
        let p = props(&def, &[("status", Value::text("new"))]);
        assert!(f.matches(1, &Geometry::Point(Point::new(112.5, 28.5)), &p));
        assert!(!f.matches(1, &Geometry::Point(Point::new(111.5, 28.5)), &p));
        let env = f.envelope.expect("envelope from the bbox");
        assert_eq!((env.min().x, env.max().y), (112.0, 29.0));
    }

    #[test]
    fn faults_are_named() {
        let def = events();
        let err = |s: &str| match parse(s, Lang::Text).and_then(|e| compile(&e, &def)) {
            Ok(_) => panic!("{s} compiled"),
            Err(e) => e,
        };
        assert!(err("colour = 'red'").contains("unknown property \"colour\""));
        assert!(err("category = 5").contains("types differ"));
        assert!(err("category =").contains("not valid cql2-text"));
        assert!(err("FOO(category)").contains("unknown function"));
        assert!(
            err("S_INTERSECTS(geometry, POLYGON((0 0, 1 1, 1 0, 0 1, 0 0)))").contains("invalid")
        );
        assert!(err("S_INTERSECTS(geometry, POINT(500 0))").contains("outside"));
        assert!(err("T_AFTER(category, DATE('2026-01-01'))").contains("not a date"));
        assert!(err("ACCENTI(category) = 'x'").contains("ACCENTI"));
        assert!(err("A_CONTAINS(category, ('a'))").contains("array"));
    }

    #[test]
    fn like_patterns() {
        let m = |p: &str, s: &str| like_match(&like_pattern(p), s);
        assert!(m("a%", "abc"));
        assert!(m("%c", "abc"));
        assert!(m("a_c", "abc"));
        assert!(!m("a_c", "abbc"));
        assert!(m("%b%", "abc"));
        assert!(m("a\\%", "a%"));
        assert!(!m("a\\%", "ab"));
        assert!(m("%", ""));
        assert!(m("网格%", "网格一"));
    }

    #[test]
    fn instants() {
        assert_eq!(parse_instant("1970-01-01"), Some(0));
        assert_eq!(parse_instant("1970-01-02T00:00:01Z"), Some(DAY_MS + 1000));
        assert_eq!(
            parse_instant("2026-11-15T08:00:00+08:00"),
            parse_instant("2026-11-15T00:00:00Z")
        );
        assert_eq!(
            parse_instant("2026-11-15T00:00:00.500Z"),
            parse_instant("2026-11-15T00:00:00Z").map(|t| t + 500)
        );
        assert_eq!(parse_instant("2026-02-30"), None);
        assert_eq!(parse_instant("yesterday"), None);
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use crate::model::builtin;

    /// Inputs that once took seconds to parse or overflowed the stack: each
    /// is refused (or parsed) at once, whatever its length.
    #[test]
    fn nested_filters_are_refused_before_parsing() {
        for n in [MAX_TEXT_DEPTH + 1, 100, 1_000, 100_000] {
            let inputs = [
                "(".repeat(n),
                format!("{}a=1{}", "(".repeat(n), ")".repeat(n)),
                format!("{}a=1", "NOT ".repeat(n)),
                format!("{}1 = a", "-".repeat(n)),
                format!("{}a", "a(".repeat(n)),
                format!("{}1", "a BETWEEN (".repeat(n)),
                format!("{}a=1", "(NOT ".repeat(n)),
            ];
            for src in &inputs {
                let t = std::time::Instant::now();
                let r = parse(src, Lang::Text);
                let dt = t.elapsed();
                assert!(r.is_err(), "{n}: {:?}… accepted", &src[..src.len().min(40)]);
                if dt.as_millis() > 20 {
                    eprintln!(
                        "slow: {} bytes {:?}: {dt:?}",
                        src.len(),
                        &src[..src.len().min(30)]
                    );
                }
            }
        }
        // Up to the bound, a filter nests as deep as it likes and parses.
        let d = MAX_TEXT_DEPTH - 1;
        let ok = format!("{}a=1{}", "(".repeat(d), ")".repeat(d));
        assert!(parse(&ok, Lang::Text).is_ok());
        // Worst case within the bound: an unbalanced input one level short.
        for k in [1, 8, 16, 32, MAX_TEXT_DEPTH] {
            let src = "(".repeat(k);
            let t = std::time::Instant::now();
            let _ = parse(&src, Lang::Text);
            eprintln!("unbalanced depth {k}: {:?}", t.elapsed());
            let src = format!("{}a=", "(".repeat(k));
            let t = std::time::Instant::now();
            let _ = parse(&src, Lang::Text);
            eprintln!("unbalanced depth {k} + a=: {:?}", t.elapsed());
        }
    }

    #[test]
    fn deep_json_is_refused() {
        let src = format!(
            "{}true{}",
            "{\"op\":\"not\",\"args\":[".repeat(1000),
            "]}".repeat(1000)
        );
        assert!(parse(&src, Lang::Json).is_err());
    }

    #[test]
    fn long_in_lists_are_bounded_and_fast() {
        let def = builtin::layer(builtin::EVENTS).expect("events");
        let list = |n: usize| {
            let items: Vec<String> = (0..n).map(|i| format!("'c{i}'")).collect();
            format!("category IN ({})", items.join(","))
        };
        let e = parse(&list(MAX_IN_ITEMS), Lang::Text).expect("parses");
        let f = compile(&e, &def).expect("compiles");
        let mut p = vec![Value::Null; def.properties.len()];
        let k = def.prop_index("category").expect("category");
        p[k] = Value::Text("c9999".into());
        let g = Geometry::Point(Point::new(112.9, 28.2));
        assert!(f.matches(1, &g, &p));
        p[k] = Value::Text("nope".into());
        assert!(!f.matches(1, &g, &p));
        let e = parse(&list(MAX_IN_ITEMS + 1), Lang::Text).expect("parses");
        let err = compile(&e, &def).expect_err("over the bound");
        assert!(err.contains("at most"), "{err}");
    }
}
