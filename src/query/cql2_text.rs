//! A linear-time, depth-bounded parser for CQL2 text filters (OGC 21-065r2).
//!
//! `cql2::parse_text` (cql2 0.6.0) is a pest PEG grammar. Two of its alternatives start the same
//! way (`ExpressionInParentheses` and `Array` both begin `"(" ~ Expr`), so every unbalanced
//! parenthesis about doubles the work (18 bytes of `(` take a second of CPU, 24 bytes most of a
//! minute). It also recurses on the thread's stack once per level, and its tree is as deep as an
//! operator chain is long, so on a 2 MiB thread 361 nested parentheses, 919 chained `=`, 2044
//! chained `+` or a flat `a=1 AND a=1 AND …` of 3532 terms abort the process.
//!
//! [`parse_text`] accepts the same language and builds the same [`cql2::Expr`] (`==`, and equal
//! `Debug` output, for every input both accept), but:
//!
//! * it never backtracks more than a constant number of tokens: the one real fallback in the
//!   grammar, a WKT literal that turns out not to be one (`POINT(1)` is a call of a function
//!   named `POINT`), rescans only that literal, so the cost is O(input length × nesting depth);
//! * input longer than [`Limits::max_len`] is refused before it is looked at;
//! * nesting is counted as it is entered (parentheses, function arguments, arrays, prefix `NOT`,
//!   unary minus, `BETWEEN` bounds, `GEOMETRYCOLLECTION` members) and refused beyond
//!   [`Limits::max_depth`]; the tree it builds is never deeper than `max_depth` either (a chain
//!   like `1 + 2 + … + 99` is a 98-deep tree in cql2, so it is refused here), and so neither the
//!   parse nor the recursive `Drop` of the result can exhaust a stack.
//!
//! How it mirrors cql2 (read against `cql2.pest` and `parser.rs` of cql2 0.6.0):
//!
//! * Tokens are read by a context-dependent tokenizer, because the grammar's keywords only have a
//!   word boundary in some places: in operator position `and`, `or`, `in`, `like`, `is`, `null`,
//!   `between` and `div` match as prefixes (`a=1 andx=2` is `a=1 AND x=2`, `a diversity` is
//!   `a div ersity`), while `NOT`, `TRUE`, `FALSE`, `NULL` (as a value) and `EMPTY` need
//!   `!NameChar` after them. In operand position a name is the longest run of name characters
//!   (`and = 1` compares a property named `and`).
//! * The expression is read as the same flat stream pest hands its Pratt parser (`-`* `NOT`*
//!   atom postfix? (infix `-`* `NOT`* atom postfix?)*) and folded with the same algorithm and the
//!   same binding powers, so prefix/postfix/infix interplay (`- NOT a = 1` is `-1 * NOT(a = 1)`)
//!   comes out identically.
//! * `normalize` is applied node by node as the tree is built (canonical operator names, flat
//!   `and`/`or`, canonical timestamps), except below `DATE(...)` and `BBOX(...)`, which cql2's
//!   `normalize` does not descend into: there the tree is kept raw (`DATE(a != b)` keeps `!=`).
//!   Timestamps are canonicalized by cql2 itself, through its `Deserialize` impl.
//!
//! Known divergences from cql2 0.6.0 (all outside what OGC 21-065r2 defines):
//!
//! * The limits above: cql2 accepts (or crashes on) deeper or longer input, e.g. 65 nested
//!   parentheses or calls, 65 `NOT`s or `-`s in a row, or an operator chain whose tree is deeper
//!   than 64 (`1 + 1 + … + 1` with 66 terms, `a = b = … = z` with 65 `=`). A flat `and`/`or`
//!   chain or list is not deep, however long.
//! * `ALPHABETIC` and `NUMBER` (which characters may start or continue a name) come from the Rust
//!   standard library's Unicode tables here and from pest's (Unicode 18.0) in cql2; a name using
//!   a letter or digit assigned in a Unicode version newer than the standard library's is refused
//!   here and accepted by cql2.
//! * cql2 splices a missing `Z`/`ZM` marker into a WKT literal with one `format!` per geometry
//!   (quadratic); this does it in one pass, with the same result.

use cql2::{Expr, Geometry};
use std::collections::HashSet;
use std::fmt;

/// Bounds on what [`parse_text`] will look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest input, in bytes.
    pub max_len: usize,
    /// Deepest nesting, counted both over the source constructs that nest and over the tree
    /// that is built.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_len: 256 * 1024,
            max_depth: 64,
        }
    }
}

/// Why a filter was refused, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// Byte offset into the input.
    pub offset: usize,
    /// What went wrong, for a person to act on.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a cql2-text filter into the expression `cql2::parse_text` would produce.
pub fn parse_text(src: &str, limits: &Limits) -> Result<Expr, ParseError> {
    if src.len() > limits.max_len {
        return Err(ParseError {
            offset: limits.max_len,
            message: format!(
                "filter is {} bytes long, more than the limit of {} bytes",
                src.len(),
                limits.max_len
            ),
        });
    }
    let mut p = Parser {
        src,
        max_depth: limits.max_depth,
        pos: 0,
        depth: 0,
        frames: 0,
        raw: false,
        collections_failed: HashSet::new(),
    };
    let start = p.ws(0);
    if start >= src.len() {
        return Err(ParseError {
            offset: start,
            message: "filter is empty".to_string(),
        });
    }
    p.pos = start;
    let node = p.run(Ctx::Expr).map_err(|e| *e)?;
    let end = p.ws(p.pos);
    if end < src.len() {
        let message = if p.byte(end) == Some(b')') {
            "unmatched `)`".to_string()
        } else {
            format!(
                "expected an operator or the end of the filter, found {}",
                p.found(end)
            )
        };
        return Err(ParseError {
            offset: end,
            message,
        });
    }
    Ok(*node.expr)
}

type Res<T> = Result<T, Box<ParseError>>;

/// `?` without the `Try` machinery, whose temporaries make unoptimized frames several times
/// larger; used on the recursive path.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Err(e),
        }
    };
}

fn fail<T>(offset: usize, message: impl Into<String>) -> Res<T> {
    Err(Box::new(ParseError {
        offset,
        message: message.into(),
    }))
}

