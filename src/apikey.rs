//! API keys: generating secrets, and adding, rotating and retiring keys in
//! a policy file's `api_keys:` by a targeted edit of its text.
//!
//! A policy declares a key by the SHA-256 of its secret, never the secret
//! itself. [`generate_secret`] draws 32 bytes from the operating system's
//! CSPRNG and writes them as `sk_` and 64 hex digits.
//!
//! The editors ([`add`], [`rotate`], [`finish_rotation`]) change only the
//! lines of one key, so the rest of the file — comments, order, quoting,
//! blank lines — stays as written. Each then proves its edit: the edited
//! text must load as a policy, read exactly as the old one everywhere but
//! under `api_keys.NAME`, hold the entry intended, and (for a new secret)
//! authenticate that secret as the key. Otherwise it returns
//! [`Error::PolicyEdit`] and no text, so the caller leaves the file alone.
//!
//! Rotation keeps two secrets valid for a while: [`rotate`] moves `sha256`
//! to `previous_sha256` and writes the new secret's hash as `sha256`; both
//! authenticate until [`finish_rotation`] removes `previous_sha256`.
//!
//! ```
//! use sqlsandbox::{apikey, Policy, Principal};
//! let src = "version: 1\ngroups: {reporting: {}}\n# keys below\n";
//! let secret = apikey::generate_secret().unwrap();
//! let added = apikey::add(src, "p.yaml", "ci", "reporting", &[], &secret).unwrap();
//! assert!(added.text.starts_with(src));
//! let policy = Policy::from_yaml(&added.text, "p.yaml").unwrap();
//! assert_eq!(Principal::from_api_key(&policy, &secret).unwrap().name(), "api-key:ci");
//!
//! let next = apikey::generate_secret().unwrap();
//! let rotated = apikey::rotate(&added.text, "p.yaml", "ci", &next).unwrap();
//! let policy = Policy::from_yaml(&rotated.text, "p.yaml").unwrap();
//! assert!(Principal::from_api_key(&policy, &secret).is_ok());
//! assert!(Principal::from_api_key(&policy, &next).is_ok());
//!
//! let done = apikey::finish_rotation(&rotated.text, "p.yaml", "ci").unwrap();
//! let policy = Policy::from_yaml(&done.text, "p.yaml").unwrap();
//! assert!(Principal::from_api_key(&policy, &secret).is_err());
//! assert!(Principal::from_api_key(&policy, &next).is_ok());
//! ```

use crate::yaml::{Mapping, Value};

use crate::error::{Error, Result};
use crate::policy::{ColumnType, Policy};
use crate::principal::{AttributeValue, Principal, Scalar};

/// What every generated secret starts with.
pub const SECRET_PREFIX: &str = "sk_";

/// How many random bytes a generated secret holds (256 bits).
pub const SECRET_BYTES: usize = 32;

/// A new secret: [`SECRET_PREFIX`] and [`SECRET_BYTES`] bytes from the
/// operating system's CSPRNG as lower-case hex.
///
/// ```
/// let s = sqlsandbox::apikey::generate_secret().unwrap();
/// assert!(s.starts_with("sk_") && s.len() == 3 + 64);
/// ```
pub fn generate_secret() -> Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| Error::Io {
        path: "the operating system's random number generator".into(),
        message: e.to_string(),
    })?;
    Ok(format!("{SECRET_PREFIX}{}", hex(&bytes)))
}

