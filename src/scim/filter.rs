//! `scim::filter` parses and evaluates RFC 7644 §3.4.2.2 filters
//! (`userName eq "x"`, `emails[type eq "work" and value co "@x"]`, ...) and
//! the PATCH `path` grammar of §3.5.2, which shares its attribute paths and
//! bracketed value filters. It evaluates a filter against the SCIM JSON
//! representation of one resource, with RFC 7643 caseExact rules taken from
//! `scim::attrs`, and recognises the filter shapes a directory index can
//! answer (`Filter::indexed_eq`).
//!
//! It refuses to know about storage: which index exists, and how a lookup
//! is run, is the directory's business; this module only says "every match
//! has userName = x". It knows nothing about HTTP either: every refusal is a
//! `ScimError` (`invalidFilter` for filters, `invalidPath` for PATCH paths).
//!
//! **Why a hand-written parser, not `scim_v2`.** The grammar is small (one
//! recursive-descent function per precedence level) and `scim_v2` 1.0's
//! LALRPOP grammar refuses two inputs real clients send: Entra's
//! `emails[type eq "work"].value eq "x"` (a value path followed by a
//! sub-attribute comparison) and `not(...)` without a space, which the RFC
//! ABNF allows. Owning the parser also gives our own limits
//! ([`MAX_FILTER_LEN`], [`MAX_FILTER_DEPTH`], checked while parsing so
//! recursion is bounded), error messages with offsets, and one AST for both
//! filters and PATCH paths. It is fuzzed by the tests at the end of this
//! file (random and mutated inputs never panic; printed filters re-parse to
//! the same tree).
//!
//! **Semantics chosen where the RFC is silent** (pinned by tests):
//! - Comparisons whose literal cannot apply are refused at parse time with
//!   `invalidFilter`: `gt`/`ge`/`lt`/`le` with `true`/`false`/`null`, and
//!   `co`/`sw`/`ew` with anything but a string. A comparison whose literal
//!   type differs from the stored value's (`active eq "true"`,
//!   `userName gt 3`) simply does not match.
//! - `x eq null` means "x is not present" and `x ne null` means "x is
//!   present", following RFC 7643 §2.5 (null and unassigned are the same).
//! - `ne` is the negation of `eq`: it matches an absent attribute, and on a
//!   multi-valued attribute it requires that no value be equal, so
//!   `a ne "x"` always means the same as `not (a eq "x")`.
//! - A complex attribute compared without a sub-attribute (`emails eq "x"`,
//!   `members eq "id"`) compares its `value` sub-attribute.
//! - dateTime attributes (`meta.created`, `meta.lastModified`) compare as
//!   instants when both sides parse as RFC 3339, else as plain strings.
//! - Attribute names and schema URNs are case-insensitive; names without a
//!   URN are core-schema attributes (RFC 7644 §3.10); a URN this gateway
//!   does not know finds nothing rather than failing.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Number, Value};

use super::attrs::{self, AttrDef, AttrType, ResourceKind};
use super::error::ScimError;

/// Longest filter (and PATCH path) accepted, in bytes. Real filters are a
/// few dozen bytes; this bounds parsing work per request.
pub const MAX_FILTER_LEN: usize = 4096;

/// Deepest nesting of `(`, `not (` and `[` accepted. Parsing recurses once
/// per level, so this bound is what keeps a hostile filter from
/// overflowing the stack.
pub const MAX_FILTER_DEPTH: usize = 32;

/// `[URN ":"] name ["." sub]`, as written (RFC 7644 §3.4.2.2 `attrPath`).
/// Names keep the client's spelling; lookups compare case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    /// Schema URN prefix, e.g. the enterprise extension's.
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// True if the path names attribute `name` of the resource's core schema
    /// with no sub-attribute.
    fn is_core(&self, kind: ResourceKind, name: &str) -> bool {
        self.in_core(kind) && self.sub.is_none() && self.name.eq_ignore_ascii_case(name)
    }

    /// True if the path is unqualified or qualified with the core URN.
    fn in_core(&self, kind: ResourceKind) -> bool {
        self.urn.as_deref().is_none_or(|u| kind.is_core_schema(u))
    }
}

/// RFC 7644 Table 3 comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn from_word(w: &str) -> Option<Self> {
        const OPS: [(&str, CompareOp); 9] = [
            ("eq", CompareOp::Eq),
            ("ne", CompareOp::Ne),
            ("co", CompareOp::Co),
            ("sw", CompareOp::Sw),
            ("ew", CompareOp::Ew),
            ("gt", CompareOp::Gt),
            ("ge", CompareOp::Ge),
            ("lt", CompareOp::Lt),
            ("le", CompareOp::Le),
        ];
        OPS.iter()
            .find(|(name, _)| w.eq_ignore_ascii_case(name))
            .map(|(_, op)| *op)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Co => "co",
            Self::Sw => "sw",
            Self::Ew => "ew",
            Self::Gt => "gt",
            Self::Ge => "ge",
            Self::Lt => "lt",
            Self::Le => "le",
        }
    }

    fn is_ordering(self) -> bool {
        matches!(self, Self::Gt | Self::Ge | Self::Lt | Self::Le)
    }

    fn is_substring(self) -> bool {
        matches!(self, Self::Co | Self::Sw | Self::Ew)
    }

    /// Whether `ord` (stored value vs literal) satisfies an ordering or
    /// equality operator.
    fn accepts(self, ord: Ordering) -> bool {
        match self {
            Self::Eq => ord == Ordering::Equal,
            Self::Gt => ord == Ordering::Greater,
            Self::Ge => ord != Ordering::Less,
            Self::Lt => ord == Ordering::Less,
            Self::Le => ord != Ordering::Greater,
            Self::Ne | Self::Co | Self::Sw | Self::Ew => false,
        }
    }
}

/// The JSON literal on the right of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Num(Number),
    Str(String),
}

/// A parsed filter. `and`/`or` are n-ary so a long chain is flat, not deep.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `attr pr`
    Present(AttrPath),
    /// `attr op value`
    Compare(AttrPath, CompareOp, CompValue),
    /// `attr[inner]`: some value of multi-valued `attr` satisfies `inner`,
    /// whose attribute names are sub-attributes of `attr`. Entra's
    /// `attr[inner].sub op value` is parsed as `attr[inner and sub op value]`,
    /// which means the same thing.
    ValuePath(AttrPath, Box<Filter>),
    Not(Box<Filter>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// The directory indexes a filter can be answered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Indexed {
    /// User `userName` (case-insensitive).
    UserName,
    /// User or Group `externalId` (case-exact).
    ExternalId,
    /// User `emails.value` (case-insensitive).
    Email,
    /// Group `displayName` (case-insensitive).
    DisplayName,
}

impl Filter {
    /// Parses a filter; any error is `invalidFilter` with the offset.
    pub fn parse(s: &str) -> Result<Filter, ScimError> {
        parse_filter(s).map_err(|e| ScimError::invalid_filter(e.describe("filter")))
    }

    /// True if the resource (its SCIM JSON) satisfies the filter.
    pub fn matches(&self, resource: &Value, kind: ResourceKind) -> bool {
        eval(self, resource, kind, Scope::Resource)
    }

    /// True if one value of the multi-valued attribute `parent` satisfies
    /// this filter, read as the inside of `parent[...]`. `patch` uses it to
    /// select values for `emails[type eq "work"].value`.
    pub fn matches_value(
        &self,
        value: &Value,
        kind: ResourceKind,
        parent: Option<&'static AttrDef>,
    ) -> bool {
        eval(self, value, kind, Scope::Value(parent))
    }