/// `WHITESPACE = _{ SEPARATOR | "\n" | "\r" | "\t" }`; `SEPARATOR` is general category Z.
fn is_ws(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// `NameChar = _{ ALPHABETIC | NUMBER | "_" | "." | ":" }`.
fn is_name_char(c: char) -> bool {
    c.is_alphabetic() || c.is_numeric() || matches!(c, '_' | '.' | ':')
}

/// Operator names cql2 spells canonically (`canonical_ops` in cql2's expr.rs); the first seven
/// lists are public in cql2, the last is not.
const OTHER_OPS: &[&str] = &["not", "like", "between", "in", "isNull", "casei", "accenti"];

/// cql2's private `ALIASES`.
const ALIASES: &[(&str, &str)] = &[
    ("!=", "<>"),
    ("st_equals", "s_equals"),
    ("st_intersects", "s_intersects"),
    ("st_disjoint", "s_disjoint"),
    ("st_touches", "s_touches"),
    ("st_within", "s_within"),
    ("st_overlaps", "s_overlaps"),
    ("st_crosses", "s_crosses"),
    ("st_contains", "s_contains"),
    ("intersects", "s_intersects"),
    ("anyinteracts", "t_intersects"),
];

/// cql2's `canonical_op`: an alias or a case variant of a CQL2 operator becomes its canonical
/// spelling; any other name is returned as written.
#[inline(never)]
fn canonical_op(name: &str) -> String {
    let aliased = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map_or(name, |(_, canonical)| canonical);
    [
        cql2::BOOLOPS,
        cql2::EQOPS,
        cql2::CMPOPS,
        cql2::SPATIALOPS,
        cql2::TEMPORALOPS,
        cql2::ARITHOPS,
        cql2::ARRAYOPS,
        OTHER_OPS,
    ]
    .into_iter()
    .flat_map(|ops| ops.iter().copied())
    .find(|canonical| canonical.eq_ignore_ascii_case(aliased))
    .map_or_else(|| aliased.to_string(), str::to_string)
}

/// cql2's `canonical_timestamp`, run by cql2 itself: deserializing `{"timestamp": s}` applies
/// its `normalize`, which rewrites the literal.
#[inline(never)]
fn canonical_timestamp(s: &str) -> String {
    // cql2 leaves a literal without a time part as written; skip the round trip for those.
    if !(s.contains('T') || s.contains(' ')) {
        return s.to_string();
    }
    match serde_json::from_value::<Expr>(serde_json::json!({ "timestamp": s })) {
        Ok(Expr::Timestamp { timestamp }) => match *timestamp {
            Expr::Literal(canonical) => canonical,
            _ => s.to_string(),
        },
        _ => s.to_string(),
    }
}

/// cql2's `collapse_whitespace`.
#[inline(never)]
fn collapse_whitespace(wkt: &str) -> String {
    wkt.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A built subtree and its depth (a leaf is 0, a node one more than its deepest child).
struct Node {
    expr: Box<Expr>,
    depth: usize,
}

impl Node {
    fn leaf(expr: Expr) -> Node {
        Node {
            expr: Box::new(expr),
            depth: 0,
        }
    }
}

/// Infix operators, as the grammar names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Or,
    And,
    Eq,
    NotEq,
    Bang,
    Gt,
    GtEq,
    Lt,
    LtEq,
    Like,
    In,
    Add,
    Sub,
    Mul,
    Slash,
    Div,
    Mod,
    Pow,
}

// Binding powers of cql2's `PRATT_PARSER`: pest numbers levels 20, 30, … loosest first.
const PREC_NOT: u8 = 40;
const PREC_POSTFIX: u8 = 90;
const PREC_NEG: u8 = 130;

impl Op {
    fn prec(self) -> u8 {
        match self {
            Op::Or => 20,
            Op::And => 30,
            Op::Eq => 50,
            Op::NotEq | Op::Bang | Op::Gt | Op::GtEq | Op::Lt | Op::LtEq => 60,
            Op::Like => 70,
            Op::In => 80,
            Op::Add | Op::Sub => 100,
            Op::Mul | Op::Slash | Op::Div | Op::Mod => 110,
            Op::Pow => 120,
        }
    }

    fn right_assoc(self) -> bool {
        matches!(
            self,
            Op::Eq | Op::NotEq | Op::Bang | Op::Gt | Op::GtEq | Op::Lt | Op::LtEq | Op::Like
        )
    }

    /// The name cql2's `map_infix` gives the operation before `normalize` (the matched text,
    /// lowercased).
    fn raw_name(self) -> &'static str {
        match self {
            Op::Or => "or",
            Op::And => "and",
            Op::Eq => "=",
            Op::NotEq => "<>",
            Op::Bang => "!=",
            Op::Gt => ">",
            Op::GtEq => ">=",
            Op::Lt => "<",
            Op::LtEq => "<=",
            Op::Like => "like",
            Op::In => "in",
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Slash => "/",
            Op::Div => "div",
            Op::Mod => "%",
            Op::Pow => "^",
        }
    }
}

/// What the stream yields before an operand (`Negative`, `UnaryNot`, or the atom itself).
enum Prefix {
    Neg(usize),
    Not(usize),
    Atom(Node),
}

/// What the stream yields after an operand.
enum After {
    IsNull { not: bool, at: usize },
    Between(Box<Between>),
    Infix { op: Op, not: bool, at: usize },
    End,
}

struct Between {
    not: bool,
    at: usize,
    lo: Node,
    hi: Node,
}

/// Takes the peeked operator if it is an infix one.
fn take_infix(st: &mut Stream) -> Option<(Op, bool, usize)> {
    match st.peeked {
        Some(After::Infix { op, not, at }) => {
            st.peeked = None;
            Some((op, not, at))
        }
        _ => None,
    }
}

/// pest's `lbp`: what an operator after an operand binds with (0 for the end).
fn binding_power(after: Option<&After>) -> u8 {
    match after {
        Some(After::Infix { op, .. }) => op.prec(),
        Some(After::IsNull { .. }) | Some(After::Between { .. }) => PREC_POSTFIX,
        _ => 0,
    }
}

/// An atom read without recursion, or a call still to read.
enum Simple {
    Done(Node),
    Call {
        name: String,
        at: usize,
        open: usize,
    },
}

/// Which rule the stream is read for: `Expr`, or `BetweenOperand` (no `NOT`, no postfix, only
/// arithmetic operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Expr,
    Bound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before an atom; `neg`: a `-` is still a prefix (`Negative*` comes before `UnaryNot*`).
    Prefix {
        neg: bool,
    },
    AfterAtom,
    AfterPostfix,
}

struct Stream {
    ctx: Ctx,
    state: State,
    peeked: Option<After>,
}