/// The lower-case hex SHA-256 of a secret: what a policy's `sha256:` holds.
///
/// ```
/// assert_eq!(
///     sqlsandbox::apikey::sha256_hex("demo-key-reporting-bot"),
///     "024c61f6a7b4db75206841fb48bafa3f565b3a9dbf9941e3ccf5652cde0aae7e"
/// );
/// ```
pub fn sha256_hex(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An edited policy text.
#[derive(Debug, Clone)]
pub struct KeyEdit {
    /// The whole policy, edited.
    pub text: String,
    /// The key's entry as it reads after the edit, as YAML under
    /// `api_keys:` (to paste by hand when the file is not written).
    pub snippet: String,
}

/// Adds API key `name`, acting as `group` with `attributes`, for `secret`
/// (of which only the SHA-256 is written). Refused when the key exists
/// ([`Error::PolicyEdit`]), the group is unknown ([`Error::Unknown`]), an
/// attribute is undeclared when the policy declares its attributes
/// ([`Error::Unknown`]), or the name is not a plain identifier (a letter,
/// then letters, digits, `_`, `-` or `.`).
///
/// Text values of `attributes` (as `--attr k=v` gives them) are written
/// as integers when they read as one and the attribute is not declared
/// with a non-numeric type, as booleans for a declared boolean, else as
/// strings; a value that does not fit a declared type is refused when the
/// edited policy is loaded.
pub fn add(
    src: &str,
    file: &str,
    name: &str,
    group: &str,
    attributes: &[(String, AttributeValue)],
    secret: &str,
) -> Result<KeyEdit> {
    let policy = Policy::from_yaml(src, file)?;
    let refuse = |message: String| edit_error(file, message);
    check_name(name).map_err(refuse)?;
    if policy.api_key(name).is_some() {
        return Err(refuse(format!(
            "API key `{name}` exists already; give it a new secret with `sqlsandbox apikey rotate {name}`"
        )));
    }
    if policy.group(group).is_none() {
        return Err(Error::Unknown {
            kind: "group",
            name: group.to_string(),
        });
    }
    let hash = new_hash(&policy, file, secret)?;
    let mut entry = Mapping::new();
    entry.insert("group".into(), group.into());
    entry.insert("sha256".into(), hash.into());
    if !attributes.is_empty() {
        let mut attrs = Mapping::new();
        for (k, v) in attributes {
            if let Some(declared) = &policy.declared_attributes {
                if !declared.contains(k) {
                    return Err(Error::Unknown {
                        kind: "attribute",
                        name: k.clone(),
                    });
                }
            }
            attrs.insert(k.as_str().into(), attribute_yaml(&policy, k, v));
        }
        entry.insert("attributes".into(), Value::Mapping(attrs));
    }
    let text = insert_entry(src, name, &entry).map_err(refuse)?;
    let edited = verify(src, &text, file, name, Some(&entry))?;
    authenticates(&edited, file, name, secret)?;
    Ok(KeyEdit {
        text,
        snippet: snippet(name, &entry),
    })
}

/// Starts rotating API key `name` to `secret`: its `sha256` becomes the
/// new secret's and the old one moves to `previous_sha256`, so that both
/// secrets authenticate until [`finish_rotation`]. Refused for an unknown
/// key ([`Error::Unknown`]) and while a rotation is in progress.
pub fn rotate(src: &str, file: &str, name: &str, secret: &str) -> Result<KeyEdit> {
    let policy = Policy::from_yaml(src, file)?;
    let refuse = |message: String| edit_error(file, message);
    let key = policy.api_key(name).ok_or_else(|| Error::Unknown {
        kind: "API key",
        name: name.to_string(),
    })?;
    if key.rotating() {
        return Err(refuse(format!(
            "a rotation of API key `{name}` is in progress (its previous secret still works); finish it first with `sqlsandbox apikey finish-rotation {name}`"
        )));
    }
    let old = key.sha256.clone();
    let hash = new_hash(&policy, file, secret)?;
    let mut entry = old_entry(src, file, name)?;
    entry.insert("sha256".into(), hash.clone().into());
    entry.insert("previous_sha256".into(), old.clone().into());
    let text = edit_entry(
        src,
        name,
        &Op::Rotate {
            new: &hash,
            old: &old,
        },
    )
    .map_err(refuse)?;
    let edited = verify(src, &text, file, name, Some(&entry))?;
    authenticates(&edited, file, name, secret)?;
    if !edited.api_key(name).is_some_and(|k| k.accepts(&old)) {
        return Err(refuse(format!(
            "the edited policy would no longer accept the old secret of `{name}`{LEFT}"
        )));
    }
    Ok(KeyEdit {
        text,
        snippet: snippet(name, &entry),
    })
}

/// Ends the rotation of API key `name`: removes `previous_sha256`, so that
/// only the new secret authenticates. Refused for an unknown key and when
/// no rotation is in progress.
pub fn finish_rotation(src: &str, file: &str, name: &str) -> Result<KeyEdit> {
    let policy = Policy::from_yaml(src, file)?;
    let refuse = |message: String| edit_error(file, message);
    let key = policy.api_key(name).ok_or_else(|| Error::Unknown {
        kind: "API key",
        name: name.to_string(),
    })?;
    let Some(previous) = key.previous_sha256.clone() else {
        return Err(refuse(format!(
            "no rotation of API key `{name}` is in progress (it has no `previous_sha256`)"
        )));
    };
    let current = key.sha256.clone();
    let mut entry = old_entry(src, file, name)?;
    entry.remove("previous_sha256");
    let text = edit_entry(src, name, &Op::DropPrevious).map_err(refuse)?;
    let edited = verify(src, &text, file, name, Some(&entry))?;
    match edited.api_key(name) {
        Some(k) if k.sha256 == current && !k.accepts(&previous) => {}
        _ => {
            return Err(refuse(format!(
                "the edited policy does not retire the previous secret of `{name}`{LEFT}"
            )))
        }
    }
    Ok(KeyEdit {
        text,
        snippet: snippet(name, &entry),
    })
}

/// Appended to a refusal of an edit that was made and failed its proof.
const LEFT: &str = "; the file is left as it was";

fn edit_error(file: &str, message: String) -> Error {
    Error::PolicyEdit {
        path: file.to_string(),
        message,
    }
}

/// The SHA-256 of a new secret, refused when the secret is too short or
/// some key already accepts it.
fn new_hash(policy: &Policy, file: &str, secret: &str) -> Result<String> {
    if secret.len() < 32 {
        return Err(edit_error(
            file,
            "an API key secret must be at least 32 characters long".into(),
        ));
    }
    let hash = sha256_hex(secret);
    if let Some(other) = policy.api_keys().iter().find(|k| k.accepts(&hash)) {
        return Err(edit_error(
            file,
            format!("that secret is already API key `{}`'s", other.name),
        ));
    }
    Ok(hash)
}

/// A key name written as a plain YAML scalar that reads back as itself.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if plain_safe(name) && name.len() <= 100 {
        Ok(())
    } else {
        Err(format!(
            "API key name `{name}` must be a letter followed by letters, digits, `_`, `-` or `.` (at most 100 characters)"
        ))
    }
}

