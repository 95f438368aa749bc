//! The Cloudflare Rules language: expressions such as
//! `http.request.uri.path matches "^/admin" and not ip.src in {10.0.0.0/8}`.
//!
//! An expression is parsed and type-checked once ([`Expression::compile`]) into a tree of typed
//! nodes, with regular expressions compiled (the `regex` crate: linear time, so a hostile
//! pattern cannot stall a PoP) and sets sorted; evaluation walks that tree against a
//! [`Request`] view. Errors name the byte offset and what was expected.
//!
//! Precedence, tightest first: `not`/`!`, `and`/`&&`, `xor`/`^^`, `or`/`||`.

mod lex;
mod scratch;

use std::net::IpAddr;

use lex::{lex, Tok, Token};
use scratch::{Bytes, Scratch};

/// Why an expression was refused: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at offset {pos}: {message}")]
pub struct RuleError {
    /// Byte offset in the expression.
    pub pos: usize,
    /// What is wrong.
    pub message: String,
}

/// What an expression reads from a request.
pub trait Request {
    /// `http.request.method`.
    fn method(&self) -> &[u8];
    /// `http.request.uri`: path and query (the path normalised, when the zone normalises).
    fn uri(&self) -> &[u8];
    /// `http.request.uri.path`.
    fn path(&self) -> &[u8];
    /// `http.request.uri.query` (without `?`).
    fn query(&self) -> &[u8];
    /// `raw.http.request.uri`: path and query as sent, before normalisation.
    fn raw_uri(&self) -> &[u8] {
        self.uri()
    }
    /// `raw.http.request.uri.path`.
    fn raw_path(&self) -> &[u8] {
        self.path()
    }
    /// `raw.http.request.uri.query`.
    fn raw_query(&self) -> &[u8] {
        self.query()
    }
    /// `http.host`.
    fn host(&self) -> &[u8];
    /// `http.request.version`: `HTTP/1.1`, `HTTP/2`.
    fn version(&self) -> &[u8];
    /// `ip.src`.
    fn ip_src(&self) -> IpAddr;
    /// `ssl`.
    fn ssl(&self) -> bool;
    /// Value `i` of header `name` (lower case), in order.
    fn header(&self, name: &str, i: usize) -> Option<&[u8]>;
    /// Header name `i` (lower case), in order.
    fn header_name(&self, i: usize) -> Option<&[u8]>;
    /// `cf.bot_management.ja4`: the TLS client's JA4 fingerprint (empty without TLS).
    fn ja4(&self) -> &[u8] {
        b""
    }
}

/// Value types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bytes,
    Int,
    Ip,
    Bool,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Bytes => "a string",
            Ty::Int => "an integer",
            Ty::Ip => "an IP address",
            Ty::Bool => "a boolean",
        }
    }
}

/// A scalar at evaluation time.
#[derive(Debug, Clone, PartialEq)]
enum Scalar<'a> {
    Bytes(Bytes<'a>),
    Int(i64),
    Ip(IpAddr),
    Bool(bool),
}

/// Scalar fields.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Method,
    Uri,
    Path,
    Query,
    RawUri,
    RawPath,
    RawQuery,
    Host,
    UserAgent,
    Referer,
    Cookie,
    Ja4,
    Version,
    IpSrc,
    Ssl,
}

/// A typed value node. `array` nodes yield many values (header values, `[*]`).
#[derive(Debug, Clone)]
enum Val {
    Field(Field),
    /// `http.request.headers["name"]` (all values); with `[*]` or inside functions, an array.
    Header(String),
    /// `http.request.headers.names`.
    HeaderNames,
    /// `array[i]`.
    Index(Box<Val>, usize),
    Lower(Box<Val>),
    Upper(Box<Val>),
    UrlDecode(Box<Val>),
    Len(Box<Val>),
    Concat(Vec<Val>),
    Str(String),
    Int(i64),
    StartsWith(Box<Val>, Box<Val>),
    EndsWith(Box<Val>, Box<Val>),
    Any(Box<Pred>),
    All(Box<Pred>),
}