/// What a WKT literal needs once it has matched.
#[derive(Default)]
struct Geo {
    /// Most ordinates in any coordinate (2, 3 or 4).
    dim: usize,
    /// Spans of `ZM` rules written without a marker.
    slots: Vec<(usize, usize)>,
    /// Number of `GEOMETRYCOLLECTION`s.
    collections: usize,
    /// Where the collections nested too deeply, if they did.
    too_deep: Option<usize>,
    /// Where a `GEOMETRY_COLLECTION` is known not to match (kept across attempts by the parser,
    /// so the function-call reading of a failed nested collection does not rescan it per level).
    failed: HashSet<usize>,
}

impl Geo {
    fn mark(&self) -> (usize, usize, usize) {
        (self.dim, self.slots.len(), self.collections)
    }

    fn reset(&mut self, mark: (usize, usize, usize)) {
        self.dim = mark.0;
        self.slots.truncate(mark.1);
        self.collections = mark.2;
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Point,
    LineString,
    Polygon,
    MultiPoint,
    MultiLineString,
    MultiPolygon,
}

const SINGLE_KINDS: [(&str, Kind); 6] = [
    ("POINT", Kind::Point),
    ("LINESTRING", Kind::LineString),
    ("POLYGON", Kind::Polygon),
    ("MULTIPOINT", Kind::MultiPoint),
    ("MULTILINESTRING", Kind::MultiLineString),
    ("MULTIPOLYGON", Kind::MultiPolygon),
];

struct Parser<'a> {
    src: &'a str,
    max_depth: usize,
    /// Cursor, a byte offset on a char boundary.
    pos: usize,
    /// Source nesting currently open.
    depth: usize,
    /// Infix operators whose right operand is being read. Each becomes a node above what is
    /// being read, and only an open source construct can merge two of them (`and` flattening),
    /// so `frames > max_depth + depth` means the tree will be too deep: refusing then bounds the
    /// recursion of right-associative chains like `a = b = c = …`.
    frames: usize,
    /// Inside `DATE(...)` or `BBOX(...)`, which cql2 does not normalize.
    raw: bool,
    /// Offsets where a `GEOMETRYCOLLECTION` literal failed to match (see `Geo::failed`).
    collections_failed: HashSet<usize>,
}