/// Whether `s` can be written as a plain YAML scalar that reads back as
/// the same string.
fn plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
}

/// The principal of `secret` in the edited policy must be key `name`.
fn authenticates(edited: &Policy, file: &str, name: &str, secret: &str) -> Result<()> {
    match Principal::from_api_key(edited, secret) {
        Ok(p) if p.name() == format!("api-key:{name}") => Ok(()),
        _ => Err(edit_error(
            file,
            format!("the new secret would not authenticate as API key `{name}` in the edited policy{LEFT}"),
        )),
    }
}

/// An attribute value as YAML (see [`add`]).
fn attribute_yaml(policy: &Policy, attribute: &str, value: &AttributeValue) -> Value {
    let ty = policy.attribute_types.get(attribute).map(|t| t.ty);
    let scalar = |s: &Scalar| -> Value {
        match s {
            Scalar::Text(t) => {
                let int = t
                    .parse::<i64>()
                    .ok()
                    .filter(|i| i.to_string() == *t)
                    .filter(|_| {
                        matches!(ty, None | Some(ColumnType::Integer | ColumnType::Decimal))
                    });
                match (int, ty) {
                    (Some(i), _) => Value::from(i),
                    (None, Some(ColumnType::Boolean)) if t.eq_ignore_ascii_case("true") => {
                        Value::Bool(true)
                    }
                    (None, Some(ColumnType::Boolean)) if t.eq_ignore_ascii_case("false") => {
                        Value::Bool(false)
                    }
                    _ => Value::String(t.clone()),
                }
            }
            Scalar::Integer(i) => Value::from(*i),
            Scalar::Number(n) => n
                .parse::<f64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(n.clone())),
            Scalar::Bool(b) => Value::Bool(*b),
        }
    };
    match value {
        AttributeValue::Single(s) => scalar(s),
        AttributeValue::Many(v) => Value::Sequence(v.iter().map(scalar).collect()),
    }
}

/// A scalar as YAML text: plain when that reads back as the same value,
/// else double-quoted (JSON string syntax, which YAML reads alike).
fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) if plain_safe(s) => s.clone(),
        Value::String(s) => serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}")),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(yaml_scalar).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", yaml_scalar(k), yaml_scalar(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Null => "null".into(),
    }
}

/// A hash as YAML text: plain, unless its digits could read as a number
/// (only digits and `e`), then quoted.
fn yaml_hash(hash: &str) -> String {
    if hash.bytes().all(|b| b.is_ascii_digit() || b == b'e') {
        format!("\"{hash}\"")
    } else {
        hash.to_string()
    }
}

/// A new entry's lines, at `indent` with its fields `step` deeper.
fn render_entry(name: &str, entry: &Mapping, indent: usize, step: usize, nl: &str) -> String {
    let pad = " ".repeat(indent);
    let inner = " ".repeat(indent + step);
    let mut out = format!("{pad}{name}:{nl}");
    for (k, v) in entry {
        let value = match (k.as_str(), v) {
            (Some("sha256" | "previous_sha256"), Value::String(h)) => yaml_hash(h),
            _ => yaml_scalar(v),
        };
        out.push_str(&format!("{inner}{}: {value}{nl}", yaml_scalar(k)));
    }
    out
}

/// `api_keys:` with the entry, as YAML to paste.
fn snippet(name: &str, entry: &Mapping) -> String {
    format!("api_keys:\n{}", render_entry(name, entry, 2, 2, "\n"))
}

/// The key's entry as the policy text holds it.
fn old_entry(src: &str, file: &str, name: &str) -> Result<Mapping> {
    let v: Value = crate::yaml::from_str(src).map_err(|e| edit_error(file, e.to_string()))?;
    match entry_of(&v, name) {
        Some(Value::Mapping(m)) => Ok(m.clone()),
        _ => Err(edit_error(
            file,
            format!("API key `{name}` is not a mapping in the file"),
        )),
    }
}

fn entry_of<'v>(doc: &'v Value, name: &str) -> Option<&'v Value> {
    doc.get("api_keys")?.get(name)
}

/// The document without `api_keys.NAME` (and without an `api_keys:` left
/// empty or null).
fn without_entry(mut doc: Value, name: &str) -> Value {
    if let Value::Mapping(m) = &mut doc {
        let empty = match m.get_mut("api_keys") {
            Some(Value::Mapping(keys)) => {
                keys.remove(name);
                keys.is_empty()
            }
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            m.remove("api_keys");
        }
    }
    doc
}