impl Val {
    fn ty(&self) -> Ty {
        match self {
            Val::Field(Field::IpSrc) => Ty::Ip,
            Val::Field(Field::Ssl) => Ty::Bool,
            Val::Len(_) | Val::Int(_) => Ty::Int,
            Val::StartsWith(..) | Val::EndsWith(..) | Val::Any(_) | Val::All(_) => Ty::Bool,
            _ => Ty::Bytes,
        }
    }

    fn is_array(&self) -> bool {
        match self {
            Val::Header(_) | Val::HeaderNames => true,
            Val::Lower(v) | Val::Upper(v) | Val::UrlDecode(v) | Val::Len(v) => v.is_array(),
            _ => false,
        }
    }

    /// Calls `f` with each value (one for a scalar) until it returns true; returns whether it
    /// did.
    fn each<'a>(&'a self, r: &'a dyn Request, f: &mut dyn FnMut(Scalar<'a>) -> bool) -> bool {
        match self {
            Val::Header(name) => (0..)
                .map_while(|i| r.header(name, i))
                .any(|v| f(Scalar::Bytes(Bytes::Borrowed(v)))),
            Val::HeaderNames => (0..)
                .map_while(|i| r.header_name(i))
                .any(|v| f(Scalar::Bytes(Bytes::Borrowed(v)))),
            Val::Lower(v) | Val::Upper(v) | Val::UrlDecode(v) | Val::Len(v) if v.is_array() => {
                v.each(r, &mut |s| f(self.map(s)))
            }
            _ => f(self.scalar(r)),
        }
    }

    /// Applies a function node to one value of its argument.
    fn map<'a>(&self, s: Scalar<'a>) -> Scalar<'a> {
        let Scalar::Bytes(b) = s else { return s };
        match self {
            Val::Lower(_) => Scalar::Bytes(if b.iter().any(u8::is_ascii_uppercase) {
                Bytes::Scratch(Scratch::from_iter(b.iter().map(u8::to_ascii_lowercase)))
            } else {
                b
            }),
            Val::Upper(_) => Scalar::Bytes(if b.iter().any(u8::is_ascii_lowercase) {
                Bytes::Scratch(Scratch::from_iter(b.iter().map(u8::to_ascii_uppercase)))
            } else {
                b
            }),
            Val::UrlDecode(_) => Scalar::Bytes(url_decode(b)),
            Val::Len(_) => Scalar::Int(b.len() as i64),
            _ => Scalar::Bytes(b),
        }
    }

    fn scalar<'a>(&'a self, r: &'a dyn Request) -> Scalar<'a> {
        let bytes = |b: &'a [u8]| Scalar::Bytes(Bytes::Borrowed(b));
        let header = |name: &str| bytes(r.header(name, 0).unwrap_or(b""));
        match self {
            Val::Field(Field::IpSrc) => Scalar::Ip(r.ip_src()),
            Val::Field(Field::Ssl) => Scalar::Bool(r.ssl()),
            Val::Field(f) => bytes(field_bytes(r, *f)),
            Val::Header(name) => header(name),
            Val::HeaderNames => bytes(r.header_name(0).unwrap_or(b"")),
            Val::Index(arr, i) => {
                let mut n = 0;
                let mut out = Scalar::Bytes(Bytes::Borrowed(b""));
                arr.each(r, &mut |s| {
                    if n == *i {
                        out = s;
                        return true;
                    }
                    n += 1;
                    false
                });
                out
            }
            Val::Lower(v) | Val::Upper(v) | Val::UrlDecode(v) | Val::Len(v) => {
                self.map(v.scalar(r))
            }
            Val::Concat(parts) => {
                let mut out = Scratch::take();
                for p in parts {
                    if let Scalar::Bytes(b) = p.scalar(r) {
                        out.extend_from_slice(&b);
                    }
                }
                Scalar::Bytes(Bytes::Scratch(out))
            }
            Val::Str(s) => bytes(s.as_bytes()),
            Val::Int(i) => Scalar::Int(*i),
            Val::StartsWith(a, b) | Val::EndsWith(a, b) => {
                let (Scalar::Bytes(x), Scalar::Bytes(y)) = (a.scalar(r), b.scalar(r)) else {
                    return Scalar::Bool(false);
                };
                Scalar::Bool(if matches!(self, Val::StartsWith(..)) {
                    x.starts_with(&y)
                } else {
                    x.ends_with(&y)
                })
            }
            Val::Any(p) => Scalar::Bool(p.eval_any(r)),
            Val::All(p) => Scalar::Bool(p.eval_all(r)),
        }
    }
}