    /// An index lookup that finds every resource this filter can match:
    /// `Some` when the filter is `userName eq "x"`, `externalId eq "x"`,
    /// `emails.value eq "x"` / `emails eq "x"` / `emails[value eq "x"]`
    /// (Users), or `displayName eq "x"` / `externalId eq "x"` (Groups), or a
    /// conjunction containing one of those. Each index compares the way the
    /// attribute's caseExact says, so the lookup misses nothing; the caller
    /// still runs [`Filter::matches`] on what it finds (the other conjuncts,
    /// and `emails[type eq "work"].value eq "x"`'s type, are not checked by
    /// the index). The value is returned as the client wrote it.
    pub fn indexed_eq(&self, kind: ResourceKind) -> Option<(Indexed, String)> {
        match self {
            Filter::Compare(path, CompareOp::Eq, CompValue::Str(v)) => {
                index_for(kind, path).map(|i| (i, v.clone()))
            }
            Filter::ValuePath(path, inner)
                if kind == ResourceKind::User && path.is_core(kind, "emails") =>
            {
                inner_value_eq(inner).map(|v| (Indexed::Email, v))
            }
            Filter::And(items) => items.iter().find_map(|f| f.indexed_eq(kind)),
            _ => None,
        }
    }
}

fn index_for(kind: ResourceKind, path: &AttrPath) -> Option<Indexed> {
    if !path.in_core(kind) {
        return None;
    }
    let name = path.name.as_str();
    let sub = path.sub.as_deref();
    match kind {
        ResourceKind::User if sub.is_none() && name.eq_ignore_ascii_case("userName") => {
            Some(Indexed::UserName)
        }
        ResourceKind::User
            if name.eq_ignore_ascii_case("emails")
                && sub.is_none_or(|s| s.eq_ignore_ascii_case("value")) =>
        {
            Some(Indexed::Email)
        }
        ResourceKind::Group if sub.is_none() && name.eq_ignore_ascii_case("displayName") => {
            Some(Indexed::DisplayName)
        }
        _ if sub.is_none() && name.eq_ignore_ascii_case("externalId") => Some(Indexed::ExternalId),
        _ => None,
    }
}

/// `value eq "x"` inside brackets, alone or as a conjunct.
fn inner_value_eq(inner: &Filter) -> Option<String> {
    match inner {
        Filter::Compare(p, CompareOp::Eq, CompValue::Str(v))
            if p.urn.is_none() && p.sub.is_none() && p.name.eq_ignore_ascii_case("value") =>
        {
            Some(v.clone())
        }
        Filter::And(items) => items.iter().find_map(inner_value_eq),
        _ => None,
    }
}

/// A PATCH operation's `path` (RFC 7644 §3.5.2: `attrPath / valuePath
/// [subAttr]`), e.g. `name.givenName`, `members[value eq "id"]`,
/// `emails[type eq "work"].value`.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    /// The bracketed value filter, if any.
    pub filter: Option<Filter>,
    /// The sub-attribute after the brackets (`.value`).
    pub sub: Option<String>,
}

impl PatchPath {
    /// Parses a PATCH path; any error is `invalidPath` with the offset.
    pub fn parse(s: &str) -> Result<PatchPath, ScimError> {
        parse_patch_path(s).map_err(|e| ScimError::invalid_path(e.describe("path")))
    }
}

// ---------------------------------------------------------------------------
// Printing: the canonical form, which parses back to the same tree.
// ---------------------------------------------------------------------------

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Num(n) => write!(f, "{n}"),
            // Value's Display writes a JSON string literal with escapes.
            CompValue::Str(s) => write!(f, "{}", Value::String(s.clone())),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Present(p) => write!(f, "{p} pr"),
            Filter::Compare(p, op, v) => write!(f, "{p} {} {v}", op.as_str()),
            Filter::ValuePath(p, inner) => write!(f, "{p}[{inner}]"),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::And(items) => write_joined(f, items, " and "),
            Filter::Or(items) => write_joined(f, items, " or "),
        }
    }
}

/// Nested `and`/`or` operands are parenthesised, so the printed form keeps
/// the tree's shape exactly.
fn write_joined(f: &mut fmt::Formatter<'_>, items: &[Filter], sep: &str) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        if matches!(item, Filter::And(_) | Filter::Or(_)) {
            write!(f, "({item})")?;
        } else {
            write!(f, "{item}")?;
        }
    }
    Ok(())
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(inner) = &self.filter {
            write!(f, "[{inner}]")?;
        }
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

/// A parse failure: what was expected, and the byte offset where.
#[derive(Debug)]
struct SyntaxError {
    msg: String,
    at: usize,
}

impl SyntaxError {
    fn new(msg: impl Into<String>, at: usize) -> Self {
        Self {
            msg: msg.into(),
            at,
        }
    }

    fn describe(&self, what: &str) -> String {
        format!("invalid {what}: {} (at offset {})", self.msg, self.at)
    }
}

type Parsed<T> = Result<T, SyntaxError>;

#[derive(Debug, PartialEq)]
enum Tok<'a> {
    LParen,
    RParen,
    LBrack,
    RBrack,
    Dot,
    /// An attribute path, keyword or operator; the parser decides which.
    Word(&'a str),
    Str(String),
    Num(Number),
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBrack => "`[`".into(),
            Tok::RBrack => "`]`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Num(_) => "a number".into(),
        }
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'$'
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':' | b'$')
}

fn lex(src: &str) -> Parsed<Vec<(Tok<'_>, usize)>> {
    let bytes = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBrack,
            b']' => Tok::RBrack,
            b'.' => Tok::Dot,
            b'"' => {
                // Find the closing quote, skipping escaped characters; the
                // escapes themselves are decoded (and checked) by serde_json.
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => return Err(SyntaxError::new("unterminated string", start)),
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                let lit = src
                    .get(start..=j)
                    .ok_or_else(|| SyntaxError::new("unterminated string", start))?;
                let s: String = serde_json::from_str(lit)
                    .map_err(|e| SyntaxError::new(format!("bad string literal: {e}"), start))?;
                i = j + 1;
                toks.push((Tok::Str(s), start));
                continue;
            }
            b'-' | b'0'..=b'9' => {
                let mut j = i + 1;
                while j < bytes.len()
                    && matches!(bytes[j], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    j += 1;
                }
                let lit = &src[i..j];
                let n: Number = serde_json::from_str(lit)
                    .map_err(|_| SyntaxError::new(format!("bad number `{lit}`"), start))?;
                i = j;
                toks.push((Tok::Num(n), start));
                continue;
            }
            c if is_word_start(c) => {
                let mut j = i + 1;
                while j < bytes.len() && is_word_char(bytes[j]) {
                    j += 1;
                }
                let w = &src[i..j];
                i = j;
                toks.push((Tok::Word(w), start));
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(SyntaxError::new(
                    format!("unexpected character {ch:?}"),
                    start,
                ));
            }
        };
        toks.push((tok, start));
        i += 1;
    }
    Ok(toks)
}

// ---------------------------------------------------------------------------
// Parser: one function per precedence level (or < and < not/group/attrExp).
// ---------------------------------------------------------------------------

struct Parser<'a> {
    toks: Vec<(Tok<'a>, usize)>,
    pos: usize,
    depth: usize,
    len: usize,
}

fn check_len(s: &str, what: &str) -> Parsed<()> {
    if s.len() > MAX_FILTER_LEN {
        return Err(SyntaxError::new(
            format!("{what} is longer than {MAX_FILTER_LEN} bytes"),
            MAX_FILTER_LEN,
        ));
    }
    if s.trim().is_empty() {
        return Err(SyntaxError::new(format!("{what} is empty"), 0));
    }
    Ok(())
}

fn parse_filter(s: &str) -> Parsed<Filter> {
    check_len(s, "filter")?;
    let mut p = Parser::new(lex(s)?, s.len());
    let f = p.or_expr(false)?;
    p.expect_end()?;
    Ok(f)
}