/// Proves an edit: the new text loads as a policy, reads as the old one
/// everywhere but `api_keys.NAME`, and holds `entry` there.
fn verify(
    old_src: &str,
    new_src: &str,
    file: &str,
    name: &str,
    entry: Option<&Mapping>,
) -> Result<Policy> {
    let refuse = |m: String| edit_error(file, format!("{m}{LEFT}"));
    let policy = Policy::from_yaml(new_src, file)
        .map_err(|e| refuse(format!("the edited policy would not load: {e}")))?;
    let parse = |s: &str| {
        crate::yaml::from_str::<Value>(s)
            .map_err(|e| refuse(format!("the edited text is not YAML: {e}")))
    };
    let (old, new) = (parse(old_src)?, parse(new_src)?);
    if entry_of(&new, name) != entry.cloned().map(Value::Mapping).as_ref() {
        return Err(refuse(format!(
            "the edited entry of API key `{name}` does not read as intended (an unusual layout of the file?)"
        )));
    }
    if without_entry(old, name) != without_entry(new, name) {
        return Err(refuse(format!(
            "the edit would change more than `api_keys.{name}` (an unusual layout of the file?)"
        )));
    }
    Ok(policy)
}

// ---- The text of the policy, line by line. ----

/// A line of the policy text.
#[derive(Clone, Copy)]
struct Line<'a> {
    /// Byte offset of its start.
    start: usize,
    /// Its text, without the line ending.
    text: &'a str,
    /// Byte offset just past its line ending.
    next: usize,
}

impl<'a> Line<'a> {
    fn content(&self) -> &'a str {
        self.text.trim_start_matches(' ')
    }
    fn indent(&self) -> usize {
        self.text.len() - self.content().len()
    }
    fn blank(&self) -> bool {
        self.content().trim().is_empty()
    }
    /// Neither blank nor a comment.
    fn significant(&self) -> bool {
        !self.blank() && !self.content().starts_with('#')
    }
    /// Byte offset (in the whole text) of a suffix of this line.
    fn offset_of(&self, suffix: &str) -> usize {
        self.start + self.text.len() - suffix.len()
    }
}

fn split_lines(src: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for piece in src.split_inclusive('\n') {
        let next = start + piece.len();
        let text = piece.strip_suffix('\n').unwrap_or(piece);
        let text = text.strip_suffix('\r').unwrap_or(text);
        out.push(Line { start, text, next });
        start = next;
    }
    out
}

/// The line ending the file uses.
fn newline(src: &str) -> &'static str {
    if src.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

const BUG: &str = "internal error while editing the text";

fn line<'a>(lines: &[Line<'a>], i: usize) -> std::result::Result<Line<'a>, String> {
    lines.get(i).copied().ok_or_else(|| BUG.to_string())
}

/// The key of a block mapping line (`key:`, `"key":`, `'key':`) and what
/// follows its colon.
fn block_key(content: &str) -> Option<(String, &str)> {
    let (key, after) = match content.chars().next()? {
        q @ ('"' | '\'') => {
            let body = content.get(1..)?;
            let end = body.find(q)?;
            let (key, rest) = body.split_at_checked(end)?;
            (key.to_string(), rest.get(1..)?.trim_start_matches(' '))
        }
        '-' | '?' | '{' | '[' | '#' | '&' | '*' | '!' | '|' | '>' => return None,
        _ => {
            let colon = content
                .match_indices(':')
                .map(|(i, _)| i)
                .find(|&i| matches!(content.get(i + 1..i + 2), None | Some(" ")))?;
            let (key, rest) = content.split_at_checked(colon)?;
            (key.trim_end().to_string(), rest)
        }
    };
    let rest = after.strip_prefix(':')?;
    (rest.is_empty() || rest.starts_with(' ')).then_some((key, rest))
}

/// What follows the key's colon on a block mapping line.
fn rest_of(content: &str) -> Option<&str> {
    block_key(content).map(|(_, rest)| rest)
}

/// The value written after a key's colon (without a trailing comment),
/// and its offset in `rest`.
fn value_of(rest: &str) -> (&str, usize) {
    let trimmed = rest.trim_start_matches(' ');
    let at = rest.len() - trimmed.len();
    let value = match trimmed.find(" #") {
        _ if trimmed.starts_with('#') => "",
        Some(i) => trimmed.get(..i).unwrap_or(trimmed),
        None => trimmed,
    };
    (value.trim_end(), at)
}

/// The index of top-level key `key`, if the file has it; an error when
/// the top level is not a block mapping.
fn find_top(lines: &[Line], key: &str) -> std::result::Result<Option<usize>, String> {
    let body = lines
        .iter()
        .filter(|l| l.significant())
        .find(|l| !l.content().starts_with("---") && !l.content().starts_with('%'));
    if let Some(first) = body {
        if first.indent() != 0 || block_key(first.content()).is_none() {
            return Err("the policy is not a block mapping at its top level (`key: value` lines); add the entry by hand".into());
        }
    }
    Ok(lines.iter().position(|l| {
        l.significant() && l.indent() == 0 && block_key(l.content()).is_some_and(|(k, _)| k == key)
    }))
}

