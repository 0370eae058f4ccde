//! Reading YAML: a serde deserializer that streams saphyr-parser's events
//! straight into the target type.
//!
//! serde_yaml (unmaintained) buffers every event of a document before the
//! first value is built: on the 100,000-user benchmark policy that buffer
//! alone was 182 MB. Here each event is pulled from the parser when the
//! target type asks for it, so the peak is the model being built.
//!
//! The reading is the one serde_yaml gave policies (YAML 1.2 core schema;
//! any scalar reads as text where text is expected; `007` is text, not a
//! number; an empty value is an empty mapping or list where one is
//! expected; errors carry the key path and a 1-based line and column), and
//! it is stricter where a policy could otherwise mean something it does not
//! say:
//! - a repeated key in any mapping is an error, at the repeated key;
//! - a second document in the stream is an error, not ignored;
//! - a tag other than the core schema's (`!!str`, `!!int`, …) is an error;
//! - a mapping key must be a scalar;
//! - a decimal integer too large for 64 bits is an error where a number is
//!   read, rather than a rounded float (a tenant id must not round);
//! - nesting deeper than 128 and alias expansion beyond a budget (the
//!   "billion laughs") are errors.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, StrInput, Tag};
use serde::de::{self, DeserializeSeed, Deserializer as _, IntoDeserializer, Unexpected, Visitor};
use serde::Deserialize;

/// Deepest nesting of mappings and lists read.
const DEPTH_LIMIT: usize = 128;
/// Most events alias expansion may replay, in all.
const ALIAS_BUDGET: usize = 1_000_000;
/// Mappings with more keys than this check repeats with a hash set.
const LINEAR_KEYS: usize = 16;

/// A YAML error: what, at which key path, where.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    message: String,
    path: Option<String>,
    /// 1-based line and column.
    position: Option<(usize, usize)>,
}