/// One to three bytes of which every match of a regular expression starts with one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FirstBytes([u8; 3], usize);

impl FirstBytes {
    /// From the pattern's prefix literals (as the `regex` crate parses a bytes pattern), when
    /// they are finite, none is empty and they start with at most three distinct bytes.
    fn of(pattern: &str) -> Option<FirstBytes> {
        use regex_syntax::hir::literal::{ExtractKind, Extractor};
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(pattern)
            .ok()?;
        let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
        let mut firsts = Vec::new();
        for lit in seq.literals()? {
            let b = *lit.as_bytes().first()?;
            if !firsts.contains(&b) {
                firsts.push(b);
            }
        }
        if firsts.is_empty() || firsts.len() > 3 {
            return None;
        }
        let mut a = [firsts[0]; 3];
        a[..firsts.len()].copy_from_slice(&firsts);
        Some(FirstBytes(a, firsts.len()))
    }

    fn occurs_in(self, hay: &[u8]) -> bool {
        let [a, b, c] = self.0;
        match self.1 {
            1 => memchr::memchr(a, hay).is_some(),
            2 => memchr::memchr2(a, b, hay).is_some(),
            _ => memchr::memchr3(a, b, c, hay).is_some(),
        }
    }
}

/// A string field's value (empty for the IP and boolean fields).
fn field_bytes(r: &dyn Request, f: Field) -> &[u8] {
    let header = |name: &str| r.header(name, 0).unwrap_or(b"");
    match f {
        Field::Method => r.method(),
        Field::Uri => r.uri(),
        Field::Path => r.path(),
        Field::Query => r.query(),
        Field::RawUri => r.raw_uri(),
        Field::RawPath => r.raw_path(),
        Field::RawQuery => r.raw_query(),
        Field::Host => r.host(),
        Field::Version => r.version(),
        Field::UserAgent => header("user-agent"),
        Field::Referer => header("referer"),
        Field::Cookie => header("cookie"),
        Field::Ja4 => r.ja4(),
        Field::IpSrc | Field::Ssl => b"",
    }
}