/// The end (exclusive) of the block under line `i`, whose key sits at
/// `indent`: up to the last non-blank line indented deeper, before the
/// next key at `indent` or less.
fn extent(lines: &[Line], i: usize, indent: usize) -> usize {
    let mut end = i + 1;
    for (j, l) in lines.iter().enumerate().skip(i + 1) {
        if l.blank() {
            continue;
        }
        if l.indent() > indent {
            end = j + 1;
        } else if l.significant() {
            break;
        }
    }
    end
}

/// The direct children of line `i` (its block ends at `end`): the
/// significant lines at the indentation of the first one.
fn children(lines: &[Line], i: usize, end: usize) -> std::result::Result<Vec<usize>, String> {
    let mut indent = None;
    let mut out = Vec::new();
    for (j, l) in lines.iter().enumerate().take(end).skip(i + 1) {
        if !l.significant() {
            continue;
        }
        let c = *indent.get_or_insert(l.indent());
        if l.indent() < c {
            return Err(format!(
                "line {} is indented less than the lines before it; edit the file by hand",
                j + 1
            ));
        }
        if l.indent() == c {
            out.push(j);
        }
    }
    Ok(out)
}

/// Replaces `range` of `src` with `with`.
fn splice(src: &str, from: usize, to: usize, with: &str) -> std::result::Result<String, String> {
    let (before, after) = (src.get(..from), src.get(to..));
    match (before, after) {
        (Some(b), Some(a)) => Ok(format!("{b}{with}{a}")),
        _ => Err(BUG.into()),
    }
}

/// Inserts whole lines at byte `at` (a line start, or the end of a file
/// that may lack its last newline).
fn insert_lines(src: &str, at: usize, text: &str) -> std::result::Result<String, String> {
    let lead = if at > 0 && src.get(..at).is_some_and(|b| !b.ends_with('\n')) {
        newline(src)
    } else {
        ""
    };
    splice(src, at, at, &format!("{lead}{text}"))
}

/// `src` with a new entry under `api_keys:` (added at the end of the file
/// when there is none).
fn insert_entry(src: &str, name: &str, entry: &Mapping) -> std::result::Result<String, String> {
    let lines = split_lines(src);
    let nl = newline(src);
    let Some(a) = find_top(&lines, "api_keys")? else {
        let text = format!("api_keys:{nl}{}", render_entry(name, entry, 2, 2, nl));
        return insert_lines(src, src.len(), &text);
    };
    let head = line(&lines, a)?;
    let rest = rest_of(head.content()).ok_or(BUG)?;
    let (value, at) = value_of(rest);
    match value {
        "" => {}
        "{}" | "~" | "null" => {
            // `api_keys: {}` becomes `api_keys:` (keeping a comment), and the
            // entry goes below it.
            let from = head.offset_of(rest);
            let to = from + at + value.len();
            let bare = splice(src, from, to, "")?;
            return insert_entry(&bare, name, entry);
        }
        _ => {
            return Err(
                "`api_keys:` is written in flow style (`{…}`); write it as a block mapping, or add the entry by hand"
                    .into(),
            )
        }
    }
    let end = extent(&lines, a, 0);
    let kids = children(&lines, a, end)?;
    let (indent, step) = match kids.first() {
        None => (2, 2),
        Some(&k) => {
            let c = line(&lines, k)?.indent();
            let step = kids
                .iter()
                .find_map(|&k| {
                    let inner = children(&lines, k, extent(&lines, k, c)).ok()?;
                    let first = lines.get(*inner.first()?)?;
                    first.indent().checked_sub(c).filter(|s| *s > 0)
                })
                .unwrap_or(2);
            (c, step)
        }
    };
    let at = line(&lines, end - 1)?.next;
    insert_lines(src, at, &render_entry(name, entry, indent, step, nl))
}

/// An edit of one key's entry.
enum Op<'h> {
    /// `sha256: new` and `previous_sha256: old`.
    Rotate { new: &'h str, old: &'h str },
    /// No `previous_sha256`.
    DropPrevious,
}