fn parse_patch_path(s: &str) -> Parsed<PatchPath> {
    check_len(s, "path")?;
    let mut p = Parser::new(lex(s)?, s.len());
    let (word, at) = p.word("an attribute name")?;
    let attr = parse_attr_path(word, at)?;
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if p.peek() == Some(&Tok::LBrack) {
        if path.attr.sub.is_some() {
            return Err(SyntaxError::new(
                "a value filter must follow a multi-valued attribute, not a sub-attribute",
                at,
            ));
        }
        path.filter = Some(p.bracketed()?);
        if p.peek() == Some(&Tok::Dot) {
            p.pos += 1;
            path.sub = Some(p.simple_name()?);
        }
    }
    p.expect_end()?;
    Ok(path)
}

impl<'a> Parser<'a> {
    fn new(toks: Vec<(Tok<'a>, usize)>, len: usize) -> Self {
        Self {
            toks,
            pos: 0,
            depth: 0,
            len,
        }
    }

    fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    /// Offset of the next token (or the end of input), for errors.
    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |(_, at)| *at)
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn unexpected(&self, expected: &str) -> SyntaxError {
        match self.peek() {
            Some(t) => SyntaxError::new(
                format!("expected {expected}, found {}", t.describe()),
                self.offset(),
            ),
            None => SyntaxError::new(format!("expected {expected}, found the end"), self.len),
        }
    }

    fn expect(&mut self, tok: Tok<'static>, expected: &str) -> Parsed<()> {
        if self.peek() == Some(&tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn expect_end(&self) -> Parsed<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(SyntaxError::new(
                format!("unexpected {} after a complete expression", t.describe()),
                self.offset(),
            )),
        }
    }

    fn word(&mut self, expected: &str) -> Parsed<(&'a str, usize)> {
        match self.toks.get(self.pos) {
            Some((Tok::Word(w), at)) => {
                let found = (*w, *at);
                self.pos += 1;
                Ok(found)
            }
            _ => Err(self.unexpected(expected)),
        }
    }

    /// A bare ATTRNAME (no URN, no dot): a sub-attribute.
    fn simple_name(&mut self) -> Parsed<String> {
        let (w, at) = self.word("a sub-attribute name")?;
        if !is_attr_name(w) {
            return Err(SyntaxError::new(
                format!("`{w}` is not a sub-attribute name"),
                at,
            ));
        }
        Ok(w.to_string())
    }