impl Error {
    fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            path: None,
            position: None,
        }
    }

    /// 1-based line and column of the error, when known.
    pub fn location(&self) -> Option<(usize, usize)> {
        self.position
    }

    /// The message with its key path (`groups.g: unknown field …`), without
    /// the position.
    pub fn message(&self) -> String {
        match self.path.as_deref() {
            Some(p) if !p.is_empty() => format!("{p}: {}", self.message),
            _ => self.message.clone(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())?;
        if let Some((line, column)) = self.position {
            write!(f, " at line {line} column {column}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, Error>;

/// Reads one YAML document into `T`.
pub fn from_str<'de, T: Deserialize<'de>>(src: &'de str) -> Result<T> {
    let mut reader = Reader::new(src);
    reader.start()?;
    let value = T::deserialize(&mut reader)?;
    reader.finish()?;
    Ok(value)
}

/// A YAML value, for the few places that take any value (attribute values,
/// mask constants, the API-key editor). Mappings keep their order.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `null`, `~` or nothing.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    String(String),
    /// A list.
    Sequence(Vec<Value>),
    /// A mapping.
    Mapping(Mapping),
}

impl Value {
    /// The text, when this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key`, when this is a mapping with text keys.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Mapping(m) => m.get(key),
            _ => None,
        }
    }

    /// A number as SQL would write it (`None` for anything else).
    pub fn number_text(&self) -> Option<String> {
        match self {
            Value::Int(i) => Some(i.to_string()),
            Value::UInt(u) => Some(u.to_string()),
            Value::Float(f) if f.is_finite() => Some(f.to_string()),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// An ordered mapping; equality ignores the order, as YAML's does.
#[derive(Debug, Clone, Default)]
pub struct Mapping(Vec<(Value, Value)>);

impl Mapping {
    /// An empty mapping.
    pub fn new() -> Mapping {
        Mapping::default()
    }
    /// The value under a text key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
    /// The value under a text key, to change.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.0
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
    /// Sets `key` (in place when present, else at the end).
    pub fn insert(&mut self, key: Value, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }
    /// Removes a text key; its value, when it was there.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| k.as_str() == Some(key))?;
        Some(self.0.remove(at).1)
    }
    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Value, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl PartialEq for Mapping {
    fn eq(&self, other: &Mapping) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .all(|(k, v)| other.0.iter().any(|(k2, v2)| k == k2 && v == v2))
    }
}

impl<'a> IntoIterator for &'a Mapping {
    type Item = (&'a Value, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Value, Value)>,
        fn(&'a (Value, Value)) -> (&'a Value, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> std::result::Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> std::result::Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: de::Deserializer<'de>>(
                self,
                d: D,
            ) -> std::result::Result<Value, D::Error> {
                Value::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> std::result::Result<Value, E> {
                Ok(Value::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> std::result::Result<Value, E> {
                Ok(Value::Int(i))
            }
            fn visit_u64<E>(self, u: u64) -> std::result::Result<Value, E> {
                Ok(i64::try_from(u).map_or(Value::UInt(u), Value::Int))
            }
            fn visit_f64<E>(self, f: f64) -> std::result::Result<Value, E> {
                Ok(Value::Float(f))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Value, E> {
                Ok(Value::String(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> std::result::Result<Value, E> {
                Ok(Value::String(s))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Value::Sequence(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Value, A::Error> {
                let mut m = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    m.push((k, v));
                }
                Ok(Value::Mapping(Mapping(m)))
            }
        }
        d.deserialize_any(V)
    }
}

// ---- The event stream. ----

type Spanned<'de> = (Event<'de>, Span);

/// An anchored node being recorded, for its aliases to replay.
struct Recording<'de> {
    id: usize,
    events: Vec<Spanned<'de>>,
    depth: usize,
}

/// The parser with one event of lookahead, alias replay, the key path and
/// the nesting depth.
struct Reader<'de> {
    parser: Parser<'de, StrInput<'de>>,
    peeked: Option<Spanned<'de>>,
    /// Anchored nodes, as the parser gave them (aliases inside unexpanded).
    anchors: HashMap<usize, Rc<[Spanned<'de>]>>,
    recording: Vec<Recording<'de>>,
    /// Aliases being replayed: events and the next one's index.
    replay: Vec<(Rc<[Spanned<'de>]>, usize)>,
    replayed: usize,
    path: Vec<Segment<'de>>,
    depth: usize,
    /// Where the last event read starts (for errors at the end).
    last: Span,
    /// The stream holds no document.
    empty: bool,
    /// The keys read so far of the mappings being read (see `MapState`).
    seen: Vec<Cow<'de, str>>,
}

enum Segment<'de> {
    Key(Cow<'de, str>),
    Index(usize),
}

fn position(span: &Span) -> (usize, usize) {
    (span.start.line(), span.start.col() + 1)
}

fn at(mut e: Error, span: &Span) -> Error {
    if e.position.is_none() {
        e.position = Some(position(span));
    }
    e
}

impl<'de> Reader<'de> {
    fn new(src: &'de str) -> Reader<'de> {
        Reader {
            parser: Parser::new_from_str(src),
            peeked: None,
            anchors: HashMap::new(),
            recording: Vec::new(),
            replay: Vec::new(),
            replayed: 0,
            path: Vec::new(),
            depth: 0,
            last: Span::default(),
            empty: false,
            seen: Vec::new(),
        }
    }

    /// The key path, as `a.b[2].c`.
    fn path_text(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Segment::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Segment::Index(i) => {
                    out.push_str(&format!("[{i}]"));
                }
            }
        }
        out
    }

    /// Gives an error its path and position, unless it has them already.
    fn fix(&self, mut e: Error, span: &Span) -> Error {
        if e.path.is_none() {
            e.path = Some(self.path_text());
        }
        at(e, span)
    }

    /// The next event from an alias being replayed, or from the parser
    /// (recorded for anchors).
    fn raw(&mut self) -> Result<Spanned<'de>> {
        while let Some((events, i)) = self.replay.last_mut() {
            if let Some(ev) = events.get(*i) {
                *i += 1;
                return Ok(ev.clone());
            }
            self.replay.pop();
        }
        let ev = match self.parser.next_event() {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                let m = e.marker();
                return Err(Error {
                    message: e.info().to_string(),
                    path: None,
                    position: Some((m.line(), m.col() + 1)),
                });
            }
            None => return Err(at(Error::new("unexpected end of the YAML"), &self.last)),
        };
        self.record(&ev);
        Ok(ev)
    }

    /// Adds a parsed event to the anchored nodes being recorded.
    fn record(&mut self, ev: &Spanned<'de>) {
        let (delta, anchor): (isize, usize) = match &ev.0 {
            Event::SequenceStart(a, _) | Event::MappingStart(a, _) => (1, *a),
            Event::SequenceEnd | Event::MappingEnd => (-1, 0),
            Event::Scalar(_, _, a, _) => (0, *a),
            _ => (0, 0),
        };
        if self.recording.is_empty() && anchor == 0 {
            return;
        }
        if anchor != 0 {
            self.recording.push(Recording {
                id: anchor,
                events: Vec::new(),
                depth: 0,
            });
        }
        for r in &mut self.recording {
            r.events.push(ev.clone());
            r.depth = r.depth.saturating_add_signed(delta);
        }
        while let Some(at) = self.recording.iter().position(|r| r.depth == 0) {
            let done = self.recording.remove(at);
            self.anchors.insert(done.id, Rc::from(done.events));
        }
    }

    /// The next event, aliases replaced by what they name.
    fn next(&mut self) -> Result<Spanned<'de>> {
        if let Some(ev) = self.peeked.take() {
            return Ok(ev);
        }
        loop {
            let ev = self.raw()?;
            self.last = ev.1;
            if let Event::Alias(id) = ev.0 {
                let Some(events) = self.anchors.get(&id).cloned() else {
                    return Err(self.fix(
                        Error::new("an alias names an anchor that is not complete here"),
                        &ev.1,
                    ));
                };
                self.replayed += events.len();
                if self.replayed > ALIAS_BUDGET {
                    return Err(self.fix(
                        Error::new(format!(
                            "aliases expand to more than {ALIAS_BUDGET} YAML events"
                        )),
                        &ev.1,
                    ));
                }
                if self.replay.len() >= DEPTH_LIMIT {
                    return Err(self.fix(Error::new("aliases nest too deeply"), &ev.1));
                }
                self.replay.push((events, 0));
                continue;
            }
            return Ok(ev);
        }
    }

    fn peek(&mut self) -> Result<&Spanned<'de>> {
        let ev = match self.peeked.take() {
            Some(ev) => ev,
            None => self.next()?,
        };
        Ok(self.peeked.insert(ev))
    }

    /// Reads up to the first document's content.
    fn start(&mut self) -> Result<()> {
        loop {
            match self.peek()?.0 {
                Event::StreamStart | Event::DocumentStart(_) => {
                    self.next()?;
                }
                Event::StreamEnd => {
                    // An empty stream reads as an empty plain scalar.
                    let span = self.peek()?.1;
                    self.empty = true;
                    self.peeked = Some((
                        Event::Scalar(Cow::Borrowed(""), ScalarStyle::Plain, 0, None),
                        span,
                    ));
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
    }

    /// Checks that nothing follows the first document.
    fn finish(&mut self) -> Result<()> {
        if self.empty {
            return Ok(());
        }
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::DocumentEnd => {}
                Event::StreamEnd => return Ok(()),
                Event::DocumentStart(_) => {
                    return Err(at(
                        Error::new("more than one YAML document (`---`); a policy is one document"),
                        &span,
                    ));
                }
                _ => {
                    return Err(at(
                        Error::new("unexpected content after the document"),
                        &span,
                    ));
                }
            }
        }
    }

    fn enter(&mut self, span: &Span) -> Result<()> {
        self.depth += 1;
        if self.depth > DEPTH_LIMIT {
            return Err(self.fix(
                Error::new(format!("nesting deeper than {DEPTH_LIMIT} levels")),
                span,
            ));
        }
        Ok(())
    }

    /// Reads the rest of a list (after its start) into `visitor`.
    fn seq<V: Visitor<'de>>(&mut self, visitor: V, span: &Span) -> Result<V::Value> {
        self.enter(span)?;
        let value = visitor.visit_seq(SeqAccess { de: self, index: 0 })?;
        match self.next()? {
            (Event::SequenceEnd, _) => {}
            (_, s) => return Err(self.fix(Error::new("the list has more items than expected"), &s)),
        }
        self.depth -= 1;
        Ok(value)
    }

    /// Reads the rest of a mapping (after its start) into `visitor`.
    fn map<V: Visitor<'de>>(&mut self, visitor: V, span: &Span) -> Result<V::Value> {
        self.enter(span)?;
        let base = self.path.len();
        let mut state = MapState {
            base: self.seen.len(),
            set: None,
            key_span: None,
            done: false,
        };
        let r = visitor.visit_map(MapAccess {
            de: self,
            state: &mut state,
        });
        self.seen.truncate(state.base);
        let value = match r {
            Ok(v) => v,
            // An error the visitor raises mid-mapping (a repeated key of its
            // own, say) is at the key it was reading.
            Err(e) => {
                let span = match (state.done, state.key_span) {
                    (false, Some(k)) => k,
                    _ => *span,
                };
                self.path.truncate(base);
                return Err(self.fix(e, &span));
            }
        };
        match self.next()? {
            (Event::MappingEnd, _) => {}
            (_, s) => {
                return Err(self.fix(Error::new("the mapping has more keys than expected"), &s));
            }
        }
        self.depth -= 1;
        Ok(value)
    }

    /// Skips one node (after its first event).
    fn skip_rest(&mut self, first: &Event<'de>) -> Result<()> {
        let mut depth = match first {
            Event::SequenceStart(..) | Event::MappingStart(..) => 1usize,
            _ => return Ok(()),
        };
        while depth > 0 {
            match self.next()?.0 {
                Event::SequenceStart(..) | Event::MappingStart(..) => depth += 1,
                Event::SequenceEnd | Event::MappingEnd => depth -= 1,
                _ => {}
            }
        }
        Ok(())
    }
}

// ---- Scalars. ----

/// What a plain scalar is under the YAML 1.2 core schema (as serde_yaml
/// read it).
enum Plain {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    /// An integer beyond 64 bits: refused where a number is read.
    Big,
    Float(f64),
    Text,
}

fn digits_but_not_number(s: &str) -> bool {
    // `007` is text in YAML 1.2.
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    s.len() > 1 && s.starts_with('0') && s.bytes().skip(1).all(|b| b.is_ascii_digit())
}

fn radix_int(s: &str) -> Option<std::result::Result<i128, ()>> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (radix, digits) = if let Some(d) = body.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = body.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = body.strip_prefix("0b") {
        (2, d)
    } else {
        if digits_but_not_number(s) || body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        (10, body)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(match i128::from_str_radix(digits, radix) {
        Ok(v) => Ok(if neg { -v } else { v }),
        Err(_) => Err(()),
    })
}

fn resolve(s: &str) -> Plain {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Plain::Null,
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        _ => {}
    }
    match radix_int(s) {
        Some(Ok(v)) => {
            return match (i64::try_from(v), u64::try_from(v)) {
                (Ok(i), _) => Plain::Int(i),
                (_, Ok(u)) => Plain::UInt(u),
                _ => Plain::Big,
            };
        }
        Some(Err(())) => return Plain::Big,
        None => {}
    }
    if digits_but_not_number(s) {
        return Plain::Text;
    }
    let body = match s.strip_prefix('+') {
        Some(b) if b.starts_with(['+', '-']) => return Plain::Text,
        Some(b) => b,
        None => s,
    };
    match body {
        ".inf" | ".Inf" | ".INF" => return Plain::Float(f64::INFINITY),
        _ => {}
    }
    match s {
        "-.inf" | "-.Inf" | "-.INF" => return Plain::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Plain::Float(f64::NAN),
        _ => {}
    }
    // Rust's float syntax is wider than YAML's (`inf`, `NaN`): only finite
    // results count, as serde_yaml had it.
    match body.parse::<f64>() {
        Ok(f) if f.is_finite() => Plain::Float(f),
        _ => Plain::Text,
    }
}

/// Checks a scalar read as text: only a tag can make it wrong (resolving
/// every string as a possible number would cost a tenth of a large load).
fn text_ok(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<()> {
    if tag.is_some() {
        classify(text, style, tag)?;
    }
    Ok(())
}

/// How a scalar reads, given its style and tag.
fn classify(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Plain> {
    match tag {
        None if style == ScalarStyle::Plain => Ok(resolve(text)),
        None => Ok(Plain::Text),
        Some(t) if t.is_yaml_core_schema() => {
            let plain = resolve(text);
            let ok = match (t.suffix.as_str(), &plain) {
                ("str", _) => return Ok(Plain::Text),
                ("null", Plain::Null) | ("bool", Plain::Bool(_)) => true,
                ("int", Plain::Int(_) | Plain::UInt(_) | Plain::Big) => true,
                ("float", Plain::Float(_) | Plain::Int(_) | Plain::UInt(_)) => true,
                _ => false,
            };
            if ok {
                Ok(plain)
            } else {
                Err(Error::new(format!(
                    "`{text}` is not a valid !!{}",
                    t.suffix
                )))
            }
        }
        Some(t) => Err(Error::new(format!(
            "YAML tags are not supported here (`{}{}`)",
            t.handle, t.suffix
        ))),
    }
}

fn unexpected<'a>(text: &'a str, plain: &Plain) -> Unexpected<'a> {
    match plain {
        Plain::Null => Unexpected::Unit,
        Plain::Bool(b) => Unexpected::Bool(*b),
        Plain::Int(i) => Unexpected::Signed(*i),
        Plain::UInt(u) => Unexpected::Unsigned(*u),
        Plain::Float(f) => Unexpected::Float(*f),
        Plain::Big | Plain::Text => Unexpected::Str(text),
    }
}

fn big(text: &str) -> Error {
    Error::new(format!(
        "the number `{text}` does not fit in 64 bits (quote it to read it as text)"
    ))
}

fn visit_text<'de, V: Visitor<'de>>(text: Cow<'de, str>, v: V) -> Result<V::Value> {
    match text {
        Cow::Borrowed(b) => v.visit_borrowed_str(b),
        Cow::Owned(mut s) => {
            // The parser's buffers start at 32 bytes and double: a model
            // holding a long text as it is would hold up to half again.
            // A short text keeps its buffer: an allocator rounds small
            // blocks up anyway, and a shrink is a reallocation per value.
            if s.capacity() - s.len() > 32 {
                s.shrink_to_fit();
            }
            v.visit_string(s)
        }
    }
}

fn is_empty_plain(ev: &Event) -> bool {
    matches!(ev, Event::Scalar(t, ScalarStyle::Plain, _, None) if t.is_empty())
}

fn invalid_node(ev: &Event, exp: &dyn de::Expected) -> Error {
    let unexp = match ev {
        Event::SequenceStart(..) => Unexpected::Seq,
        Event::MappingStart(..) => Unexpected::Map,
        _ => Unexpected::Other("the end of a list or mapping"),
    };
    de::Error::invalid_type(unexp, exp)
}

impl<'de> Reader<'de> {
    /// Reads a node that must be a scalar with a number, boolean or null,
    /// giving its class to `f`.
    fn scalar_as<V: Visitor<'de>>(
        &mut self,
        v: V,
        f: impl FnOnce(Plain, &str, V) -> Result<V::Value>,
    ) -> Result<V::Value> {
        let (ev, span) = self.next()?;
        let r = match &ev {
            Event::Scalar(text, style, _, tag) => match classify(text, *style, tag.as_deref()) {
                Ok(p) => f(p, text, v),
                Err(e) => Err(e),
            },
            other => {
                let e = invalid_node(other, &v);
                self.skip_rest(other)?;
                Err(e)
            }
        };
        r.map_err(|e| self.fix(e, &span))
    }

    fn text<V: Visitor<'de>>(&mut self, v: V) -> Result<V::Value> {
        let (ev, span) = self.next()?;
        let r = match ev {
            Event::Scalar(text, style, _, tag) => match text_ok(&text, style, tag.as_deref()) {
                Ok(_) => visit_text(text, v),
                Err(e) => Err(e),
            },
            other => {
                let e = invalid_node(&other, &v);
                self.skip_rest(&other)?;
                Err(e)
            }
        };
        r.map_err(|e| self.fix(e, &span))
    }

    fn collection<V: Visitor<'de>>(&mut self, v: V, map: bool) -> Result<V::Value> {
        let (ev, span) = self.next()?;
        let r = match &ev {
            Event::SequenceStart(_, Some(t)) | Event::MappingStart(_, Some(t))
                if !t.is_yaml_core_schema() =>
            {
                Err(Error::new(format!(
                    "YAML tags are not supported here (`{}{}`)",
                    t.handle, t.suffix
                )))
            }
            Event::MappingStart(..) if map => self.map(v, &span),
            Event::SequenceStart(..) if !map => self.seq(v, &span),
            e if is_empty_plain(e) => {
                if map {
                    v.visit_map(Nothing)
                } else {
                    v.visit_seq(Nothing)
                }
            }
            Event::Scalar(text, style, _, tag) => match classify(text, *style, tag.as_deref()) {
                Ok(p) => Err(de::Error::invalid_type(unexpected(text, &p), &v)),
                Err(e) => Err(e),
            },
            other => {
                let e = invalid_node(other, &v);
                self.skip_rest(other)?;
                Err(e)
            }
        };
        r.map_err(|e| self.fix(e, &span))
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let (kind, span) = match self.peek()? {
            (Event::SequenceStart(..), s) => (0, *s),
            (Event::MappingStart(..), s) => (1, *s),
            (Event::Scalar(..), s) => (2, *s),
            (_, s) => (3, *s),
        };
        match kind {
            0 => self.collection(v, false),
            1 => self.collection(v, true),
            2 => {
                let (ev, span) = self.next()?;
                let Event::Scalar(text, style, _, tag) = ev else {
                    unreachable!("peeked a scalar")
                };
                let r = match classify(&text, style, tag.as_deref()) {
                    Ok(Plain::Null) => v.visit_unit(),
                    Ok(Plain::Bool(b)) => v.visit_bool(b),
                    Ok(Plain::Int(i)) => v.visit_i64(i),
                    Ok(Plain::UInt(u)) => v.visit_u64(u),
                    Ok(Plain::Float(f)) => v.visit_f64(f),
                    Ok(Plain::Big) => Err(big(&text)),
                    Ok(Plain::Text) => visit_text(text, v),
                    Err(e) => Err(e),
                };
                r.map_err(|e| self.fix(e, &span))
            }
            _ => Err(self.fix(Error::new("unexpected YAML structure"), &span)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.scalar_as(v, |p, text, v| match p {
            Plain::Bool(b) => v.visit_bool(b),
            p => Err(de::Error::invalid_type(unexpected(text, &p), &v)),
        })
    }

    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.scalar_as(v, |p, text, v| match p {
            Plain::Int(i) => v.visit_i64(i),
            Plain::UInt(u) => v.visit_u64(u),
            Plain::Big => Err(big(text)),
            p => Err(de::Error::invalid_type(unexpected(text, &p), &v)),
        })
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_i64(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_i64(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_i64(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_i64(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_i64(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_i64(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_i64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.scalar_as(v, |p, text, v| match p {
            Plain::Int(i) => v.visit_i64(i),
            Plain::UInt(u) => v.visit_u64(u),
            Plain::Float(f) => v.visit_f64(f),
            Plain::Big => Err(big(text)),
            p => Err(de::Error::invalid_type(unexpected(text, &p), &v)),
        })
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_f64(v)
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.text(v)
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.text(v)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.text(v)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.text(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let (ev, span) = self.next()?;
        self.skip_rest(&ev)?;
        Err(self.fix(
            de::Error::invalid_type(Unexpected::Other("YAML"), &v),
            &span,
        ))
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_bytes(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let null = matches!(
            &self.peek()?.0,
            Event::Scalar(t, ScalarStyle::Plain, _, None)
                if matches!(resolve(t), Plain::Null)
        );
        if null {
            self.next()?;
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.scalar_as(v, |p, text, v| match p {
            Plain::Null => v.visit_unit(),
            p => Err(de::Error::invalid_type(unexpected(text, &p), &v)),
        })
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(v)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.collection(v, false)
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value> {
        self.collection(v, false)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value> {
        self.collection(v, false)
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.collection(v, true)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        self.collection(v, true)
    }

    /// A unit variant is its name; a variant with content is a mapping of
    /// one key.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        let (ev, span) = self.next()?;
        let r = match ev {
            Event::Scalar(text, style, _, tag) => match text_ok(&text, style, tag.as_deref()) {
                Ok(_) => v.visit_enum(text.into_owned().into_deserializer()),
                Err(e) => Err(e),
            },
            Event::MappingStart(_, None) => match self.enter(&span) {
                Err(e) => Err(e),
                Ok(()) => {
                    let r = v.visit_enum(EnumAccess { de: self });
                    match r {
                        Ok(value) => match self.next()? {
                            (Event::MappingEnd, _) => {
                                self.depth -= 1;
                                Ok(value)
                            }
                            (_, s) => Err(at(
                                Error::new("a variant is a mapping of exactly one key"),
                                &s,
                            )),
                        },
                        Err(e) => Err(e),
                    }
                }
            },
            other => {
                let e = invalid_node(&other, &v);
                self.skip_rest(&other)?;
                Err(e)
            }
        };
        r.map_err(|e| self.fix(e, &span))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let (ev, _) = self.next()?;
        self.skip_rest(&ev)?;
        v.visit_unit()
    }
}

/// The entries of an empty value read as a mapping or list.
struct Nothing;

impl<'de> de::SeqAccess<'de> for Nothing {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, _: T) -> Result<Option<T::Value>> {
        Ok(None)
    }
}

impl<'de> de::MapAccess<'de> for Nothing {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, _: K) -> Result<Option<K::Value>> {
        Ok(None)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, _: T) -> Result<T::Value> {
        Err(Error::new("a value without a key"))
    }
}

struct SeqAccess<'a, 'de> {
    de: &'a mut Reader<'de>,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if matches!(self.de.peek()?.0, Event::SequenceEnd) {
            return Ok(None);
        }
        self.de.path.push(Segment::Index(self.index));
        let r = seed.deserialize(&mut *self.de);
        self.de.path.pop();
        self.index += 1;
        r.map(Some)
    }
}

/// A mapping being read: where its keys start on the reader's stack of
/// seen keys (a long mapping moves them to a set), and where its current
/// key is.
struct MapState<'de> {
    base: usize,
    set: Option<foldhash::HashSet<Cow<'de, str>>>,
    key_span: Option<Span>,
    done: bool,
}

impl<'de> MapState<'de> {
    fn contains(&self, seen: &[Cow<'de, str>], key: &str) -> bool {
        match &self.set {
            Some(set) => set.contains(key),
            None => seen
                .get(self.base..)
                .unwrap_or_default()
                .iter()
                .any(|k| k == key),
        }
    }

    fn insert(&mut self, seen: &mut Vec<Cow<'de, str>>, key: Cow<'de, str>) {
        match &mut self.set {
            Some(set) => {
                set.insert(key);
            }
            None => {
                seen.push(key);
                if seen.len() - self.base > LINEAR_KEYS {
                    self.set = Some(seen.drain(self.base..).collect());
                }
            }
        }
    }
}

struct MapAccess<'a, 'de> {
    de: &'a mut Reader<'de>,
    state: &'a mut MapState<'de>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let (ev, span) = self.de.peek()?;
        let span = *span;
        match ev {
            Event::MappingEnd => {
                self.state.done = true;
                return Ok(None);
            }
            Event::Scalar(..) => {}
            _ => {
                return Err(self.de.fix(
                    Error::new("a mapping key must be a plain value, not a list or mapping"),
                    &span,
                ));
            }
        }
        let Some((Event::Scalar(text, style, _, tag), _)) = self.de.peeked.take() else {
            unreachable!("peeked a scalar")
        };
        self.state.key_span = Some(span);
        if self.state.contains(&self.de.seen, &text) {
            return Err(self
                .de
                .fix(Error::new(format!("duplicate key `{text}`")), &span));
        }
        // The key is read from a borrow, so that the text itself moves into
        // the path and then the mapping's seen keys without a copy.
        let k = seed
            .deserialize(Key {
                text: &text,
                style,
                tag: tag.as_deref(),
            })
            .map_err(|e| self.de.fix(e, &span))?;
        self.de.path.push(Segment::Key(text));
        Ok(Some(k))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value> {
        let r = seed.deserialize(&mut *self.de);
        if let Some(Segment::Key(k)) = self.de.path.pop() {
            self.state.insert(&mut self.de.seen, k);
        }
        r
    }
}

/// A mapping key, read from its text.
struct Key<'a> {
    text: &'a str,
    style: ScalarStyle,
    tag: Option<&'a Tag>,
}

impl<'de> de::Deserializer<'de> for Key<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match classify(self.text, self.style, self.tag)? {
            Plain::Null => v.visit_unit(),
            Plain::Bool(b) => v.visit_bool(b),
            Plain::Int(i) => v.visit_i64(i),
            Plain::UInt(u) => v.visit_u64(u),
            Plain::Float(f) => v.visit_f64(f),
            Plain::Big => Err(big(self.text)),
            Plain::Text => v.visit_str(self.text),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        text_ok(self.text, self.style, self.tag)?;
        v.visit_str(self.text)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_str(v)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_str(v)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_str(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_some(self)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        text_ok(self.text, self.style, self.tag)?;
        v.visit_enum(self.text.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct ignored_any
    }
}

struct EnumAccess<'a, 'de> {
    de: &'a mut Reader<'de>,
}

impl<'a, 'de> de::EnumAccess<'de> for EnumAccess<'a, 'de> {
    type Error = Error;
    type Variant = VariantAccess<'a, 'de>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant)> {
        let name = match &self.de.peek()?.0 {
            Event::Scalar(text, ..) => text.clone(),
            _ => {
                let span = self.de.peek()?.1;
                return Err(self
                    .de
                    .fix(Error::new("a variant name must be text"), &span));
            }
        };
        let v = seed.deserialize(&mut *self.de)?;
        self.de.path.push(Segment::Key(name));
        Ok((v, VariantAccess { de: self.de }))
    }
}

struct VariantAccess<'a, 'de> {
    de: &'a mut Reader<'de>,
}

impl<'de> VariantAccess<'_, 'de> {
    fn done<T>(self, r: Result<T>) -> Result<T> {
        self.de.path.pop();
        r
    }
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        let r = de::Deserialize::deserialize(&mut *self.de);
        self.done(r)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        let r = seed.deserialize(&mut *self.de);
        self.done(r)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value> {
        let r = self.de.deserialize_seq(v);
        self.done(r)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        let r = self.de.deserialize_map(v);
        self.done(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        n: Option<i64>,
        #[serde(default)]
        items: Vec<String>,
        #[serde(default)]
        map: BTreeMap<String, Value>,
    }

    fn err<T: for<'de> Deserialize<'de> + fmt::Debug>(src: &str) -> Error {
        from_str::<T>(src).expect_err("refused")
    }

    #[test]
    fn scalars_read_as_the_core_schema() {
        let v: Value = from_str(
            "a: 7\nb: '7'\nc: 007\nd: 0x1f\ne: 1.5\nf: true\ng: ~\nh:\ni: -3\nj: 18446744073709551615\nk: .inf\nl: yes\n",
        )
        .unwrap();
        let get = |k: &str| v.get(k).cloned().unwrap();
        assert_eq!(get("a"), Value::Int(7));
        assert_eq!(get("b"), Value::String("7".into()));
        // YAML 1.2: a leading zero makes text, not an octal number.
        assert_eq!(get("c"), Value::String("007".into()));
        assert_eq!(get("d"), Value::Int(31));
        assert_eq!(get("e"), Value::Float(1.5));
        assert_eq!(get("f"), Value::Bool(true));
        assert_eq!(get("g"), Value::Null);
        assert_eq!(get("h"), Value::Null);
        assert_eq!(get("i"), Value::Int(-3));
        assert_eq!(get("j"), Value::UInt(u64::MAX));
        assert_eq!(get("k"), Value::Float(f64::INFINITY));
        // YAML 1.1's `yes` is text in 1.2.
        assert_eq!(get("l"), Value::String("yes".into()));
    }

    #[test]
    fn any_scalar_reads_as_text_where_text_is_expected() {
        let d: Doc = from_str("name: 42\nitems: [1, true, ~, 'x']").unwrap();
        assert_eq!(d.name.as_deref(), Some("42"));
        assert_eq!(d.items, ["1", "true", "~", "x"]);
        // An empty value is an empty list or mapping where one is expected.
        let d: Doc = from_str("items:\nmap:\n").unwrap();
        assert!(d.items.is_empty() && d.map.is_empty());
    }

    #[test]
    fn a_number_beyond_64_bits_is_refused_not_rounded() {
        let e = err::<Value>("tenant: 123456789012345678901234567890");
        assert!(e.message().contains("does not fit in 64 bits"), "{e}");
        assert_eq!(e.location(), Some((1, 9)));
        let e = err::<Doc>("n: 99999999999999999999");
        assert!(e.message().starts_with("n: "), "{e}");
        // Quoted, it is text.
        let v: Value = from_str("tenant: '123456789012345678901234567890'").unwrap();
        assert!(matches!(v.get("tenant"), Some(Value::String(_))));
    }

    #[test]
    fn a_repeated_key_is_refused_at_the_repeat_in_any_mapping() {
        let e = err::<Value>("a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\n");
        assert_eq!(e.to_string(), "b: duplicate key `x` at line 5 column 3");
        // Keys read alike but written differently are the same key.
        let e = err::<Value>("{a: 1, \"a\": 2}");
        assert!(e.message().contains("duplicate key `a`"), "{e}");
        // A long mapping (past the linear check) too.
        let mut src: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        src.push_str("k57: again\n");
        let e = err::<BTreeMap<String, Value>>(&src);
        assert_eq!(e.location(), Some((101, 1)), "{e}");
        // Into a JSON value (builder questions), the same.
        let e = err::<serde_json::Value>("source-table: a\nsource-table: b\n");
        assert!(e.message().contains("duplicate key"), "{e}");
    }

    #[test]
    fn errors_name_the_path_and_position() {
        let e = err::<Doc>("name: x\nbogus: 1\n");
        assert!(e.message().starts_with("unknown field `bogus`"), "{e}");
        assert_eq!(e.location(), Some((2, 1)));
        let e = err::<Doc>("items:\n  - a\n  - [b]\n");
        assert_eq!(
            e.message(),
            "items[1]: invalid type: sequence, expected a string"
        );
        assert_eq!(e.location(), Some((3, 5)));
        let e = err::<Doc>("n: twelve\n");
        assert_eq!(
            e.to_string(),
            "n: invalid type: string \"twelve\", expected i64 at line 1 column 4"
        );
        let e = err::<Doc>("name: [unclosed\n");
        assert!(e.location().is_some(), "{e}");
    }

    #[test]
    fn one_document_only() {
        let e = err::<Value>("a: 1\n---\nb: 2\n");
        assert!(e.message().contains("more than one YAML document"), "{e}");
        assert_eq!(e.location(), Some((2, 1)));
        // Explicit start and end markers around one document are fine.
        let v: Value = from_str("---\na: 1\n...\n").unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
        // An empty stream is an empty value.
        let d: Doc = from_str("").unwrap();
        assert_eq!(d.name, None);
        let d: Doc = from_str("# only a comment\n").unwrap();
        assert_eq!(d.name, None);
    }

    #[test]
    fn tags_other_than_the_core_schema_are_refused() {
        let e = err::<Value>("a: !secret x\n");
        assert!(e.message().contains("YAML tags are not supported"), "{e}");
        let e = err::<Value>("a: !!binary aGk=\n");
        assert!(
            e.message().contains("!!binary") || e.message().contains("binary"),
            "{e}"
        );
        let e = err::<Doc>("map: !custom {a: 1}\n");
        assert!(e.message().contains("YAML tags are not supported"), "{e}");
        // Core tags say what a value is.
        let v: Value = from_str("a: !!str 7\nb: !!int '7'\n").unwrap();
        assert_eq!(v.get("a"), Some(&Value::String("7".into())));
        let e = err::<Value>("a: !!int seven\n");
        assert!(e.message().contains("not a valid !!int"), "{e}");
    }

    #[test]
    fn mapping_keys_are_scalars() {
        let e = err::<Value>("? [a, b]\n: 1\n");
        assert!(
            e.message().contains("mapping key must be a plain value"),
            "{e}"
        );
    }

    #[test]
    fn aliases_replay_their_anchor() {
        let d: Doc =
            from_str("map: {a: &x [1, 2], b: *x}\nitems: &i [p, q]\nname: &n who\n").unwrap();
        assert_eq!(
            d.map.get("b"),
            Some(&Value::Sequence(vec![Value::Int(1), Value::Int(2)]))
        );
        assert_eq!(d.items, ["p", "q"]);
        let v: Value = from_str("a: &a {k: v}\nb: [*a, *a]\n").unwrap();
        let Some(Value::Sequence(b)) = v.get("b") else {
            panic!("{v:?}")
        };
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].get("k"), Some(&Value::String("v".into())));
    }

    #[test]
    fn alias_expansion_is_bounded() {
        // The "billion laughs": nine levels of ten aliases each.
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = err::<Value>(&src);
        assert!(e.message().contains("aliases expand to more than"), "{e}");
        let e = err::<serde::de::IgnoredAny>(&src);
        assert!(e.message().contains("aliases expand to more than"), "{e}");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = err::<Value>(&deep);
        assert!(e.message().contains("nesting deeper than 128"), "{e}");
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        from_str::<Value>(&ok).unwrap();
    }

    #[test]
    fn hostile_text_never_panics() {
        for src in [
            "\u{0}",
            "\"\\",
            "{",
            "[",
            "a: b: c",
            "- a\nb: c",
            "&",
            "*x",
            "!!",
            "? ",
            "'",
            "%YAML 9\n---\na",
            "a: |\n b\n c",
            "\t- x",
            "a: \u{feff}b",
            "---\n...\n---\n",
        ] {
            let _ = from_str::<Value>(src);
            let _ = from_str::<Doc>(src);
            let _ = from_str::<serde_json::Value>(src);
        }
    }
}