impl Parser<'_> {
    // ----- characters -------------------------------------------------------------------

    fn ch(&self, i: usize) -> Option<char> {
        self.src.get(i..).and_then(|s| s.chars().next())
    }

    fn byte(&self, i: usize) -> Option<u8> {
        self.src.as_bytes().get(i).copied()
    }

    fn slice(&self, a: usize, b: usize) -> &str {
        self.src.get(a..b).unwrap_or("")
    }

    fn ws(&self, mut i: usize) -> usize {
        loop {
            match self.byte(i) {
                Some(b' ' | b'\t' | b'\n' | b'\r') => i += 1,
                Some(b) if b >= 0x80 => match self.ch(i) {
                    Some(c) if is_ws(c) => i += c.len_utf8(),
                    _ => return i,
                },
                _ => return i,
            }
        }
    }

    /// The length of the name character at `i`, if there is one.
    fn name_char(&self, i: usize) -> Option<usize> {
        match self.byte(i)? {
            b if b < 0x80 => {
                (b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':')).then_some(1)
            }
            _ => self.ch(i).filter(|c| is_name_char(*c)).map(char::len_utf8),
        }
    }

    fn digits(&self, mut i: usize) -> usize {
        while self.byte(i).is_some_and(|b| b.is_ascii_digit()) {
            i += 1;
        }
        i
    }

    /// `^"k"` at `i`: pest compares `k.len()` bytes ignoring ASCII case.
    fn kw(&self, i: usize, k: &str) -> bool {
        i.checked_add(k.len())
            .and_then(|e| self.src.as_bytes().get(i..e))
            .is_some_and(|s| s.eq_ignore_ascii_case(k.as_bytes()))
    }

    /// `^"k" ~ !NameChar` at `i`; returns the end of the keyword.
    fn word(&self, i: usize, k: &str) -> Option<usize> {
        if self.kw(i, k) {
            let e = i + k.len();
            if self.name_char(e).is_none() {
                return Some(e);
            }
        }
        None
    }

    /// A short rendering of what is at `i`, for messages.
    fn found(&self, i: usize) -> String {
        let rest = self.src.get(i..).unwrap_or("");
        if rest.is_empty() {
            return "the end of the filter".to_string();
        }
        let mut s: String = rest.chars().take_while(|c| !is_ws(*c)).take(16).collect();
        if s.is_empty() {
            s = rest.chars().take(1).collect();
        }
        format!("`{s}`")
    }

    // ----- nesting ----------------------------------------------------------------------

    fn too_deep(&self, at: usize) -> Box<ParseError> {
        Box::new(ParseError {
            offset: at,
            message: format!("filter nests deeper than {} levels", self.max_depth),
        })
    }

    fn enter(&mut self, at: usize) -> Res<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.too_deep(at));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    // ----- the Pratt parser (pest's `PrattParserMap::expr`, `nud`, `led`, `lbp`) ------------
    //
    // The functions on the recursive path (`lex_prefix` → `group`/`call` → `run` → `pratt` →
    // `nud` → `lex_prefix`, and `prefix`, `led`, `lbp` → `lex_after` → `postfix`) keep few locals and leave messages
    // and tree building to out-of-line helpers, so a level costs little stack even unoptimized.

    /// Reads one `Expr` (or `BetweenOperand`) starting at the cursor.
    fn run(&mut self, ctx: Ctx) -> Res<Node> {
        let mut st = Stream {
            ctx,
            state: State::Prefix { neg: true },
            peeked: None,
        };
        self.pratt(&mut st, 0)
    }

    fn pratt(&mut self, st: &mut Stream, rbp: u8) -> Res<Node> {
        let mut lhs = tri!(self.nud(st));
        while rbp < tri!(self.lbp(st)) {
            lhs = tri!(self.led(st, lhs));
        }
        Ok(lhs)
    }

    /// Peeks at what follows the operand and returns its binding power.
    fn lbp(&mut self, st: &mut Stream) -> Res<u8> {
        if st.peeked.is_none() {
            let after = tri!(self.lex_after(st));
            st.peeked = Some(after);
        }
        Ok(binding_power(st.peeked.as_ref()))
    }

    fn nud(&mut self, st: &mut Stream) -> Res<Node> {
        match tri!(self.lex_prefix(st)) {
            Prefix::Atom(node) => Ok(node),
            Prefix::Neg(at) => self.prefix(st, true, at),
            Prefix::Not(at) => self.prefix(st, false, at),
        }
    }

    fn prefix(&mut self, st: &mut Stream, neg: bool, at: usize) -> Res<Node> {
        tri!(self.enter(at));
        let rbp = if neg { PREC_NEG - 1 } else { PREC_NOT - 1 };
        let rhs = tri!(self.pratt(st, rbp));
        self.leave();
        if neg {
            self.negate(rhs, at)
        } else {
            self.not(rhs, at)
        }
    }

    fn led(&mut self, st: &mut Stream, lhs: Node) -> Res<Node> {
        let Some((op, not, at)) = take_infix(st) else {
            return self.apply_postfix(st.peeked.take(), lhs);
        };
        self.frames += 1;
        if self.frames > self.max_depth.saturating_add(self.depth) {
            return Err(self.too_deep(at));
        }
        let rbp = if op.right_assoc() {
            op.prec() - 1
        } else {
            op.prec()
        };
        let rhs = tri!(self.pratt(st, rbp));
        self.frames = self.frames.saturating_sub(1);
        self.infix(op, not, lhs, rhs, at)
    }

    // ----- the tokenizer ----------------------------------------------------------------

    /// `Negative*`, then `UnaryNot*`, then the atom.
    fn lex_prefix(&mut self, st: &mut Stream) -> Res<Prefix> {
        let p = self.ws(self.pos);
        if st.state == (State::Prefix { neg: true }) && self.byte(p) == Some(b'-') {
            self.pos = p + 1;
            return Ok(Prefix::Neg(p));
        }
        if st.ctx == Ctx::Expr {
            if let Some(e) = self.word(p, "not") {
                self.pos = e;
                st.state = State::Prefix { neg: false };
                return Ok(Prefix::Not(p));
            }
        }
        // AtomicExpr = Literal | Function | Identifier | ExpressionInParentheses | Array
        self.pos = p;
        let node = if self.byte(p) == Some(b'(') {
            tri!(self.group(p))
        } else {
            match tri!(self.simple_atom(p)) {
                Simple::Done(node) => node,
                Simple::Call { name, at, open } => tri!(self.call(name, at, open)),
            }
        };
        st.state = State::AfterAtom;
        Ok(Prefix::Atom(node))
    }

    /// What follows an operand: a postfix predicate (right after the atom, in an `Expr`), an
    /// infix operator, or nothing.
    fn lex_after(&mut self, st: &mut Stream) -> Res<After> {
        let p = self.ws(self.pos);
        if st.state == State::AfterAtom && st.ctx == Ctx::Expr {
            if let Some(item) = tri!(self.postfix(p)) {
                st.state = State::AfterPostfix;
                return Ok(item);
            }
        }
        Ok(self.infix_token(st, p))
    }

    #[inline(never)]
    fn infix_token(&mut self, st: &mut Stream, p: usize) -> After {
        match self.match_infix(p, st.ctx) {
            Some((op, not, end)) => {
                self.pos = end;
                st.state = State::Prefix { neg: true };
                After::Infix { op, not, at: p }
            }
            None => After::End,
        }
    }

    /// `ExprInfixOp`, alternatives in the grammar's order; returns the end of the operator.
    #[inline(never)]
    fn match_infix(&self, p: usize, ctx: Ctx) -> Option<(Op, bool, usize)> {
        let b = self.byte(p)?;
        // ArithInfixOp = Add | Subtract | Multiply | Divide | Modulo | Power
        let arith = match b {
            b'+' => Some(Op::Add),
            b'-' => Some(Op::Sub),
            b'*' => Some(Op::Mul),
            b'/' => Some(Op::Slash),
            _ => None,
        };
        if let Some(op) = arith {
            return Some((op, false, p + 1));
        }
        if self.kw(p, "div") {
            return Some((Op::Div, false, p + 3));
        }
        match b {
            b'%' => return Some((Op::Mod, false, p + 1)),
            b'^' => return Some((Op::Pow, false, p + 1)),
            _ => {}
        }
        if ctx == Ctx::Bound
            || !matches!(
                b.to_ascii_lowercase(),
                b'<' | b'>' | b'!' | b'=' | b'i' | b'n' | b'l' | b'a' | b'o'
            )
        {
            return None;
        }
        // CmpInfixOp = NotEq | GtEq | Gt | LtEq | Lt | Eq | In | Like
        for (text, op) in [
            ("<>", Op::NotEq),
            ("!=", Op::Bang),
            (">=", Op::GtEq),
            (">", Op::Gt),
            ("<=", Op::LtEq),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ] {
            if self.kw(p, text) {
                return Some((op, false, p + text.len()));
            }
        }
        let not_end = self.word(p, "not");
        for (text, op) in [("in", Op::In), ("like", Op::Like)] {
            // `NotFlag? ~ ^"in"`: a `NOT` that is not followed by the keyword fails the rule.
            match not_end {
                Some(e) => {
                    let q = self.ws(e);
                    if self.kw(q, text) {
                        return Some((op, true, q + text.len()));
                    }
                }
                None => {
                    if self.kw(p, text) {
                        return Some((op, false, p + text.len()));
                    }
                }
            }
        }
        if self.kw(p, "and") {
            return Some((Op::And, false, p + 3));
        }
        if self.kw(p, "or") {
            return Some((Op::Or, false, p + 2));
        }
        None
    }

    /// `IsNullPostfix | BetweenPostfix` at `p`, right after an atom.
    #[inline(never)]
    fn postfix(&mut self, p: usize) -> Res<Option<After>> {
        if !matches!(self.byte(p), Some(b'i' | b'I' | b'n' | b'N' | b'b' | b'B')) {
            return Ok(None);
        }
        if let Some((not, end)) = self.is_null(p) {
            self.pos = end;
            return Ok(Some(After::IsNull { not, at: p }));
        }
        let Some((not, kw_at)) = self.between_keyword(p) else {
            return Ok(None);
        };
        // Nothing else can follow an atom with `[NOT] BETWEEN`, so this commits.
        self.pos = kw_at + 7;
        tri!(self.enter(kw_at));
        let lo = tri!(self.run(Ctx::Bound));
        let a = self.ws(self.pos);
        if !self.kw(a, "and") {
            return Err(self.err_between(a, kw_at));
        }
        self.pos = a + 3;
        let hi = tri!(self.run(Ctx::Bound));
        self.leave();
        Ok(Some(After::Between(Box::new(Between {
            not,
            at: p,
            lo,
            hi,
        }))))
    }

    /// `^"is" ~ NotFlag? ~ ^"null"`: whether it is negated, and its end.
    #[inline(never)]
    fn is_null(&self, p: usize) -> Option<(bool, usize)> {
        if !self.kw(p, "is") {
            return None;
        }
        let mut q = self.ws(p + 2);
        let mut not = false;
        if let Some(e) = self.word(q, "not") {
            not = true;
            q = self.ws(e);
        }
        self.kw(q, "null").then_some((not, q + 4))
    }

    /// `NotFlag? ~ ^"between"`: whether it is negated, and where `between` is.
    #[inline(never)]
    fn between_keyword(&self, p: usize) -> Option<(bool, usize)> {
        let (not, q) = match self.word(p, "not") {
            Some(e) => (true, self.ws(e)),
            None => (false, p),
        };
        self.kw(q, "between").then_some((not, q))
    }

    // ----- atoms ------------------------------------------------------------------------

    /// Every atom but a parenthesized one; a function call is returned for `lex_prefix` to read, so
    /// that this function's frame is not on the recursive path.
    #[inline(never)]
    fn simple_atom(&mut self, p: usize) -> Res<Simple> {
        let Some(c) = self.ch(p) else {
            return fail(p, "expected an expression, found the end of the filter");
        };
        match c {
            '\'' => match self.quoted(p, '\'') {
                Some((s, end)) => {
                    self.pos = end;
                    Ok(Simple::Done(Node::leaf(Expr::Literal(s))))
                }
                None => fail(p, format!("unterminated string starting at byte {p}")),
            },
            '"' => match self.quoted(p, '"') {
                Some((name, end)) => Ok(self.after_identifier(name, p, end)),
                None => fail(p, format!("unterminated quoted name starting at byte {p}")),
            },
            '0'..='9' | '+' | '-' => self.number(p).map(Simple::Done),
            c if c.is_alphabetic() => self.name(p),
            ')' | ',' => fail(p, format!("expected an expression, found `{c}`")),
            _ => fail(p, format!("unknown token `{c}`")),
        }
    }

    /// `Double | DECIMAL`: `[+-]? digit+ ("." digit*)? (^"e" [+-]? digit+)?`.
    #[inline(never)]
    fn number(&mut self, p: usize) -> Res<Node> {
        let mut i = p;
        let sign = self.byte(i).filter(|b| matches!(b, b'+' | b'-'));
        if sign.is_some() {
            i += 1;
        }
        let e = self.digits(i);
        if e == i {
            let message = if sign == Some(b'-') {
                "expected digits after `-` (to negate an expression after NOT, \
                 put it in parentheses: `NOT (-x)`)"
            } else {
                "expected digits after `+`"
            };
            return fail(p, message);
        }
        i = e;
        if self.byte(i) == Some(b'.') {
            i = self.digits(i + 1);
        }
        if matches!(self.byte(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(self.byte(j), Some(b'+' | b'-')) {
                j += 1;
            }
            let k = self.digits(j);
            if k > j {
                i = k;
            }
        }
        let text = self.slice(p, i);
        match text.parse::<f64>() {
            Ok(v) => {
                self.pos = i;
                Ok(Node::leaf(Expr::Float(v)))
            }
            Err(e) => fail(p, format!("invalid number `{text}`: {e}")),
        }
    }

    /// Reads a `q`-quoted token at `p` (a doubled `q` stands for one); returns its content and
    /// its end.
    #[inline(never)]
    fn quoted(&self, p: usize, q: char) -> Option<(String, usize)> {
        let mut out = String::new();
        let mut seg = p + 1;
        loop {
            let k = self.src.get(seg..)?.find(q)?;
            let at = seg + k;
            if self.ch(at + 1) == Some(q) {
                out.push_str(self.slice(seg, at + 1));
                seg = at + 2;
            } else {
                out.push_str(self.slice(seg, at));
                return Some((out, at + 1));
            }
        }
    }

    /// An atom starting with a letter: a WKT literal, `TRUE`, `FALSE`, `NULL`, a function call or
    /// a property name.
    #[inline(never)]
    fn name(&mut self, p: usize) -> Res<Simple> {
        if let Some(node) = self.try_geometry(p)? {
            return Ok(Simple::Done(node));
        }
        let keyword = if let Some(e) = self.word(p, "true") {
            Some((e, Expr::Bool(true)))
        } else if let Some(e) = self.word(p, "false") {
            Some((e, Expr::Bool(false)))
        } else {
            self.word(p, "null").map(|e| (e, Expr::Null))
        };
        if let Some((e, value)) = keyword {
            self.pos = e;
            return Ok(Simple::Done(Node::leaf(value)));
        }
        let mut end = p;
        while let Some(n) = self.name_char(end) {
            end += n;
        }
        let name = self.slice(p, end).to_string();
        Ok(self.after_identifier(name, p, end))
    }

    /// `Function | Identifier`: a call if `(` follows the name. A call that then fails to parse
    /// fails the filter: nothing that may follow a bare name starts with `(`.
    fn after_identifier(&mut self, name: String, at: usize, end: usize) -> Simple {
        let open = self.ws(end);
        if self.byte(open) == Some(b'(') {
            return Simple::Call { name, at, open };
        }
        self.pos = end;
        Simple::Done(Node::leaf(Expr::Property { property: name }))
    }

    /// `ExpressionInParentheses | Array`: both read `"(" ~ Expr` first, so read it once.
    #[inline(never)]
    fn group(&mut self, open: usize) -> Res<Node> {
        tri!(self.enter(open));
        self.pos = open + 1;
        let first = tri!(self.run(Ctx::Expr));
        let q = self.ws(self.pos);
        if self.byte(q) == Some(b')') {
            self.pos = q + 1;
            self.leave();
            return Ok(first);
        }
        if self.byte(q) != Some(b',') {
            return Err(self.err_close(q, open));
        }
        self.list(first, open, q)
    }

    /// The rest of an `Array`, from the `,` at `q` after its first element.
    #[inline(never)]
    fn list(&mut self, first: Node, open: usize, mut q: usize) -> Res<Node> {
        let mut items = vec![first];
        loop {
            self.pos = q + 1;
            let item = tri!(self.run(Ctx::Expr));
            items.push(item);
            q = self.ws(self.pos);
            match self.byte(q) {
                Some(b',') => {}
                Some(b')') => break,
                _ => return Err(self.err_list(q, open)),
            }
        }
        self.pos = q + 1;
        self.leave();
        self.array(items, open)
    }

    /// `Function = { Identifier ~ "(" ~ (Expr ~ ("," ~ Expr)*)? ~ ")" }`.
    #[inline(never)]
    fn call(&mut self, name: String, at: usize, open: usize) -> Res<Node> {
        let op = canonical_op(&name);
        let lower = op.to_lowercase();
        let outer_raw = self.raw;
        if lower == "date" || lower == "bbox" {
            // cql2's `normalize` leaves `Date` and `BBox` as parsed.
            self.raw = true;
        }
        tri!(self.enter(open));
        let mut args = Vec::new();
        let mut q = self.ws(open + 1);
        if self.byte(q) != Some(b')') {
            loop {
                self.pos = q;
                let arg = tri!(self.run(Ctx::Expr));
                args.push(arg);
                q = self.ws(self.pos);
                match self.byte(q) {
                    Some(b',') => q += 1,
                    Some(b')') => break,
                    _ => return Err(self.err_args(q, &name, open)),
                }
            }
        }
        self.pos = q + 1;
        self.leave();
        self.raw = outer_raw;
        self.build_call(op, &lower, args, at)
    }

    // ----- messages (out of line, to keep the recursive frames small) --------------------

    #[cold]
    #[inline(never)]
    fn err_at(&self, at: usize, message: &str) -> Box<ParseError> {
        Box::new(ParseError {
            offset: at,
            message: message.to_string(),
        })
    }

    #[cold]
    #[inline(never)]
    fn err_close(&self, q: usize, open: usize) -> Box<ParseError> {
        let message = format!(
            "expected `)` to close the `(` at byte {open}, found {}",
            self.found(q)
        );
        Box::new(ParseError { offset: q, message })
    }

    #[cold]
    #[inline(never)]
    fn err_list(&self, q: usize, open: usize) -> Box<ParseError> {
        let message = format!(
            "expected `,` or `)` to close the list opened at byte {open}, found {}",
            self.found(q)
        );
        Box::new(ParseError { offset: q, message })
    }

    #[cold]
    #[inline(never)]
    fn err_args(&self, q: usize, name: &str, open: usize) -> Box<ParseError> {
        let message = format!(
            "expected `,` or `)` in the arguments of `{name}` (opened at byte {open}), found {}",
            self.found(q)
        );
        Box::new(ParseError { offset: q, message })
    }

    #[cold]
    #[inline(never)]
    fn err_between(&self, q: usize, kw_at: usize) -> Box<ParseError> {
        let message = format!(
            "expected `AND` after the lower bound of the BETWEEN at byte {kw_at}, found {}",
            self.found(q)
        );
        Box::new(ParseError { offset: q, message })
    }

    // ----- WKT literals -----------------------------------------------------------------

    /// `GEOMETRY`, if one matches at `p`. A keyword that does not begin a well-formed literal is
    /// left for `Function | Identifier` (`POINT(1)` calls a function named `POINT`).
    #[inline(never)]
    fn try_geometry(&mut self, p: usize) -> Res<Option<Node>> {
        let mut g = Geo::default();
        let end = if self.kw(p, "GEOMETRYCOLLECTION") {
            g.failed = std::mem::take(&mut self.collections_failed);
            let end = self.g_collection(p, &mut g, 0);
            self.collections_failed = std::mem::take(&mut g.failed);
            end
        } else {
            self.g_single(p, &mut g)
        };
        if let Some(at) = g.too_deep {
            return Err(self.too_deep(at));
        }
        let Some(end) = end else {
            return Ok(None);
        };
        if g.collections > 1 {
            return fail(
                p,
                "a GEOMETRYCOLLECTION cannot contain another GEOMETRYCOLLECTION \
                 (cql2-json has no encoding for one)",
            );
        }
        let marker = match g.dim {
            4 => " ZM",
            3 => " Z",
            _ => "",
        };
        let text = if marker.is_empty() {
            collapse_whitespace(self.slice(p, end))
        } else {
            // Every geometry written without a marker gets the one the widest coordinate needs.
            g.slots.sort_unstable();
            let mut s = String::with_capacity(
                end.saturating_sub(p)
                    .saturating_add(g.slots.len().saturating_mul(3)),
            );
            let mut last = p;
            for (lo, hi) in g.slots.iter().copied() {
                s.push_str(self.slice(last, lo));
                s.push_str(marker);
                last = hi;
            }
            s.push_str(self.slice(last, end));
            collapse_whitespace(&s)
        };
        self.pos = end;
        Ok(Some(Node::leaf(Expr::Geometry(Geometry::Wkt(text)))))
    }

    /// `ZM = { WHITESPACE* ~ (^"ZM" | ^"Z" | ^"M")? ~ WHITESPACE* }`.
    fn g_zm(&self, start: usize, g: &mut Geo) -> usize {
        let mut i = self.ws(start);
        if self.kw(i, "ZM") {
            i += 2;
        } else if self.kw(i, "Z") || self.kw(i, "M") {
            i += 1;
        }
        i = self.ws(i);
        if self.slice(start, i).chars().all(char::is_whitespace) {
            g.slots.push((start, i));
        }
        i
    }

    /// `DECIMAL = @{ ("+" | "-")? ~ ASCII_DIGIT+ ~ ("." ~ ASCII_DIGIT*)? }`.
    fn g_decimal(&self, i: usize) -> Option<usize> {
        let s = if matches!(self.byte(i), Some(b'+' | b'-')) {
            i + 1
        } else {
            i
        };
        let e = self.digits(s);
        if e == s {
            return None;
        }
        if self.byte(e) == Some(b'.') {
            return Some(self.digits(e + 1));
        }
        Some(e)
    }

    /// `COORD = { PADDED_DECIMAL{4} | PADDED_DECIMAL{3} | PADDED_DECIMAL{2} }`.
    fn g_coord(&self, i: usize, g: &mut Geo) -> Option<usize> {
        let mut n = 0;
        let mut q = i;
        while n < 4 {
            match self.g_decimal(self.ws(q)) {
                Some(e) => {
                    q = self.ws(e);
                    n += 1;
                }
                None => break,
            }
        }
        if n < 2 {
            return None;
        }
        g.dim = g.dim.max(n);
        Some(q)
    }

    /// `WHITESPACE* ~ c ~ WHITESPACE*`.
    fn g_punct(&self, i: usize, c: u8) -> Option<usize> {
        let a = self.ws(i);
        (self.byte(a) == Some(c)).then(|| self.ws(a + 1))
    }

    /// `WHITESPACE* ~ "("`, without the whitespace after.
    fn g_open(&self, i: usize) -> Option<usize> {
        let a = self.ws(i);
        (self.byte(a) == Some(b'(')).then_some(a + 1)
    }

    /// `")" ~ WHITESPACE*` right at `i`.
    fn g_close(&self, i: usize) -> Option<usize> {
        (self.byte(i) == Some(b')')).then(|| self.ws(i + 1))
    }

    /// `PCOORD = { WHITESPACE* ~ "(" ~ COORD ~ ")" ~ WHITESPACE* }`.
    fn g_pcoord(&self, i: usize, g: &mut Geo) -> Option<usize> {
        let q = self.g_coord(self.g_open(i)?, g)?;
        self.g_close(q)
    }

    /// `PCOORDLIST = { WHITESPACE* ~ "(" ~ COORDLIST ~ ")" ~ WHITESPACE* }`, with
    /// `COORDLIST = { WHITESPACE* ~ COORD ~ (COMMADELIM ~ COORD)* ~ WHITESPACE* }`.
    fn g_pcoordlist(&self, i: usize, g: &mut Geo) -> Option<usize> {
        let mut q = self.g_coord(self.ws(self.g_open(i)?), g)?;
        while let Some(c) = self.g_punct(q, b',') {
            let mark = g.mark();
            match self.g_coord(c, g) {
                Some(e) => q = e,
                None => {
                    g.reset(mark);
                    break;
                }
            }
        }
        self.g_close(self.ws(q))
    }

    /// `PCOORDLISTLIST`: `(` PCOORDLIST (`,` PCOORDLIST)* `)`.
    fn g_pcll(&self, i: usize, g: &mut Geo) -> Option<usize> {
        let mut q = self.g_pcoordlist(self.g_open(i)?, g)?;
        while let Some(c) = self.g_punct(q, b',') {
            let mark = g.mark();
            match self.g_pcoordlist(c, g) {
                Some(e) => q = e,
                None => {
                    g.reset(mark);
                    break;
                }
            }
        }
        self.g_close(q)
    }

    /// `PCOORDLISTLISTLIST`: `(` PCOORDLISTLIST (`,` PCOORDLISTLIST)* `)`.
    fn g_pclll(&self, i: usize, g: &mut Geo) -> Option<usize> {
        let mut q = self.g_pcll(self.g_open(i)?, g)?;
        while let Some(c) = self.g_punct(q, b',') {
            let mark = g.mark();
            match self.g_pcll(c, g) {
                Some(e) => q = e,
                None => {
                    g.reset(mark);
                    break;
                }
            }
        }
        self.g_close(q)
    }

    /// `EMPTYSET = { ^"EMPTY" ~ !NameChar }`.
    fn g_empty(&self, i: usize) -> Option<usize> {
        self.word(i, "EMPTY")
    }

    /// Tries `first`, then `EMPTYSET`, forgetting what a failed `first` recorded.
    fn g_or_empty(
        &self,
        i: usize,
        g: &mut Geo,
        first: fn(&Self, usize, &mut Geo) -> Option<usize>,
    ) -> Option<usize> {
        let mark = g.mark();
        if let Some(e) = first(self, i, g) {
            return Some(e);
        }
        g.reset(mark);
        self.g_empty(i)
    }

    /// `GEOMETRY_SINGLE`: one of the six non-collection types, then `WHITESPACE*`.
    fn g_single(&self, p: usize, g: &mut Geo) -> Option<usize> {
        let (k, kind) = SINGLE_KINDS.iter().find(|(k, _)| self.kw(p, k))?;
        let q = self.g_zm(p + k.len(), g);
        let end = match kind {
            Kind::Point => self.g_or_empty(q, g, Self::g_pcoord),
            Kind::LineString => self.g_or_empty(q, g, Self::g_pcoordlist),
            Kind::Polygon | Kind::MultiLineString => self.g_or_empty(q, g, Self::g_pcll),
            Kind::MultiPolygon => self.g_or_empty(q, g, Self::g_pclll),
            Kind::MultiPoint => {
                let mark = g.mark();
                match self.g_pcoordlist(q, g) {
                    Some(e) => Some(e),
                    None => {
                        g.reset(mark);
                        self.g_or_empty(q, g, Self::g_pcll)
                    }
                }
            }
        }?;
        Some(self.ws(end))
    }

    /// `GEOMETRY_COLLECTION`; `nest` counts the collections this one is a member of.
    fn g_collection(&self, p: usize, g: &mut Geo, nest: usize) -> Option<usize> {
        let a = self.ws(p);
        if !self.kw(a, "GEOMETRYCOLLECTION") || g.failed.contains(&a) {
            return None;
        }
        if self.depth.saturating_add(nest) > self.max_depth {
            g.too_deep.get_or_insert(a);
            return None;
        }
        let end = self.g_collection_body(a, g, nest);
        if end.is_none() {
            g.failed.insert(a);
        }
        end
    }

    fn g_collection_body(&self, a: usize, g: &mut Geo, nest: usize) -> Option<usize> {
        let q = self.g_zm(a + "GEOMETRYCOLLECTION".len(), g);
        let end = if self.byte(q) == Some(b'(') {
            // GEOMETRY_MEMBERS = _{ "(" ~ GEOMETRY_MEMBER ~ (COMMADELIM ~ GEOMETRY_MEMBER)* ~ ")" }
            let mut e = self.g_member(q + 1, g, nest)?;
            while let Some(c) = self.g_punct(e, b',') {
                let mark = g.mark();
                match self.g_member(c, g, nest) {
                    Some(m) => e = m,
                    None => {
                        g.reset(mark);
                        break;
                    }
                }
            }
            (self.byte(e) == Some(b')')).then_some(e + 1)?
        } else {
            self.g_empty(q)?
        };
        g.collections += 1;
        Some(self.ws(end))
    }

    /// `GEOMETRY_MEMBER = ${ GEOMETRY_SINGLE | GEOMETRY_COLLECTION }`.
    fn g_member(&self, i: usize, g: &mut Geo, nest: usize) -> Option<usize> {
        let a = self.ws(i);
        if self.kw(a, "GEOMETRYCOLLECTION") {
            self.g_collection(a, g, nest + 1)
        } else {
            self.g_single(a, g)
        }
    }

    // ----- building the tree (cql2's `parse_expr` and `normalize`, node by node) -----------

    fn check_depth(&self, depth: usize, at: usize) -> Res<()> {
        if depth > self.max_depth {
            return Err(self.too_deep(at));
        }
        Ok(())
    }

    /// An `Operation`, normalized unless inside `DATE`/`BBOX`: canonical name, and an `and`
    /// (`or`) among the arguments of an `and` (`or`) spliced into it.
    #[inline(never)]
    fn operation(&self, op: &str, args: Vec<Node>, at: usize) -> Res<Node> {
        let op = match op {
            // Already canonical (what `canonical_op` returns for them), and the common case.
            "and" | "or" | "=" | "<>" | ">" | ">=" | "<" | "<=" | "like" | "in" | "+" | "-"
            | "*" | "/" | "%" | "^" | "div" | "not" | "isNull" | "between" => op.to_string(),
            _ if self.raw => op.to_string(),
            _ => canonical_op(op),
        };
        let flatten = !self.raw && (op == "and" || op == "or");
        let mut depth = 0;
        let mut out: Vec<Box<Expr>> = Vec::with_capacity(args.len());
        for arg in args {
            let arg_depth = arg.depth;
            if flatten && matches!(&*arg.expr, Expr::Operation { op: inner, .. } if *inner == op) {
                if let Expr::Operation {
                    args: inner_args, ..
                } = *arg.expr
                {
                    depth = depth.max(arg_depth.saturating_sub(1));
                    if out.is_empty() {
                        // Reuse a leading chain's vector, so `a and b and c …` stays linear.
                        out = inner_args;
                    } else {
                        out.extend(inner_args);
                    }
                }
                continue;
            }
            depth = depth.max(arg_depth);
            out.push(arg.expr);
        }
        let depth = depth + 1;
        self.check_depth(depth, at)?;
        Ok(Node {
            expr: Box::new(Expr::Operation { op, args: out }),
            depth,
        })
    }

    #[inline(never)]
    fn array(&self, items: Vec<Node>, at: usize) -> Res<Node> {
        let depth = items.iter().map(|n| n.depth).max().unwrap_or(0) + 1;
        self.check_depth(depth, at)?;
        Ok(Node {
            expr: Box::new(Expr::Array(items.into_iter().map(|n| n.expr).collect())),
            depth,
        })
    }

    /// A bound of `TIMESTAMP` or `INTERVAL`: cql2's `normalize_instant` rewrites a literal one.
    #[inline(never)]
    fn instant(&self, node: Node) -> Box<Expr> {
        if self.raw {
            return node.expr;
        }
        match *node.expr {
            Expr::Literal(s) => Box::new(Expr::Literal(canonical_timestamp(&s))),
            other => Box::new(other),
        }
    }

    #[inline(never)]
    fn negate(&self, node: Node, at: usize) -> Res<Node> {
        // A negated number is a number: `-2` is `Float(-2.0)`, not `-1 * 2`.
        if let Expr::Float(v) = *node.expr {
            return Ok(Node::leaf(Expr::Float(-v)));
        }
        self.operation("*", vec![Node::leaf(Expr::Float(-1.0)), node], at)
    }

    #[inline(never)]
    fn not(&self, node: Node, at: usize) -> Res<Node> {
        self.operation("not", vec![node], at)
    }

    #[inline(never)]
    fn apply_postfix(&self, postfix: Option<After>, lhs: Node) -> Res<Node> {
        match postfix {
            Some(After::IsNull { not, at }) => {
                let node = self.operation("isNull", vec![lhs], at)?;
                self.maybe_not(node, not, at)
            }
            Some(After::Between(between)) => {
                let Between { not, at, lo, hi } = *between;
                let node = self.operation("between", vec![lhs, lo, hi], at)?;
                self.maybe_not(node, not, at)
            }
            _ => Err(self.err_at(self.pos, "expected an operator")),
        }
    }

    #[inline(never)]
    fn maybe_not(&self, node: Node, not: bool, at: usize) -> Res<Node> {
        if not {
            self.operation("not", vec![node], at)
        } else {
            Ok(node)
        }
    }

    #[inline(never)]
    fn infix(&self, op: Op, not: bool, lhs: Node, rhs: Node, at: usize) -> Res<Node> {
        // `(1)` reads as a parenthesized scalar; the right operand of `IN` is always a list.
        let rhs = if op == Op::In && !matches!(*rhs.expr, Expr::Array(_)) {
            self.array(vec![rhs], at)?
        } else {
            rhs
        };
        let node = self.operation(op.raw_name(), vec![lhs, rhs], at)?;
        self.maybe_not(node, not, at)
    }

    /// The `Rule::Function` arm of cql2's `parse_expr`.
    #[inline(never)]
    fn build_call(&self, op: String, lower: &str, mut args: Vec<Node>, at: usize) -> Res<Node> {
        // restore_single_element_array
        if cql2::ARRAYOPS.iter().any(|n| n.eq_ignore_ascii_case(&op)) {
            let mut wrapped = Vec::with_capacity(args.len());
            for arg in args {
                if matches!(*arg.expr, Expr::Float(_) | Expr::Literal(_) | Expr::Bool(_)) {
                    wrapped.push(self.array(vec![arg], at)?);
                } else {
                    wrapped.push(arg);
                }
            }
            args = wrapped;
        }
        let depth = args.iter().map(|n| n.depth).max().unwrap_or(0) + 1;
        match lower {
            "interval" => {
                self.check_depth(depth, at)?;
                let interval = args.into_iter().map(|n| self.instant(n)).collect();
                Ok(Node {
                    expr: Box::new(Expr::Interval { interval }),
                    depth,
                })
            }
            "timestamp" | "date" => {
                let Some(first) = args.into_iter().next() else {
                    return fail(at, format!("`{op}` needs an argument"));
                };
                let depth = first.depth + 1;
                self.check_depth(depth, at)?;
                let expr = if lower == "date" {
                    Expr::Date { date: first.expr }
                } else {
                    Expr::Timestamp {
                        timestamp: self.instant(first),
                    }
                };
                Ok(Node {
                    expr: Box::new(expr),
                    depth,
                })
            }
            "bbox" => {
                self.check_depth(depth, at)?;
                Ok(Node {
                    expr: Box::new(Expr::BBox {
                        bbox: args.into_iter().map(|n| n.expr).collect(),
                    }),
                    depth,
                })
            }
            "in" => {
                // `in(a, 1, 2)` is `a IN (1, 2)`.
                let mut args = args.into_iter();
                let Some(value) = args.next() else {
                    return fail(at, format!("`{op}` needs a value to look for"));
                };
                let rest: Vec<Node> = args.collect();
                let list = if rest.len() == 1 {
                    let mut rest = rest.into_iter();
                    match rest.next() {
                        Some(n) if matches!(*n.expr, Expr::Array(_)) => n,
                        Some(n) => self.array(vec![n], at)?,
                        None => self.array(Vec::new(), at)?,
                    }
                } else {
                    self.array(rest, at)?
                };
                self.operation(&op, vec![value, list], at)
            }
            _ => self.operation(&op, args, at),
        }
    }
}

#[cfg(test)]
#[path = "cql2_text_tests.rs"]
mod tests;