    fn enter(&mut self, at: usize) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(SyntaxError::new(
                format!("nested deeper than {MAX_FILTER_DEPTH} levels"),
                at,
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// `and_expr ("or" and_expr)*`. `in_value` is true inside `[...]`.
    fn or_expr(&mut self, in_value: bool) -> Parsed<Filter> {
        let first = self.and_expr(in_value)?;
        if !self.peek_keyword("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek_keyword("or") {
            self.pos += 1;
            items.push(self.and_expr(in_value)?);
        }
        Ok(Filter::Or(items))
    }

    /// `unary ("and" unary)*`.
    fn and_expr(&mut self, in_value: bool) -> Parsed<Filter> {
        let first = self.unary(in_value)?;
        if !self.peek_keyword("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek_keyword("and") {
            self.pos += 1;
            items.push(self.unary(in_value)?);
        }
        Ok(Filter::And(items))
    }

    /// `not (f)`, `(f)`, or an attribute expression.
    fn unary(&mut self, in_value: bool) -> Parsed<Filter> {
        let at = self.offset();
        let next_is_paren = matches!(self.toks.get(self.pos + 1), Some((Tok::LParen, _)));
        if self.peek_keyword("not") && next_is_paren {
            self.pos += 2;
            let inner = self.grouped(in_value, at)?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.peek() {
            Some(Tok::LParen) => {
                self.pos += 1;
                self.grouped(in_value, at)
            }
            Some(Tok::Word(_)) => self.attr_expr(in_value),
            _ => Err(self.unexpected("an attribute, `not (` or `(`")),
        }
    }

    /// The rest of a parenthesised group, after its `(`.
    fn grouped(&mut self, in_value: bool, at: usize) -> Parsed<Filter> {
        self.enter(at)?;
        let inner = self.or_expr(in_value)?;
        self.expect(Tok::RParen, "`)`")?;
        self.leave();
        Ok(inner)
    }

    /// `[ valFilter ]`, whose attribute names are sub-attributes.
    fn bracketed(&mut self) -> Parsed<Filter> {
        let at = self.offset();
        self.expect(Tok::LBrack, "`[`")?;
        self.enter(at)?;
        let inner = self.or_expr(true)?;
        self.expect(Tok::RBrack, "`]`")?;
        self.leave();
        Ok(inner)
    }

    /// `attrPath pr`, `attrPath op value`, `attrPath[valFilter]`, or
    /// Entra's `attrPath[valFilter].sub op value`.
    fn attr_expr(&mut self, in_value: bool) -> Parsed<Filter> {
        let (word, at) = self.word("an attribute name")?;
        let path = parse_attr_path(word, at)?;
        if in_value && (path.urn.is_some() || path.sub.is_some()) {
            return Err(SyntaxError::new(
                format!("inside `[...]`, `{word}` must be a plain sub-attribute name"),
                at,
            ));
        }
        if self.peek() != Some(&Tok::LBrack) {
            return self.op_tail(path);
        }
        if in_value {
            return Err(SyntaxError::new(
                "value filters cannot be nested",
                self.offset(),
            ));
        }
        let inner = self.bracketed()?;
        if self.peek() != Some(&Tok::Dot) {
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        self.pos += 1;
        let sub = self.simple_name()?;
        let tail = self.op_tail(AttrPath {
            urn: None,
            name: sub,
            sub: None,
        })?;
        let inner = match inner {
            Filter::And(mut items) => {
                items.push(tail);
                Filter::And(items)
            }
            other => Filter::And(vec![other, tail]),
        };
        Ok(Filter::ValuePath(path, Box::new(inner)))
    }

    /// `pr`, or `op value`, after an attribute path.
    fn op_tail(&mut self, path: AttrPath) -> Parsed<Filter> {
        let (w, at) = self.word("an operator (eq ne co sw ew gt ge lt le pr)")?;
        if w.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = CompareOp::from_word(w).ok_or_else(|| {
            SyntaxError::new(
                format!("`{w}` is not an operator (eq ne co sw ew gt ge lt le pr)"),
                at,
            )
        })?;
        let value_at = self.offset();
        let value = match self.toks.get(self.pos) {
            Some((Tok::Str(s), _)) => CompValue::Str(s.clone()),
            Some((Tok::Num(n), _)) => CompValue::Num(n.clone()),
            Some((Tok::Word(w), _)) if w.eq_ignore_ascii_case("true") => CompValue::Bool(true),
            Some((Tok::Word(w), _)) if w.eq_ignore_ascii_case("false") => CompValue::Bool(false),
            Some((Tok::Word(w), _)) if w.eq_ignore_ascii_case("null") => CompValue::Null,
            _ => {
                return Err(self.unexpected("a value (a \"string\", a number, true, false or null)"))
            }
        };
        self.pos += 1;
        if op.is_ordering() && matches!(value, CompValue::Bool(_) | CompValue::Null) {
            return Err(SyntaxError::new(
                format!(
                    "`{}` orders strings, numbers and dates, not {value}",
                    op.as_str()
                ),
                value_at,
            ));
        }
        if op.is_substring() && !matches!(value, CompValue::Str(_)) {
            return Err(SyntaxError::new(
                format!("`{}` needs a string, not {value}", op.as_str()),
                value_at,
            ));
        }
        Ok(Filter::Compare(path, op, value))
    }
}

/// RFC 7644 `ATTRNAME = ALPHA *(nameChar)`, plus `$ref`, which RFC 7643
/// itself uses as a sub-attribute name.
fn is_attr_name(s: &str) -> bool {
    if s.eq_ignore_ascii_case("$ref") {
        return true;
    }
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Splits `[URN ":"] name ["." sub]`. The URN is everything before the last
/// colon (schema URNs contain dots, as in `2.0`, but never after it).
fn parse_attr_path(word: &str, at: usize) -> Parsed<AttrPath> {
    let (urn, rest) = match word.rsplit_once(':') {
        Some((urn, rest)) => {
            let is_urn =
                urn.len() > 4 && urn.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
            if !is_urn {
                return Err(SyntaxError::new(
                    format!("`{word}`: only a schema URN may qualify an attribute"),
                    at,
                ));
            }
            (Some(urn.to_string()), rest)
        }
        None => (None, word),
    };
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    if !is_attr_name(name) || sub.is_some_and(|s| !is_attr_name(s)) {
        return Err(SyntaxError::new(
            format!("`{word}` is not an attribute path (name, name.sub or URN:name)"),
            at,
        ));
    }
    Ok(AttrPath {
        urn,
        name: name.to_string(),
        sub: sub.map(str::to_string),
    })
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// Where attribute names are looked up: the resource, or one value of a
/// multi-valued attribute (inside `[...]`), whose definition gives the
/// sub-attributes' caseExact.
#[derive(Clone, Copy)]
enum Scope {
    Resource,
    Value(Option<&'static AttrDef>),
}

/// A JSON object member by name, ignoring ASCII case (RFC 7644 §3.10).
pub(crate) fn get_ci<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn member<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    v.as_object().and_then(|o| get_ci(o, name))
}

/// A value, or each element of an array; null contributes nothing.
fn push_flat<'v>(out: &mut Vec<&'v Value>, v: &'v Value) {
    match v {
        Value::Null => {}
        Value::Array(items) => out.extend(items.iter().filter(|i| !i.is_null())),
        other => out.push(other),
    }
}

/// The values at `path` in the current scope, and the definition of the
/// attribute they belong to (for caseExact and type).
fn values_at<'v>(
    node: &'v Value,
    kind: ResourceKind,
    scope: Scope,
    path: &AttrPath,
) -> (Vec<&'v Value>, Option<&'static AttrDef>) {
    let mut out = Vec::new();
    match scope {
        Scope::Value(parent) => {
            let def = parent.and_then(|p| p.sub(&path.name));
            match node {
                Value::Object(o) => {
                    if let Some(v) = get_ci(o, &path.name) {
                        push_flat(&mut out, v);
                    }
                }
                // A multi-valued attribute of plain values: `value` is the
                // value itself (RFC 7644 §3.4.2.2, e.g. `schemas[value eq ...]`).
                other if path.name.eq_ignore_ascii_case("value") => out.push(other),
                _ => {}
            }
            (out, def)
        }
        Scope::Resource => {
            let (container, table) = match path.urn.as_deref() {
                None => (Some(node), Some(kind.core_attributes())),
                Some(u) if kind.is_core_schema(u) => (Some(node), Some(kind.core_attributes())),
                Some(u) => (
                    member(node, u),
                    kind.extension_attributes(u).map(|(_, t)| t),
                ),
            };
            let def = table.and_then(|t| attrs::find(t, &path.name));
            let Some(top) = container.and_then(|c| member(c, &path.name)) else {
                return (out, def);
            };
            match &path.sub {
                None => {
                    push_flat(&mut out, top);
                    (out, def)
                }
                Some(sub) => {
                    let mut parents = Vec::new();
                    push_flat(&mut parents, top);
                    for p in parents {
                        if let Some(v) = member(p, sub) {
                            push_flat(&mut out, v);
                        }
                    }
                    (out, def.and_then(|d| d.sub(sub)))
                }
            }
        }
    }
}

/// RFC 7644 `pr`: not absent, null, "", [] or a complex value with nothing
/// present in it (RFC 7643 §2.5 treats those as unassigned).
pub(crate) fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(o) => o.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn eval(f: &Filter, node: &Value, kind: ResourceKind, scope: Scope) -> bool {
    match f {
        Filter::Present(path) => values_at(node, kind, scope, path)
            .0
            .into_iter()
            .any(is_present),
        Filter::Compare(path, op, lit) => {
            let (values, def) = values_at(node, kind, scope, path);
            compare(&values, def, *op, lit)
        }
        Filter::ValuePath(path, inner) => {
            let (values, def) = values_at(node, kind, scope, path);
            values
                .into_iter()
                .any(|v| eval(inner, v, kind, Scope::Value(def)))
        }
        Filter::Not(inner) => !eval(inner, node, kind, scope),
        Filter::And(items) => items.iter().all(|i| eval(i, node, kind, scope)),
        Filter::Or(items) => items.iter().any(|i| eval(i, node, kind, scope)),
    }
}

fn compare(
    values: &[&Value],
    def: Option<&'static AttrDef>,
    op: CompareOp,
    lit: &CompValue,
) -> bool {
    match (op, lit) {
        (CompareOp::Eq, CompValue::Null) => !values.iter().any(|v| is_present(v)),
        (CompareOp::Ne, CompValue::Null) => values.iter().any(|v| is_present(v)),
        (CompareOp::Ne, _) => !compare(values, def, CompareOp::Eq, lit),
        _ => values.iter().any(|v| compare_one(v, def, op, lit)),
    }
}

/// One stored value against the literal. A complex value compares its
/// `value` sub-attribute (`emails eq "x"`).
fn compare_one(v: &Value, def: Option<&'static AttrDef>, op: CompareOp, lit: &CompValue) -> bool {
    let (v, def) = match v {
        Value::Object(o) => match get_ci(o, "value") {
            Some(inner) if !inner.is_object() => (inner, def.and_then(|d| d.sub("value"))),
            _ => return false,
        },
        other => (other, def),
    };
    match (v, lit) {
        (Value::String(s), CompValue::Str(l)) => {
            let case_exact = def.is_some_and(|d| d.case_exact);
            if def.is_some_and(|d| d.ty == AttrType::DateTime) && !op.is_substring() {
                if let Some(ord) = compare_instants(s, l) {
                    return op.accepts(ord);
                }
            }
            compare_strings(s, l, op, case_exact)
        }
        (Value::Number(n), CompValue::Num(l)) => {
            !op.is_substring() && compare_numbers(n, l).is_some_and(|o| op.accepts(o))
        }
        (Value::Bool(b), CompValue::Bool(l)) => op == CompareOp::Eq && b == l,
        _ => false,
    }
}

/// Can `s` be compared ignoring case? Unicode lowercase merges
/// compatibility characters with other letters (U+212A KELVIN SIGN with
/// `k`), so a string not in NFKC compares exactly: as the directory's
/// userName and email indexes, which match such strings to nothing.
fn foldable(s: &str) -> bool {
    icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().is_normalized(s)
}

fn compare_strings(s: &str, l: &str, op: CompareOp, case_exact: bool) -> bool {
    let (s, l) = if case_exact || !foldable(s) || !foldable(l) {
        (s.to_string(), l.to_string())
    } else {
        (s.to_lowercase(), l.to_lowercase())
    };
    match op {
        CompareOp::Co => s.contains(&l),
        CompareOp::Sw => s.starts_with(&l),
        CompareOp::Ew => s.ends_with(&l),
        _ => op.accepts(s.cmp(&l)),
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Both sides as RFC 3339 instants, so `+02:00` and `Z` forms of the same
/// moment are equal.
fn compare_instants(a: &str, b: &str) -> Option<Ordering> {
    let a = chrono::DateTime::parse_from_rfc3339(a).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(b).ok()?;
    Some(a.cmp(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use ResourceKind::{Group, User};

    fn parse(s: &str) -> Filter {
        match Filter::parse(s) {
            Ok(f) => f,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn p(name: &str) -> AttrPath {
        AttrPath {
            urn: None,
            name: name.into(),
            sub: None,
        }
    }

    fn eq(name: &str, v: &str) -> Filter {
        Filter::Compare(p(name), CompareOp::Eq, CompValue::Str(v.into()))
    }

    fn babs() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "Bjensen-EXT",
            "userName": "Bjensen@Example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "displayName": "Babs \"The Dude\" Jensen",
            "title": "",
            "nickName": null,
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "phoneNumbers": [],
            "addresses": [{}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "department": "Tour Operations",
                "employeeNumber": "701984",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
            },
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z",
                "version": "W/\"3694e05e9dff591\""
            },
            "x-score": 42
        })
    }

    fn user_matches(filter: &str) -> bool {
        parse(filter).matches(&babs(), User)
    }

    fn invalid(s: &str) -> ScimError {
        match Filter::parse(s) {
            Ok(f) => panic!("{s:?} should be refused, parsed as {f:?}"),
            Err(e) => e,
        }
    }

    // ---- grammar -------------------------------------------------------

    #[test]
    fn parses_every_comparison_operator() {
        for (word, op) in [
            ("eq", CompareOp::Eq),
            ("ne", CompareOp::Ne),
            ("co", CompareOp::Co),
            ("sw", CompareOp::Sw),
            ("ew", CompareOp::Ew),
            ("gt", CompareOp::Gt),
            ("ge", CompareOp::Ge),
            ("lt", CompareOp::Lt),
            ("le", CompareOp::Le),
        ] {
            let f = parse(&format!("title {word} \"x\""));
            assert_eq!(
                f,
                Filter::Compare(p("title"), op, CompValue::Str("x".into()))
            );
        }
        assert_eq!(parse("title pr"), Filter::Present(p("title")));
    }

    #[test]
    fn operators_keywords_and_literals_are_case_insensitive() {
        assert_eq!(parse("userName EQ \"x\""), eq("userName", "x"));
        assert_eq!(parse("title PR"), Filter::Present(p("title")));
        assert_eq!(
            parse("active Eq TRUE"),
            Filter::Compare(p("active"), CompareOp::Eq, CompValue::Bool(true))
        );
        assert_eq!(
            parse("title pr AND title pr Or NOT (title pr)"),
            Filter::Or(vec![
                Filter::And(vec![
                    Filter::Present(p("title")),
                    Filter::Present(p("title"))
                ]),
                Filter::Not(Box::new(Filter::Present(p("title")))),
            ])
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let f = parse(r#"a eq "1" or b eq "2" and c eq "3""#);
        assert_eq!(
            f,
            Filter::Or(vec![
                eq("a", "1"),
                Filter::And(vec![eq("b", "2"), eq("c", "3")])
            ])
        );
        // a alone satisfies it; b alone does not.
        assert!(f.matches(&json!({"a": "1"}), User));
        assert!(!f.matches(&json!({"b": "2"}), User));
        assert!(f.matches(&json!({"b": "2", "c": "3"}), User));
    }

    #[test]
    fn parentheses_override_precedence() {
        let f = parse(r#"(a eq "1" or b eq "2") and c eq "3""#);
        assert_eq!(
            f,
            Filter::And(vec![
                Filter::Or(vec![eq("a", "1"), eq("b", "2")]),
                eq("c", "3")
            ])
        );
        assert!(!f.matches(&json!({"a": "1"}), User));
        assert!(f.matches(&json!({"a": "1", "c": "3"}), User));
    }

    #[test]
    fn long_and_or_chains_stay_flat() {
        let chain = (0..200)
            .map(|i| format!("id eq \"{i}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        match parse(&chain) {
            Filter::Or(items) => assert_eq!(items.len(), 200),
            other => panic!("expected a flat or, got {other:?}"),
        }
    }

    #[test]
    fn not_accepts_parentheses_with_or_without_a_space() {
        let spaced = parse(r#"not (userName eq "x")"#);
        let tight = parse(r#"not(userName eq "x")"#);
        assert_eq!(spaced, tight);
        assert_eq!(spaced, Filter::Not(Box::new(eq("userName", "x"))));
        assert!(user_matches(r#"not (userName eq "someone-else")"#));
        assert!(!user_matches(r#"not (userName eq "bjensen@example.com")"#));
    }

    #[test]
    fn value_path_requires_one_value_to_satisfy_the_whole_inner_filter() {
        let f = parse(r#"emails[type eq "work" and value co "@example.com"]"#);
        assert!(matches!(f, Filter::ValuePath(..)));
        assert!(f.matches(&babs(), User));
        // type work is one email, "@jensen.org" is another: no single value has both.
        assert!(!user_matches(
            r#"emails[type eq "work" and value co "@jensen.org"]"#
        ));
        // ... though as two separate conditions each has some matching value.
        assert!(user_matches(
            r#"emails.type eq "work" and emails.value co "@jensen.org""#
        ));
    }

    #[test]
    fn entra_value_path_with_sub_attribute_comparison() {
        let f = parse(r#"emails[type eq "work"].value eq "BJensen@example.com""#);
        assert_eq!(
            f,
            Filter::ValuePath(
                p("emails"),
                Box::new(Filter::And(vec![
                    eq("type", "work"),
                    eq("value", "BJensen@example.com")
                ]))
            )
        );
        assert!(f.matches(&babs(), User));
        assert!(!user_matches(
            r#"emails[type eq "home"].value eq "bjensen@example.com""#
        ));
        assert!(user_matches(r#"emails[type eq "home"].value pr"#));
    }

    #[test]
    fn sub_attributes_and_case_insensitive_attribute_names() {
        assert!(user_matches(r#"name.familyName eq "Jensen""#));
        assert!(user_matches(r#"NAME.FAMILYNAME eq "jensen""#));
        assert!(user_matches(r#"username eq "bjensen@example.com""#));
        assert!(!user_matches(r#"name.givenName eq "Jensen""#));
    }

    #[test]
    fn schema_urn_qualified_core_and_extension_attributes() {
        let f = parse(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bjensen@example.com""#,
        );
        assert_eq!(
            f,
            Filter::Compare(
                AttrPath {
                    urn: Some("urn:ietf:params:scim:schemas:core:2.0:User".into()),
                    name: "userName".into(),
                    sub: None
                },
                CompareOp::Eq,
                CompValue::Str("bjensen@example.com".into())
            )
        );
        assert!(f.matches(&babs(), User));
        assert!(user_matches(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour operations""#
        ));
        assert!(user_matches(
            r#"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:manager.value sw "26118915""#
        ));
        // The Group schema's URN does not qualify User attributes.
        assert!(!user_matches(
            r#"urn:ietf:params:scim:schemas:core:2.0:Group:userName pr"#
        ));
        // An unknown extension finds nothing, rather than failing.
        assert!(!user_matches(
            r#"urn:example:scim:ext:1.0:User:department pr"#
        ));
        // Unqualified names are core attributes, not extension ones (RFC 7644 §3.10).
        assert!(!user_matches(r#"department pr"#));
    }

    #[test]
    fn json_string_literals_decode_escapes() {
        assert!(user_matches(r#"displayName eq "Babs \"The Dude\" Jensen""#));
        assert_eq!(
            parse(r#"title eq "caf\u00e9 \\ \n""#),
            eq("title", "café \\ \n")
        );
        assert_eq!(parse(r#"title eq "日本""#), eq("title", "日本"));
    }

    #[test]
    fn number_boolean_and_null_literals() {
        assert_eq!(
            parse("x-score ge -1.5e2"),
            Filter::Compare(
                p("x-score"),
                CompareOp::Ge,
                CompValue::Num(Number::from_f64(-150.0).unwrap_or_else(|| Number::from(0)))
            )
        );
        assert!(user_matches("x-score eq 42"));
        assert!(user_matches("x-score eq 42.0"));
        assert!(user_matches("x-score gt 41.5 and x-score lt 43"));
        assert!(!user_matches("x-score gt 42"));
        assert!(user_matches("active eq true"));
        assert!(!user_matches("active eq false"));
        assert!(user_matches("active ne false"));
    }

    #[test]
    fn refuses_malformed_filters_with_invalid_filter() {
        for bad in [
            "",
            "   ",
            "userName",
            "userName eq",
            "userName eq bjensen",
            "userName eq 'bjensen'",
            "userName = \"x\"",
            "userName zz \"x\"",
            "\"x\" eq userName",
            "(userName eq \"x\"",
            "userName eq \"x\")",
            "userName eq \"x\" and",
            "and userName eq \"x\"",
            "userName eq \"x\" userName eq \"y\"",
            "not userName eq \"x\"",
            "not ()",
            "()",
            "emails[type eq \"work\"",
            "emails[]",
            "emails[value[type eq \"x\"] pr]",
            "emails[emails.type eq \"work\"]",
            "emails[urn:ietf:params:scim:schemas:core:2.0:User:type eq \"work\"]",
            "emails[type eq \"work\"].",
            "emails[type eq \"work\"].value",
            "emails[type eq \"work\"].value.x eq \"a\"",
            "name.familyName.x eq \"a\"",
            "name. eq \"a\"",
            "1name eq \"a\"",
            "http://x/y:name eq \"a\"",
            "urn:eq \"a\"",
            "userName eq \"unterminated",
            "userName eq \"bad \\q escape\"",
            "userName eq 01",
            "userName eq -",
            "userName gt true",
            "userName le null",
            "userName co 5",
            "userName sw true",
            "userName ew null",
            "userName eq \"x\" # comment",
        ] {
            let e = invalid(bad);
            assert_eq!(e.scim_type, Some("invalidFilter"), "{bad:?}: {e}");
            assert_eq!(e.status, 400);
        }
    }

    #[test]
    fn errors_say_where_the_filter_went_wrong() {
        let e = invalid(r#"userName eq "x" or"#);
        assert!(e.detail.contains("offset 18"), "{}", e.detail);
        let e = invalid(r#"userName zz "x""#);
        assert!(e.detail.contains("`zz` is not an operator"), "{}", e.detail);
    }

    #[test]
    fn refuses_filters_longer_than_the_limit() {
        let at_limit = format!("title eq \"{}\"", "a".repeat(MAX_FILTER_LEN - 11));
        assert_eq!(at_limit.len(), MAX_FILTER_LEN);
        assert!(Filter::parse(&at_limit).is_ok());
        let over = format!("title eq \"{}\"", "a".repeat(MAX_FILTER_LEN - 10));
        assert!(invalid(&over).detail.contains("longer than"));
    }

    #[test]
    fn refuses_nesting_deeper_than_the_limit_without_overflowing() {
        let nest = |n: usize| format!("{}title pr{}", "(".repeat(n), ")".repeat(n));
        assert!(Filter::parse(&nest(MAX_FILTER_DEPTH)).is_ok());
        assert!(invalid(&nest(MAX_FILTER_DEPTH + 1))
            .detail
            .contains("nested deeper"));
        let nots = |n: usize| format!("{}title pr{}", "not (".repeat(n), ")".repeat(n));
        assert!(Filter::parse(&nots(MAX_FILTER_DEPTH)).is_ok());
        assert!(Filter::parse(&nots(MAX_FILTER_DEPTH + 1)).is_err());
        // Far beyond the limit (and the length limit): refused, no stack overflow.
        assert!(Filter::parse(&"(".repeat(2000)).is_err());
        // A value path's brackets count towards the same budget.
        let deep_in_brackets = format!(
            "{}emails[{}type pr{}]{}",
            "(".repeat(MAX_FILTER_DEPTH - 1),
            "(",
            ")",
            ")".repeat(MAX_FILTER_DEPTH - 1)
        );
        assert!(Filter::parse(&deep_in_brackets).is_err());
    }

    // ---- evaluation ------------------------------------------------------

    #[test]
    fn okta_uppercased_user_name_finds_the_user() {
        assert!(user_matches(r#"userName eq "BJENSEN@EXAMPLE.COM""#));
        assert!(user_matches(r#"userName eq "bjensen@example.com""#));
    }

    #[test]
    fn id_and_external_id_compare_case_exactly() {
        assert!(user_matches(r#"externalId eq "Bjensen-EXT""#));
        assert!(!user_matches(r#"externalId eq "bjensen-ext""#));
        assert!(user_matches(
            r#"id eq "2819c223-7f76-453a-919d-413861904646""#
        ));
        assert!(!user_matches(
            r#"id eq "2819C223-7F76-453A-919D-413861904646""#
        ));
        assert!(user_matches(r#"meta.resourceType eq "User""#));
        assert!(!user_matches(r#"meta.resourceType eq "user""#));
    }

    #[test]
    fn strings_default_to_case_insensitive_comparison() {
        assert!(user_matches(r#"emails.value eq "BJENSEN@example.com""#));
        assert!(user_matches(r#"displayName co "the dude""#));
        assert!(user_matches(r#"name.givenName sw "BAR""#));
        assert!(user_matches(r#"name.givenName ew "ARA""#));
        assert!(!user_matches(r#"name.givenName co "xyz""#));
        // Unknown attributes are strings too, and not case-exact.
        assert!(parse(r#"favourite eq "BLUE""#).matches(&json!({"favourite": "blue"}), User));
    }

    #[test]
    fn multi_valued_attributes_match_if_any_value_matches() {
        assert!(user_matches(r#"emails.value eq "babs@jensen.org""#));
        assert!(user_matches(r#"emails.type eq "home""#));
        assert!(!user_matches(r#"emails.type eq "other""#));
        assert!(user_matches(
            r#"schemas eq "urn:ietf:params:scim:schemas:core:2.0:User""#
        ));
    }

    #[test]
    fn complex_attribute_without_sub_attribute_compares_its_value() {
        assert!(user_matches(r#"emails eq "babs@jensen.org""#));
        assert!(user_matches(r#"emails co "@JENSEN""#));
        let group = json!({"displayName": "Admins", "members": [{"value": "u1"}, {"value": "u2", "display": "Bob"}]});
        assert!(parse(r#"members eq "u2""#).matches(&group, Group));
        assert!(parse(r#"members[value eq "u1"]"#).matches(&group, Group));
        assert!(!parse(r#"members eq "u3""#).matches(&group, Group));
    }

    #[test]
    fn present_excludes_absent_null_empty_string_and_empty_array() {
        assert!(user_matches("userName pr"));
        assert!(user_matches("emails pr"));
        assert!(user_matches("name pr"));
        for absent in [
            "title",
            "nickName",
            "phoneNumbers",
            "addresses",
            "profileUrl",
            "name.middleName",
        ] {
            assert!(
                !user_matches(&format!("{absent} pr")),
                "{absent} should not be present"
            );
            assert!(user_matches(&format!("not ({absent} pr)")));
        }
    }

    #[test]
    fn eq_null_means_absent_and_ne_null_means_present() {
        assert!(user_matches("title eq null"));
        assert!(user_matches("nickName eq null"));
        assert!(!user_matches("userName eq null"));
        assert!(user_matches("userName ne null"));
        assert!(!user_matches("phoneNumbers ne null"));
    }

    #[test]
    fn ne_is_the_negation_of_eq() {
        // Absent attribute: not equal to anything.
        assert!(user_matches(r#"profileUrl ne "x""#));
        // Multi-valued: true only when no value is equal.
        assert!(!user_matches(r#"emails.type ne "work""#));
        assert!(user_matches(r#"emails.type ne "other""#));
        // Same case-folding as eq.
        assert!(!user_matches(r#"userName ne "BJENSEN@example.com""#));
        for f in [
            r#"emails.type ne "work""#,
            r#"title ne "x""#,
            r#"userName ne "y""#,
        ] {
            let negated = f.replacen(" ne ", " eq ", 1);
            assert_eq!(
                user_matches(f),
                user_matches(&format!("not ({negated})")),
                "{f}"
            );
        }
    }

    #[test]
    fn lookalikes_do_not_case_fold_onto_other_letters() {
        let user = json!({"userName": "kate@a.example"});
        assert!(parse("userName eq \"KATE@a.example\"").matches(&user, User));
        for f in [
            "userName eq \"\u{212A}ate@a.example\"",
            "userName eq \"\u{212A}ate@a.example\" or userName eq \"x\"",
            "userName sw \"\u{212A}\"",
        ] {
            assert!(!parse(f).matches(&user, User), "{f}");
        }
    }

    #[test]
    fn ordering_compares_strings_after_case_folding() {
        assert!(user_matches(r#"userName gt "A""#));
        assert!(user_matches(r#"userName gt "a""#));
        assert!(user_matches(r#"userName lt "C""#));
        assert!(user_matches(r#"userName ge "BJENSEN@EXAMPLE.COM""#));
        assert!(user_matches(r#"userName le "bjensen@example.com""#));
        assert!(!user_matches(r#"userName lt "bjensen@example.com""#));
        // Case-exact attributes order by code point: 'B' < 'b'.
        assert!(user_matches(r#"externalId lt "b""#));
    }

    #[test]
    fn date_times_compare_as_instants() {
        assert!(user_matches(
            r#"meta.lastModified gt "2011-05-13T04:42:33Z""#
        ));
        assert!(!user_matches(
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#
        ));
        assert!(user_matches(
            r#"meta.lastModified ge "2011-05-13T04:42:34Z""#
        ));
        // The same instant written with an offset: equal, though the strings differ.
        assert!(user_matches(
            r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#
        ));
        assert!(user_matches(
            r#"meta.lastModified lt "2011-05-13T06:42:35+02:00""#
        ));
        assert!(user_matches(
            r#"meta.created lt "2010-01-23T04:56:22.001Z""#
        ));
        // Not a date: compared as a plain string.
        assert!(!user_matches(r#"meta.lastModified eq "yesterday""#));
    }

    #[test]
    fn mismatched_literal_types_simply_do_not_match() {
        assert!(!user_matches(r#"active eq "true""#));
        assert!(!user_matches(r#"active gt "a""#));
        assert!(!user_matches("userName eq 5"));
        assert!(!user_matches("userName gt 5"));
        assert!(!user_matches(r#"x-score eq "42""#));
        assert!(!user_matches(r#"name eq "Jensen""#));
    }

    #[test]
    fn group_display_name_is_case_insensitive() {
        let g = json!({"id": "g1", "displayName": "CRA Admins", "externalId": "Ext-1"});
        assert!(parse(r#"displayName eq "cra admins""#).matches(&g, Group));
        assert!(!parse(r#"externalId eq "ext-1""#).matches(&g, Group));
        assert!(
            parse(r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName sw "CRA""#)
                .matches(&g, Group)
        );
    }

    #[test]
    fn matches_value_evaluates_inside_one_multi_valued_value() {
        let f = parse(r#"type eq "WORK" and primary eq true"#);
        let emails = attrs::find(User.core_attributes(), "emails");
        assert!(f.matches_value(
            &json!({"type": "work", "primary": true, "value": "a"}),
            User,
            emails
        ));
        assert!(!f.matches_value(&json!({"type": "work", "value": "a"}), User, emails));
        // A member id is not case-exact (RFC 7643 members.value), and a plain
        // string value is its own `value`.
        let members = attrs::find(Group.core_attributes(), "members");
        assert!(parse(r#"value eq "ABC""#).matches_value(&json!({"value": "abc"}), Group, members));
        assert!(parse(r#"value eq "abc""#).matches_value(&json!("abc"), Group, members));
    }

    // ---- indexed lookups -----------------------------------------------

    #[test]
    fn indexed_eq_recognises_the_indexed_user_lookups() {
        let idx = |s: &str| parse(s).indexed_eq(User);
        let want = |i: Indexed, v: &str| Some((i, v.to_string()));
        assert_eq!(
            idx(r#"userName eq "Bjensen""#),
            want(Indexed::UserName, "Bjensen")
        );
        assert_eq!(idx(r#"USERNAME Eq "x""#), want(Indexed::UserName, "x"));
        assert_eq!(
            idx(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x""#),
            want(Indexed::UserName, "x")
        );
        assert_eq!(
            idx(r#"externalId eq "00u1""#),
            want(Indexed::ExternalId, "00u1")
        );
        assert_eq!(idx(r#"emails.value eq "a@x""#), want(Indexed::Email, "a@x"));
        assert_eq!(idx(r#"emails eq "a@x""#), want(Indexed::Email, "a@x"));
        assert_eq!(
            idx(r#"emails[value eq "a@x"]"#),
            want(Indexed::Email, "a@x")
        );
        assert_eq!(
            idx(r#"emails[type eq "work"].value eq "a@x""#),
            want(Indexed::Email, "a@x")
        );
        // A conjunction narrows to the index; the rest is checked by `matches`.
        assert_eq!(
            idx(r#"active eq true and userName eq "x""#),
            want(Indexed::UserName, "x")
        );
    }

    #[test]
    fn indexed_eq_declines_what_an_index_cannot_answer() {
        for s in [
            r#"userName ne "x""#,
            r#"userName co "x""#,
            r#"userName sw "x""#,
            "userName pr",
            r#"userName eq "x" or userName eq "y""#,
            r#"not (userName eq "x")"#,
            r#"displayName eq "x""#,
            r#"emails.type eq "work""#,
            r#"emails[type eq "work"]"#,
            r#"name.givenName eq "x""#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:Group:userName eq "x""#,
            "externalId eq 5",
        ] {
            assert_eq!(parse(s).indexed_eq(User), None, "{s}");
        }
    }

    #[test]
    fn indexed_eq_for_groups_uses_display_name_and_external_id() {
        let idx = |s: &str| parse(s).indexed_eq(Group);
        assert_eq!(
            idx(r#"displayName eq "CRA Admins""#),
            Some((Indexed::DisplayName, "CRA Admins".into()))
        );
        assert_eq!(
            idx(r#"externalId eq "e1""#),
            Some((Indexed::ExternalId, "e1".into()))
        );
        assert_eq!(idx(r#"userName eq "x""#), None);
        assert_eq!(idx(r#"emails.value eq "x""#), None);
    }

    #[test]
    fn indexed_eq_never_misses_a_match() {
        // Whatever the index returns for the value, a resource the filter
        // matches holds that value at the indexed attribute (compared as the
        // index compares: folded for userName/email/displayName).
        let user = babs();
        for s in [
            r#"userName eq "BJENSEN@EXAMPLE.COM""#,
            r#"emails[type eq "work"].value eq "BJensen@Example.com""#,
            r#"externalId eq "Bjensen-EXT" and active eq true"#,
        ] {
            let f = parse(s);
            assert!(f.matches(&user, User), "{s}");
            let (index, value) = match f.indexed_eq(User) {
                Some(found) => found,
                None => panic!("{s} should be indexed"),
            };
            let held: Vec<String> = match index {
                Indexed::UserName => {
                    vec![user["userName"].as_str().unwrap_or_default().to_lowercase()]
                }
                Indexed::Email => user["emails"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["value"].as_str())
                    .map(str::to_lowercase)
                    .collect(),
                Indexed::ExternalId => {
                    vec![user["externalId"].as_str().unwrap_or_default().to_string()]
                }
                Indexed::DisplayName => vec![],
            };
            let key = if index == Indexed::ExternalId {
                value
            } else {
                value.to_lowercase()
            };
            assert!(held.contains(&key), "{s}: {key} not in {held:?}");
        }
    }

    // ---- PATCH paths ---------------------------------------------------

    #[test]
    fn patch_paths_parse_attribute_value_filter_and_sub_attribute() {
        let path = |s: &str| match PatchPath::parse(s) {
            Ok(p) => p,
            Err(e) => panic!("{s:?}: {e}"),
        };
        assert_eq!(path("userName").attr, p("userName"));
        let given = path("name.givenName");
        assert_eq!(given.attr.sub.as_deref(), Some("givenName"));
        assert!(given.filter.is_none());
        let m = path(r#"members[value eq "2819c223"]"#);
        assert_eq!(m.attr, p("members"));
        assert_eq!(m.filter, Some(eq("value", "2819c223")));
        assert_eq!(m.sub, None);
        let w = path(r#"emails[type eq "work"].value"#);
        assert_eq!(w.filter, Some(eq("type", "work")));
        assert_eq!(w.sub.as_deref(), Some("value"));
        let ent = path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value");
        assert_eq!(
            ent.attr.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(ent.attr.name, "manager");
        assert_eq!(ent.attr.sub.as_deref(), Some("value"));
        assert_eq!(
            ent.to_string(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"
        );
        assert_eq!(w.to_string(), r#"emails[type eq "work"].value"#);
    }

    #[test]
    fn malformed_patch_paths_are_invalid_path() {
        for bad in [
            "",
            "name.givenName.x",
            "emails[type eq \"work\"",
            "emails[type eq \"work\"].",
            "emails[type eq \"work\"].value.x",
            "emails[type eq \"work\"] extra",
            "name.givenName[value eq \"x\"]",
            "members[value eq \"x\"][value eq \"y\"]",
            "userName eq \"x\"",
            "\"userName\"",
            "emails[type]",
        ] {
            let e = match PatchPath::parse(bad) {
                Ok(p) => panic!("{bad:?} should be refused, parsed as {p:?}"),
                Err(e) => e,
            };
            assert_eq!(e.scim_type, Some("invalidPath"), "{bad:?}");
        }
    }

    // ---- fuzzing -------------------------------------------------------

    /// A random filter tree within the limits, for round-trip testing.
    fn random_filter(rng: &mut rand::rngs::StdRng, depth: usize, in_value: bool) -> Filter {
        use rand::Rng;
        let names = [
            "userName", "emails", "name", "title", "value", "type", "meta", "x-1",
        ];
        let path = |rng: &mut rand::rngs::StdRng| {
            let name = names[rng.random_range(0..names.len())].to_string();
            if in_value {
                return AttrPath {
                    urn: None,
                    name,
                    sub: None,
                };
            }
            let sub = rng.random_bool(0.3).then(|| "givenName".to_string());
            let urn = rng
                .random_bool(0.2)
                .then(|| "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string());
            AttrPath { urn, name, sub }
        };
        let leaf = |rng: &mut rand::rngs::StdRng| {
            let ops = [
                CompareOp::Eq,
                CompareOp::Ne,
                CompareOp::Co,
                CompareOp::Sw,
                CompareOp::Ew,
                CompareOp::Gt,
                CompareOp::Ge,
                CompareOp::Lt,
                CompareOp::Le,
            ];
            let op = ops[rng.random_range(0..ops.len())];
            let value = match rng.random_range(0..5) {
                0 if !op.is_substring() => {
                    CompValue::Num(Number::from(rng.random_range(-99i64..99)))
                }
                1 if !op.is_substring() && !op.is_ordering() => {
                    CompValue::Bool(rng.random_bool(0.5))
                }
                2 if !op.is_substring() && !op.is_ordering() => CompValue::Null,
                _ => CompValue::Str(
                    ["", "a\"b", "x\\y", "é", "\n"][rng.random_range(0..5)].to_string(),
                ),
            };
            Filter::Compare(path(rng), op, value)
        };
        if depth == 0 {
            return if rng.random_bool(0.2) {
                Filter::Present(path(rng))
            } else {
                leaf(rng)
            };
        }
        match rng.random_range(0..6) {
            0 => Filter::Not(Box::new(random_filter(rng, depth - 1, in_value))),
            1 => Filter::And(
                (0..rng.random_range(2..4))
                    .map(|_| random_filter(rng, depth - 1, in_value))
                    .collect(),
            ),
            2 => Filter::Or(
                (0..rng.random_range(2..4))
                    .map(|_| random_filter(rng, depth - 1, in_value))
                    .collect(),
            ),
            3 if !in_value => {
                Filter::ValuePath(p("emails"), Box::new(random_filter(rng, depth - 1, true)))
            }
            _ => leaf(rng),
        }
    }

    #[test]
    fn printed_filters_parse_back_to_the_same_tree() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7644);
        let resource = babs();
        for _ in 0..2000 {
            let f = random_filter(&mut rng, 4, false);
            let printed = f.to_string();
            let back = match Filter::parse(&printed) {
                Ok(b) => b,
                Err(e) => panic!("{printed:?} did not re-parse: {e}"),
            };
            assert_eq!(back, f, "{printed}");
            // Evaluation is total.
            let _ = back.matches(&resource, User);
            let _ = back.indexed_eq(User);
        }
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3422);
        let pieces = [
            "userName",
            " eq ",
            " ne ",
            " co ",
            " pr",
            " gt ",
            "\"x\"",
            "\"\\u00e9\"",
            "\"\\",
            "(",
            ")",
            "[",
            "]",
            ".",
            " and ",
            " or ",
            "not ",
            "not(",
            "emails",
            "value",
            "urn:ietf:params:scim:schemas:core:2.0:User:",
            "1",
            "-",
            "1e999",
            "true",
            "null",
            " ",
            "\t",
            "é",
            "\"",
            "\\",
            ":",
            "$ref",
            "0.5",
            "]",
            "..",
        ];
        let seeds = [
            r#"emails[type eq "work" and value co "@x"] or not (userName sw "a")"#,
            r#"emails[type eq "work"].value eq "a@x""#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x""#,
            r#"meta.lastModified gt "2011-05-13T04:42:34Z" and (title pr or x ge 3)"#,
        ];
        let resource = babs();
        for i in 0..20_000 {
            let input: String = if i % 2 == 0 {
                (0..rng.random_range(0..12))
                    .map(|_| pieces[rng.random_range(0..pieces.len())])
                    .collect()
            } else {
                let mut bytes: Vec<char> =
                    seeds[rng.random_range(0..seeds.len())].chars().collect();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..=bytes.len());
                    match rng.random_range(0..3) {
                        0 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        1 => bytes.insert(
                            at,
                            ['(', ')', '[', ']', '"', ' ', '.', '\\', 'x', 'é']
                                [rng.random_range(0..10)],
                        ),
                        _ if at < bytes.len() => {
                            let other = rng.random_range(0..bytes.len());
                            bytes.swap(at, other)
                        }
                        _ => {}
                    }
                }
                bytes.into_iter().collect()
            };
            match Filter::parse(&input) {
                Ok(f) => {
                    let _ = f.matches(&resource, User);
                    // Whatever parses prints to something that parses the same.
                    assert_eq!(Filter::parse(&f.to_string()).ok(), Some(f), "{input:?}");
                }
                Err(e) => assert_eq!(e.scim_type, Some("invalidFilter")),
            }
            if let Err(e) = PatchPath::parse(&input) {
                assert_eq!(e.scim_type, Some("invalidPath"));
            }
        }
    }
}