/// `src` with `op` applied to the entry of key `name`.
fn edit_entry(src: &str, name: &str, op: &Op) -> std::result::Result<String, String> {
    let lines = split_lines(src);
    let nl = newline(src);
    let a = find_top(&lines, "api_keys")?.ok_or(BUG)?;
    let end = extent(&lines, a, 0);
    let head = line(&lines, a)?;
    if !value_of(rest_of(head.content()).ok_or(BUG)?).0.is_empty() {
        return Err("`api_keys:` is written in flow style (`{…}`); write it as a block mapping, or edit the entry by hand".into());
    }
    let e = children(&lines, a, end)?
        .into_iter()
        .find(|&k| {
            lines
                .get(k)
                .and_then(|l| block_key(l.content()))
                .is_some_and(|(key, _)| key == name)
        })
        .ok_or_else(|| format!("cannot find the line of API key `{name}`"))?;
    let entry = line(&lines, e)?;
    let rest = rest_of(entry.content()).ok_or(BUG)?;
    let (value, at) = value_of(rest);
    if value.starts_with('{') && value.ends_with('}') {
        return edit_flow(src, entry.offset_of(rest) + at, value, op);
    }
    if !value.is_empty() {
        return Err(format!(
            "cannot read the entry of API key `{name}`; edit it by hand"
        ));
    }
    let fields = children(&lines, e, extent(&lines, e, entry.indent()))?;
    let field = |key: &str| {
        fields.iter().copied().find(|&f| {
            lines
                .get(f)
                .and_then(|l| block_key(l.content()))
                .is_some_and(|(k, _)| k == key)
        })
    };
    let one_line = |i: usize| -> std::result::Result<(Line, &str, usize), String> {
        let l = line(&lines, i)?;
        let rest = rest_of(l.content()).ok_or(BUG)?;
        let (value, at) = value_of(rest);
        if value.is_empty() {
            return Err(format!(
                "the value of a key of API key `{name}` is not on its line; edit it by hand"
            ));
        }
        Ok((l, value, l.offset_of(rest) + at))
    };
    match op {
        Op::Rotate { new, old } => {
            let f = field("sha256")
                .ok_or_else(|| format!("cannot find `sha256:` of API key `{name}`"))?;
            let (l, value, from) = one_line(f)?;
            let pad = " ".repeat(l.indent());
            let added = format!("{pad}previous_sha256: {}{nl}", yaml_hash(old));
            let text = insert_lines(src, l.next, &added)?;
            splice(&text, from, from + value.len(), &yaml_hash(new))
        }
        Op::DropPrevious => {
            let f = field("previous_sha256")
                .ok_or_else(|| format!("cannot find `previous_sha256:` of API key `{name}`"))?;
            let (l, ..) = one_line(f)?;
            splice(src, l.start, l.next, "")
        }
    }
}

/// One `key: value` of a flow mapping: byte offsets in the line's text.
struct FlowItem {
    key: String,
    /// Where the item starts (its key).
    start: usize,
    /// Where its value ends.
    end: usize,
    /// Where its value starts.
    value: usize,
}

/// The items of a one-line flow mapping `{…}` (`text` starts with `{`
/// and ends with `}`); `None` when it is not one this can read.
fn flow_items(text: &str) -> Option<Vec<FlowItem>> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut item_start = 1;
    let mut colon: Option<usize> = None;
    let close = |from: usize, to: usize, colon: Option<usize>| -> Option<FlowItem> {
        let raw = text.get(from..to)?;
        let lead = raw.len() - raw.trim_start().len();
        let start = from + lead;
        let c = colon?;
        let key = text
            .get(start..c)?
            .trim()
            .trim_matches(|q| q == '"' || q == '\'');
        let v = text.get(c + 1..to)?;
        let value = c + 1 + (v.len() - v.trim_start().len());
        let end = c + 1 + v.trim_end().len();
        Some(FlowItem {
            key: key.to_string(),
            start,
            end,
            value,
        })
    };
    for (i, ch) in text.char_indices() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '"' | '\'' => quote = Some(ch),
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    if i + 1 != text.len() {
                        return None;
                    }
                    if text
                        .get(item_start..i)
                        .is_some_and(|s| !s.trim().is_empty())
                    {
                        items.push(close(item_start, i, colon)?);
                    }
                }
            }
            ',' if depth == 1 => {
                items.push(close(item_start, i, colon)?);
                item_start = i + 1;
                colon = None;
            }
            ':' if depth == 1 && colon.is_none() => colon = Some(i),
            '#' => return None,
            _ => {}
        }
    }
    (depth == 0 && quote.is_none()).then_some(items)
}