/// Percent-decoding (and `+` as space), borrowing when there is nothing to decode.
fn url_decode(b: Bytes<'_>) -> Bytes<'_> {
    if memchr::memchr2(b'%', b'+', &b).is_none() {
        return b;
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Scratch::take();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    Bytes::Scratch(out)
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The right-hand side of a predicate.
#[derive(Debug, Clone)]
enum Rhs {
    Cmp(Cmp, Scalar<'static>),
    Contains(Vec<u8>),
    /// `lower(x) contains "abc"` without lowering `x`: an ASCII case-insensitive search.
    ContainsCi(Vec<u8>),
    /// `lower(x) eq "abc"` (or ne) without lowering `x`.
    EqCi(Vec<u8>, bool),
    /// A regular expression, and the bytes every match starts with when there are at most
    /// three (a `memchr` over the value skips the regex engine for most requests).
    Matches(regex::bytes::Regex, Option<FirstBytes>),
    /// Case-insensitive unless strict.
    Wildcard(Vec<u8>, bool),
    /// Strings, sorted.
    InBytes(Vec<Vec<u8>>),
    /// Integer ranges, inclusive.
    InInts(Vec<(i64, i64)>),
    /// Networks as (address, prefix length).
    InIps(Vec<(IpAddr, u8)>),
}

/// A typed predicate: a value tested against a right-hand side, or a boolean value.
#[derive(Debug, Clone)]
enum Pred {
    Test(Val, Rhs),
    /// `field eq "literal"` (`ne` when the flag is false) on a string field: the most common
    /// test, without building a value.
    FieldEq(Field, Vec<u8>, bool),
    /// `starts_with(field, "literal")` (`ends_with` when the flag is false).
    FieldAffix(Field, Vec<u8>, bool),
    Bool(Val),
    Not(Box<Pred>),
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Xor(Box<Pred>, Box<Pred>),
}

fn cmp_scalar(a: &Scalar<'_>, op: Cmp, b: &Scalar<'_>) -> bool {
    let ord = match (a, b) {
        (Scalar::Bytes(x), Scalar::Bytes(y)) => x.as_ref().cmp(y.as_ref()),
        (Scalar::Int(x), Scalar::Int(y)) => x.cmp(y),
        (Scalar::Ip(x), Scalar::Ip(y)) => x.cmp(y),
        (Scalar::Bool(x), Scalar::Bool(y)) => x.cmp(y),
        _ => return false,
    };
    use std::cmp::Ordering::*;
    match op {
        Cmp::Eq => ord == Equal,
        Cmp::Ne => ord != Equal,
        Cmp::Lt => ord == Less,
        Cmp::Le => ord != Greater,
        Cmp::Gt => ord == Greater,
        Cmp::Ge => ord != Less,
    }
}

fn ip_in(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// ASCII case-insensitive substring search (`needle` is lower case): candidates are found by
/// the first byte in either case, then compared.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if hay.len() < needle.len() {
        return false;
    }
    let last_start = hay.len() - needle.len();
    let mut at = 0;
    while at <= last_start {
        let found = match memchr::memchr2(first, first.to_ascii_uppercase(), &hay[at..=last_start])
        {
            Some(i) => at + i,
            None => return false,
        };
        if hay[found + 1..found + needle.len()].eq_ignore_ascii_case(rest) {
            return true;
        }
        at = found + 1;
    }
    false
}

/// Glob match: `*` matches any run of bytes; case-insensitive unless `strict`.
fn wildcard(pattern: &[u8], text: &[u8], strict: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if strict {
            a == b
        } else {
            a.eq_ignore_ascii_case(&b)
        }
    };
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if p < pattern.len() && eq(pattern[p], text[t]) {
            p += 1;
            t += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

impl Rhs {
    fn test(&self, s: &Scalar<'_>) -> bool {
        match (self, s) {
            (Rhs::Cmp(op, lit), v) => cmp_scalar(v, *op, lit),
            (Rhs::Contains(needle), Scalar::Bytes(b)) => memchr::memmem::find(b, needle).is_some(),
            (Rhs::ContainsCi(needle), Scalar::Bytes(b)) => contains_ci(b, needle),
            (Rhs::EqCi(lit, eq), Scalar::Bytes(b)) => b.eq_ignore_ascii_case(lit) == *eq,
            (Rhs::Matches(re, first), Scalar::Bytes(b)) => {
                first.is_none_or(|f| f.occurs_in(b)) && re.is_match(b)
            }
            (Rhs::Wildcard(p, strict), Scalar::Bytes(b)) => wildcard(p, b, *strict),
            (Rhs::InBytes(set), Scalar::Bytes(b)) => set
                .binary_search_by(|x| x.as_slice().cmp(b.as_ref()))
                .is_ok(),
            (Rhs::InInts(ranges), Scalar::Int(i)) => ranges.iter().any(|(a, z)| a <= i && i <= z),
            (Rhs::InIps(nets), Scalar::Ip(ip)) => nets.iter().any(|(n, l)| ip_in(*ip, *n, *l)),
            _ => false,
        }
    }
}

impl Pred {
    fn eval(&self, r: &dyn Request) -> bool {
        match self {
            Pred::Test(v, rhs) => {
                // A multi-valued field outside any()/all() tests its first value.
                rhs.test(&v.scalar(r))
            }
            Pred::FieldEq(f, lit, eq) => (field_bytes(r, *f) == lit.as_slice()) == *eq,
            Pred::FieldAffix(f, lit, true) => field_bytes(r, *f).starts_with(lit),
            Pred::FieldAffix(f, lit, false) => field_bytes(r, *f).ends_with(lit),
            Pred::Bool(v) => matches!(v.scalar(r), Scalar::Bool(true)),
            Pred::Not(p) => !p.eval(r),
            Pred::And(ps) => ps.iter().all(|p| p.eval(r)),
            Pred::Or(ps) => ps.iter().any(|p| p.eval(r)),
            Pred::Xor(a, b) => a.eval(r) != b.eval(r),
        }
    }

    /// `any(...)`: true when the test holds for some value of the array.
    fn eval_any(&self, r: &dyn Request) -> bool {
        match self {
            Pred::Test(v, rhs) => v.each(r, &mut |s| rhs.test(&s)),
            p => p.eval(r),
        }
    }

    /// `all(...)`: true when there are values and the test holds for every one.
    fn eval_all(&self, r: &dyn Request) -> bool {
        match self {
            Pred::Test(v, rhs) => {
                let mut seen = false;
                let failed = v.each(r, &mut |s| {
                    seen = true;
                    !rhs.test(&s)
                });
                seen && !failed
            }
            p => p.eval(r),
        }
    }
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Expression {
    pred: Pred,
    source: String,
}

impl Expression {
    /// Parses and type-checks `source`.
    pub fn compile(source: &str) -> Result<Expression, RuleError> {
        if source.len() > MAX_LEN {
            return Err(RuleError {
                pos: 0,
                message: format!("longer than {MAX_LEN} bytes"),
            });
        }
        let tokens = lex(source)?;
        let mut p = Parser {
            tokens,
            at: 0,
            depth: 0,
        };
        let pred = p.or()?;
        let t = p.peek();
        if t.tok != Tok::End {
            return Err(p.err_at(
                t.pos,
                "expected `and`, `or`, `xor` or the end of the expression",
            ));
        }
        Ok(Expression {
            pred,
            source: source.to_string(),
        })
    }

    /// Whether the request matches.
    pub fn matches(&self, r: &dyn Request) -> bool {
        self.pred.eval(r)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The longest expression accepted (Cloudflare allows 4 KiB per rule expression).
pub const MAX_LEN: usize = 4096;
/// The deepest nesting of parentheses, `not` and function calls.
const MAX_DEPTH: usize = 64;

/// `lower(x) contains/eq/ne "lowercase literal"` compares `x` case-insensitively instead of
/// building a lowered copy of it for every request.
fn lower_without_copy(lhs: Val, rhs: Rhs) -> Pred {
    let lowercase = |b: &[u8]| !b.iter().any(u8::is_ascii_uppercase);
    match (lhs, rhs) {
        (Val::Lower(inner), Rhs::Contains(n)) if !inner.is_array() && lowercase(&n) => {
            Pred::Test(*inner, Rhs::ContainsCi(n))
        }
        (Val::Lower(inner), Rhs::Cmp(op @ (Cmp::Eq | Cmp::Ne), Scalar::Bytes(lit)))
            if !inner.is_array() && lowercase(&lit) =>
        {
            Pred::Test(*inner, Rhs::EqCi(lit.to_vec(), op == Cmp::Eq))
        }
        (Val::Field(f), Rhs::Cmp(op @ (Cmp::Eq | Cmp::Ne), Scalar::Bytes(lit)))
            if !matches!(f, Field::IpSrc | Field::Ssl) =>
        {
            Pred::FieldEq(f, lit.to_vec(), op == Cmp::Eq)
        }
        (lhs, rhs) => Pred::Test(lhs, rhs),
    }
}

/// `starts_with(field, "literal")` and `ends_with(field, "literal")` test the field in place.
fn affix_in_place(v: Val) -> Pred {
    let starts = matches!(v, Val::StartsWith(..));
    match v {
        Val::StartsWith(a, b) | Val::EndsWith(a, b) => match (*a, *b) {
            (Val::Field(f), Val::Str(lit)) if !matches!(f, Field::IpSrc | Field::Ssl) => {
                Pred::FieldAffix(f, lit.into_bytes(), starts)
            }
            (a, b) => Pred::Bool(if starts {
                Val::StartsWith(Box::new(a), Box::new(b))
            } else {
                Val::EndsWith(Box::new(a), Box::new(b))
            }),
        },
        v => Pred::Bool(v),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

fn is_word(t: &Tok, w: &str) -> bool {
    matches!(t, Tok::Ident(s) if s == w)
}

impl Parser {
    fn peek(&self) -> Token {
        self.tokens[self.at.min(self.tokens.len() - 1)].clone()
    }

    fn next(&mut self) -> Token {
        let t = self.peek();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn err_at(&self, pos: usize, message: impl Into<String>) -> RuleError {
        RuleError {
            pos,
            message: message.into(),
        }
    }

    fn expect_punct(&mut self, c: char) -> Result<(), RuleError> {
        let t = self.next();
        if t.tok == Tok::Punct(c) {
            Ok(())
        } else {
            Err(self.err_at(t.pos, format!("expected `{c}`")))
        }
    }

    fn deeper(&mut self, pos: usize) -> Result<(), RuleError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_at(pos, format!("nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Pred, RuleError> {
        let mut items = vec![self.xor()?];
        loop {
            let t = self.peek();
            if is_word(&t.tok, "or") || t.tok == Tok::Sym("||") {
                self.next();
                items.push(self.xor()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one")
        } else {
            Pred::Or(items)
        })
    }

    fn xor(&mut self) -> Result<Pred, RuleError> {
        let mut left = self.and()?;
        loop {
            let t = self.peek();
            if is_word(&t.tok, "xor") || t.tok == Tok::Sym("^^") {
                self.next();
                let right = self.and()?;
                left = Pred::Xor(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn and(&mut self) -> Result<Pred, RuleError> {
        let mut items = vec![self.not()?];
        loop {
            let t = self.peek();
            if is_word(&t.tok, "and") || t.tok == Tok::Sym("&&") {
                self.next();
                items.push(self.not()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one")
        } else {
            Pred::And(items)
        })
    }

    fn not(&mut self) -> Result<Pred, RuleError> {
        let t = self.peek();
        if is_word(&t.tok, "not") || t.tok == Tok::Sym("!") {
            self.next();
            self.deeper(t.pos)?;
            let p = self.not()?;
            self.depth -= 1;
            return Ok(Pred::Not(Box::new(p)));
        }
        if t.tok == Tok::Punct('(') {
            self.next();
            self.deeper(t.pos)?;
            let p = self.or()?;
            self.depth -= 1;
            self.expect_punct(')')?;
            return Ok(p);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Pred, RuleError> {
        let start = self.peek().pos;
        let lhs = self.value()?;
        let t = self.peek();
        let op = match &t.tok {
            Tok::Ident(w) => w.clone(),
            Tok::Sym(s) => s.to_string(),
            _ => String::new(),
        };
        let (op, strict) = if op == "strict" {
            self.next();
            let w = self.peek();
            if !is_word(&w.tok, "wildcard") {
                return Err(self.err_at(w.pos, "expected `wildcard` after `strict`"));
            }
            ("wildcard".to_string(), true)
        } else {
            (op, false)
        };
        let cmp = match op.as_str() {
            "eq" | "==" => Some(Cmp::Eq),
            "ne" | "!=" => Some(Cmp::Ne),
            "lt" | "<" => Some(Cmp::Lt),
            "le" | "<=" => Some(Cmp::Le),
            "gt" | ">" => Some(Cmp::Gt),
            "ge" | ">=" => Some(Cmp::Ge),
            _ => None,
        };
        let known = cmp.is_some()
            || matches!(
                op.as_str(),
                "contains" | "matches" | "~" | "wildcard" | "in"
            );
        if !known {
            // A bare value: it must be a boolean.
            if lhs.ty() != Ty::Bool {
                return Err(self.err_at(
                    t.pos,
                    format!(
                        "{} needs a comparison (eq, contains, matches, in, ...)",
                        lhs.ty().name()
                    ),
                ));
            }
            return Ok(affix_in_place(lhs));
        }
        self.next();
        let ty = lhs.ty();
        let rhs_tok = self.peek();
        let bad = |p: &Parser, what: &str| {
            p.err_at(rhs_tok.pos, format!("`{op}` on {} needs {what}", ty.name()))
        };
        let rhs = match (op.as_str(), cmp) {
            (_, Some(c)) => {
                let lit = match (ty, self.next().tok) {
                    (Ty::Bytes, Tok::Str(s)) => Scalar::Bytes(Bytes::Literal(s.into_bytes())),
                    (Ty::Int, Tok::Int(i)) => Scalar::Int(i),
                    (Ty::Ip, Tok::Ip(ip, None)) if matches!(c, Cmp::Eq | Cmp::Ne) => Scalar::Ip(ip),
                    (Ty::Bool, Tok::Ident(w)) if w == "true" || w == "false" => {
                        Scalar::Bool(w == "true")
                    }
                    (Ty::Ip, _) => return Err(bad(self, "an IP address (and only eq or ne)")),
                    (Ty::Bytes, _) => return Err(bad(self, "a quoted string")),
                    (Ty::Int, _) => return Err(bad(self, "an integer")),
                    (Ty::Bool, _) => return Err(bad(self, "true or false")),
                };
                Rhs::Cmp(c, lit)
            }
            ("contains", _) | ("matches", _) | ("~", _) | ("wildcard", _) => {
                let Tok::Str(s) = self.next().tok else {
                    return Err(bad(self, "a quoted string"));
                };
                if ty != Ty::Bytes {
                    return Err(bad(self, "a string field"));
                }
                match op.as_str() {
                    "contains" => Rhs::Contains(s.into_bytes()),
                    "wildcard" => Rhs::Wildcard(s.into_bytes(), strict),
                    _ => Rhs::Matches(
                        regex::bytes::RegexBuilder::new(&s)
                            .size_limit(1 << 20)
                            .build()
                            .map_err(|e| {
                                self.err_at(
                                    rhs_tok.pos,
                                    format!("not a valid regular expression: {e}"),
                                )
                            })?,
                        FirstBytes::of(&s),
                    ),
                }
            }
            _ => self.set(ty)?,
        };
        let _ = start;
        Ok(lower_without_copy(lhs, rhs))
    }

    /// `{ ... }` of literals of the value's type; integers may be ranges (`80..89`), IP
    /// addresses may be networks (`10.0.0.0/8`).
    fn set(&mut self, ty: Ty) -> Result<Rhs, RuleError> {
        self.expect_punct('{')?;
        let (mut bytes, mut ints, mut ips) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            let t = self.next();
            match (ty, t.tok) {
                (_, Tok::Punct('}')) => break,
                (Ty::Bytes, Tok::Str(s)) => bytes.push(s.into_bytes()),
                (Ty::Int, Tok::Int(a)) => {
                    if self.peek().tok == Tok::Range {
                        self.next();
                        let end = self.next();
                        let Tok::Int(z) = end.tok else {
                            return Err(self.err_at(end.pos, "expected the end of the range"));
                        };
                        if z < a {
                            return Err(
                                self.err_at(end.pos, "a range must not end below its start")
                            );
                        }
                        ints.push((a, z));
                    } else {
                        ints.push((a, a));
                    }
                }
                (Ty::Ip, Tok::Ip(ip, len)) => {
                    ips.push((ip, len.unwrap_or(if ip.is_ipv4() { 32 } else { 128 })))
                }
                (Ty::Bool, _) => return Err(self.err_at(t.pos, "`in` does not apply to booleans")),
                (_, Tok::End) => return Err(self.err_at(t.pos, "unterminated set: expected `}`")),
                _ => {
                    return Err(self.err_at(
                        t.pos,
                        format!("a set for {} holds only such values", ty.name()),
                    ))
                }
            }
        }
        Ok(match ty {
            Ty::Bytes => {
                bytes.sort();
                bytes.dedup();
                Rhs::InBytes(bytes)
            }
            Ty::Int => Rhs::InInts(ints),
            _ => Rhs::InIps(ips),
        })
    }

    /// A field (with `["name"]`, `[0]`, `[*]`), a function call, or a literal argument.
    fn value(&mut self) -> Result<Val, RuleError> {
        let t = self.next();
        let name = match t.tok {
            Tok::Ident(n) => n,
            Tok::Str(s) => return Ok(Val::Str(s)),
            Tok::Int(i) => return Ok(Val::Int(i)),
            _ => return Err(self.err_at(t.pos, "expected a field or a function")),
        };
        if self.peek().tok == Tok::Punct('(') {
            return self.call(&name, t.pos);
        }
        let mut v = match name.as_str() {
            "http.request.method" => Val::Field(Field::Method),
            "http.request.uri" => Val::Field(Field::Uri),
            "http.request.uri.path" => Val::Field(Field::Path),
            "http.request.uri.query" => Val::Field(Field::Query),
            "raw.http.request.uri" => Val::Field(Field::RawUri),
            "raw.http.request.uri.path" => Val::Field(Field::RawPath),
            "raw.http.request.uri.query" => Val::Field(Field::RawQuery),
            "http.host" => Val::Field(Field::Host),
            "http.user_agent" => Val::Field(Field::UserAgent),
            "http.referer" => Val::Field(Field::Referer),
            "http.cookie" => Val::Field(Field::Cookie),
            "cf.bot_management.ja4" => Val::Field(Field::Ja4),
            "http.request.version" => Val::Field(Field::Version),
            "ip.src" => Val::Field(Field::IpSrc),
            "ssl" => Val::Field(Field::Ssl),
            "http.request.headers.names" => Val::HeaderNames,
            "http.request.headers" => {
                self.expect_punct('[')?;
                let k = self.next();
                let Tok::Str(h) = k.tok else {
                    return Err(self.err_at(k.pos, "expected a header name in quotes"));
                };
                self.expect_punct(']')?;
                Val::Header(h.to_ascii_lowercase())
            }
            _ => return Err(self.err_at(t.pos, format!("unknown field {name:?}"))),
        };
        while self.peek().tok == Tok::Punct('[') {
            let open = self.next();
            let k = self.next();
            match k.tok {
                Tok::Punct('*') if v.is_array() => {}
                Tok::Int(i) if v.is_array() => v = Val::Index(Box::new(v), i.max(0) as usize),
                _ => return Err(self.err_at(open.pos, "only arrays take [index] or [*]")),
            }
            self.expect_punct(']')?;
        }
        Ok(v)
    }

    fn call(&mut self, name: &str, pos: usize) -> Result<Val, RuleError> {
        self.expect_punct('(')?;
        self.deeper(pos)?;
        let v = match name {
            "any" | "all" => {
                let p = self.or()?;
                if name == "any" {
                    Val::Any(Box::new(p))
                } else {
                    Val::All(Box::new(p))
                }
            }
            _ => {
                let mut args = Vec::new();
                if self.peek().tok != Tok::Punct(')') {
                    loop {
                        args.push(self.value()?);
                        if self.peek().tok == Tok::Punct(',') {
                            self.next();
                        } else {
                            break;
                        }
                    }
                }
                let one_string = |p: &Parser, args: &mut Vec<Val>| {
                    if args.len() != 1 || args[0].ty() != Ty::Bytes {
                        return Err(p.err_at(pos, format!("{name}() takes one string")));
                    }
                    Ok(Box::new(args.pop().expect("one")))
                };
                match name {
                    "lower" => Val::Lower(one_string(self, &mut args)?),
                    "upper" => Val::Upper(one_string(self, &mut args)?),
                    "url_decode" => Val::UrlDecode(one_string(self, &mut args)?),
                    "len" => Val::Len(one_string(self, &mut args)?),
                    "concat" => {
                        if args.is_empty()
                            || args.iter().any(|a| a.ty() != Ty::Bytes || a.is_array())
                        {
                            return Err(self.err_at(pos, "concat() takes one or more strings"));
                        }
                        Val::Concat(args)
                    }
                    "starts_with" | "ends_with" => {
                        if args.len() != 2 || args.iter().any(|a| a.ty() != Ty::Bytes) {
                            return Err(self.err_at(pos, format!("{name}() takes two strings")));
                        }
                        let b = Box::new(args.pop().expect("two"));
                        let a = Box::new(args.pop().expect("two"));
                        if name == "starts_with" {
                            Val::StartsWith(a, b)
                        } else {
                            Val::EndsWith(a, b)
                        }
                    }
                    _ => return Err(self.err_at(pos, format!("unknown function {name}()"))),
                }
            }
        };
        self.depth -= 1;
        self.expect_punct(')')?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests;