/// `op` on an entry written as a one-line flow mapping at byte `at`.
fn edit_flow(src: &str, at: usize, text: &str, op: &Op) -> std::result::Result<String, String> {
    let items = flow_items(text).ok_or("cannot read the entry's `{…}`; edit it by hand")?;
    let find = |key: &str| items.iter().position(|i| i.key == key);
    match op {
        Op::Rotate { new, old } => {
            let i = find("sha256").ok_or("cannot find `sha256:` in the entry")?;
            let item = items.get(i).ok_or(BUG)?;
            let with = format!("{}, previous_sha256: {}", yaml_hash(new), yaml_hash(old));
            splice(src, at + item.value, at + item.end, &with)
        }
        Op::DropPrevious => {
            let i = find("previous_sha256").ok_or("cannot find `previous_sha256:` in the entry")?;
            let item = items.get(i).ok_or(BUG)?;
            let (from, to) = match (
                i.checked_sub(1).and_then(|p| items.get(p)),
                items.get(i + 1),
            ) {
                (Some(prev), _) => (prev.end, item.end),
                (None, Some(next)) => (item.start, next.start),
                (None, None) => (item.start, item.end),
            };
            splice(src, at + from, at + to, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "\
# The policy.
version: 1
databases:
  db:
    dialect: postgres
    tables:
      orders: {columns: {id: integer, tenant_id: integer}}
groups:
  reporting:   # the dashboards
    data: {db: {public: {orders: {sandbox: {column: tenant_id, attribute: tenant}}}}}
";

    fn secret(n: u8) -> String {
        format!("sk_{}", format!("{n:02x}").repeat(32))
    }

    fn who(text: &str, secret: &str) -> Option<String> {
        let p = Policy::from_yaml(text, "p.yaml").unwrap();
        Principal::from_api_key(&p, secret)
            .ok()
            .map(|p| p.name().to_string())
    }

    #[test]
    fn secrets_are_long_random_and_distinct() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), SECRET_PREFIX.len() + 2 * SECRET_BYTES);
        assert!(a
            .strip_prefix("sk_")
            .unwrap()
            .bytes()
            .all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn adds_a_first_key_at_the_end_keeping_the_rest() {
        let attrs = [("tenant".to_string(), AttributeValue::text("7"))];
        let e = add(BASE, "p.yaml", "ci", "reporting", &attrs, &secret(1)).unwrap();
        let h = sha256_hex(&secret(1));
        assert_eq!(
            e.text,
            format!("{BASE}api_keys:\n  ci:\n    group: reporting\n    sha256: {h}\n    attributes: {{tenant: 7}}\n")
        );
        assert_eq!(who(&e.text, &secret(1)).as_deref(), Some("api-key:ci"));
        assert!(e.snippet.starts_with("api_keys:\n  ci:\n"));
    }

    #[test]
    fn adds_after_existing_keys_with_their_indentation() {
        let src = format!(
            "{BASE}api_keys:\n    old:\n        group: reporting   # kept\n        sha256: {}\n\n# trailing comment\n",
            sha256_hex(&secret(2))
        );
        let e = add(&src, "p.yaml", "new", "reporting", &[], &secret(3)).unwrap();
        let h = sha256_hex(&secret(3));
        let want = src.replace(
            "\n\n# trailing",
            &format!("\n    new:\n        group: reporting\n        sha256: {h}\n\n# trailing"),
        );
        assert_eq!(e.text, want);
        assert_eq!(who(&e.text, &secret(2)).as_deref(), Some("api-key:old"));
        assert_eq!(who(&e.text, &secret(3)).as_deref(), Some("api-key:new"));
    }

    #[test]
    fn adds_under_an_empty_flow_map_crlf_and_no_final_newline() {
        let src = format!("{BASE}api_keys: {{}}  # none yet").replace('\n', "\r\n");
        let e = add(&src, "p.yaml", "ci", "reporting", &[], &secret(1)).unwrap();
        assert!(e
            .text
            .contains("api_keys:  # none yet\r\n  ci:\r\n    group: reporting\r\n"));
        assert!(!e.text.replace("\r\n", "").contains('\n'));
        assert_eq!(who(&e.text, &secret(1)).as_deref(), Some("api-key:ci"));
    }

    #[test]
    fn refuses_what_it_should_and_says_why() {
        let e = add(BASE, "p.yaml", "ci", "reportng", &[], &secret(1)).unwrap_err();
        assert!(matches!(e, Error::Unknown { kind: "group", .. }), "{e}");
        let e = add(BASE, "p.yaml", "1ci", "reporting", &[], &secret(1)).unwrap_err();
        assert_eq!(e.code(), "SB005");
        let e = add(BASE, "p.yaml", "true", "reporting", &[], &secret(1)).unwrap_err();
        assert_eq!(e.code(), "SB005");
        let e = add(BASE, "p.yaml", "ci", "reporting", &[], "short").unwrap_err();
        assert!(e.to_string().contains("at least 32"), "{e}");
        let once = add(BASE, "p.yaml", "ci", "reporting", &[], &secret(1)).unwrap();
        let e = add(&once.text, "p.yaml", "ci", "reporting", &[], &secret(2)).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        let e = add(&once.text, "p.yaml", "ci2", "reporting", &[], &secret(1)).unwrap_err();
        assert!(e.to_string().contains("already API key `ci`"), "{e}");
        let flow = format!(
            "{BASE}api_keys: {{x: {{group: reporting, sha256: {}}}}}\n",
            sha256_hex(&secret(5))
        );
        let e = add(&flow, "p.yaml", "ci", "reporting", &[], &secret(1)).unwrap_err();
        assert!(e.to_string().contains("flow style"), "{e}");
        let declared = BASE.replace("version: 1\n", "version: 1\nattributes: [tenant]\n");
        let attrs = [("tenat".to_string(), AttributeValue::text("7"))];
        let e = add(&declared, "p.yaml", "ci", "reporting", &attrs, &secret(1)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Unknown {
                    kind: "attribute",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn rotates_and_finishes_block_entries() {
        let src = format!(
            "{BASE}api_keys:\n  ci:\n    group: reporting\n    sha256: {}  # from the vault\n    attributes: {{tenant: 7}}\n",
            sha256_hex(&secret(1))
        );
        let r = rotate(&src, "p.yaml", "ci", &secret(2)).unwrap();
        assert_eq!(
            r.text,
            format!(
                "{BASE}api_keys:\n  ci:\n    group: reporting\n    sha256: {}  # from the vault\n    previous_sha256: {}\n    attributes: {{tenant: 7}}\n",
                sha256_hex(&secret(2)),
                sha256_hex(&secret(1))
            )
        );
        assert_eq!(who(&r.text, &secret(1)).as_deref(), Some("api-key:ci"));
        assert_eq!(who(&r.text, &secret(2)).as_deref(), Some("api-key:ci"));
        let e = rotate(&r.text, "p.yaml", "ci", &secret(3)).unwrap_err();
        assert!(e.to_string().contains("in progress"), "{e}");
        let f = finish_rotation(&r.text, "p.yaml", "ci").unwrap();
        assert_eq!(who(&f.text, &secret(1)), None);
        assert_eq!(who(&f.text, &secret(2)).as_deref(), Some("api-key:ci"));
        assert_eq!(
            f.text,
            src.replace(&sha256_hex(&secret(1)), &sha256_hex(&secret(2)))
        );
        let e = finish_rotation(&f.text, "p.yaml", "ci").unwrap_err();
        assert!(e.to_string().contains("no rotation"), "{e}");
        let e = rotate(&f.text, "p.yaml", "cj", &secret(3)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Unknown {
                    kind: "API key",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn rotates_and_finishes_flow_entries() {
        let src = format!(
            "{BASE}api_keys:\n  ci: {{group: reporting, \"sha256\": {}, attributes: {{tenant: [1, 2]}}}} # ci\n  other: {{sha256: {}, group: reporting}}\n",
            sha256_hex(&secret(1)),
            sha256_hex(&secret(9)),
        );
        let r = rotate(&src, "p.yaml", "other", &secret(2)).unwrap();
        assert!(r.text.contains(&format!(
            "other: {{sha256: {}, previous_sha256: {}, group: reporting}}\n",
            sha256_hex(&secret(2)),
            sha256_hex(&secret(9))
        )));
        assert_eq!(who(&r.text, &secret(9)).as_deref(), Some("api-key:other"));
        let f = finish_rotation(&r.text, "p.yaml", "other").unwrap();
        assert_eq!(
            f.text,
            src.replace(&sha256_hex(&secret(9)), &sha256_hex(&secret(2)))
        );
        let r = rotate(&src, "p.yaml", "ci", &secret(3)).unwrap();
        let f = finish_rotation(&r.text, "p.yaml", "ci").unwrap();
        assert_eq!(
            f.text,
            src.replace(&sha256_hex(&secret(1)), &sha256_hex(&secret(3)))
        );
        // `previous_sha256` first in the braces.
        let first = format!(
            "{BASE}api_keys:\n  ci: {{previous_sha256: {}, sha256: {}, group: reporting}}\n",
            sha256_hex(&secret(1)),
            sha256_hex(&secret(2))
        );
        let f = finish_rotation(&first, "p.yaml", "ci").unwrap();
        assert!(f.text.ends_with(&format!(
            "  ci: {{sha256: {}, group: reporting}}\n",
            sha256_hex(&secret(2))
        )));
    }

    #[test]
    fn a_layout_the_editor_misreads_is_refused_by_the_proof() {
        // The hash as a folded block scalar: the editor would replace `>-`
        // and orphan the next line; loading the result shows it.
        let src = format!(
            "{BASE}api_keys:\n  ci:\n    group: reporting\n    sha256: >-\n      {}\n",
            sha256_hex(&secret(1))
        );
        assert_eq!(who(&src, &secret(1)).as_deref(), Some("api-key:ci"));
        let e = rotate(&src, "p.yaml", "ci", &secret(2)).unwrap_err();
        assert_eq!(e.code(), "SB005");
        assert!(e.to_string().contains("left as it was"), "{e}");
    }

    #[test]
    fn all_digit_hashes_are_quoted() {
        assert_eq!(yaml_hash("1234e5"), "\"1234e5\"");
        assert_eq!(yaml_hash("12ab"), "12ab");
        assert_eq!(yaml_scalar(&Value::String("7".into())), "\"7\"");
        assert_eq!(yaml_scalar(&Value::String("no".into())), "\"no\"");
        assert_eq!(yaml_scalar(&Value::String("eu-west".into())), "eu-west");
    }

    #[test]
    fn block_keys() {
        assert_eq!(
            block_key("a: b").map(|(k, r)| (k, r.to_string())),
            Some(("a".into(), " b".into()))
        );
        assert_eq!(block_key("\"a b\": c").map(|(k, _)| k), Some("a b".into()));
        assert_eq!(block_key("a:b"), None);
        assert_eq!(block_key("- a: b"), None);
        assert_eq!(
            block_key("url: http://x").map(|(k, _)| k),
            Some("url".into())
        );
    }
}
