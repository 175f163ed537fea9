//! [`ManifestError`], and serde's errors reworded into it.
//!
//! Every error names the field by its path in the manifest ([`FieldPath`]): dotted for
//! object keys, bracketed for array indexes and for keys that are not plain words
//! (`services.api.instances.min`, `services.api.bindings[0]`,
//! `services.api.files["conf/app.toml"]`); then it says what was expected and what was
//! found, in the manifest's words ("a whole number", "an object"), not Rust's ("u32",
//! "struct ServiceSpec").
//!
//! [`step_over`] takes the value an error is about out of the manifest's JSON, so that
//! `parse_all` can read on and find the next problem.

use std::fmt;

use serde_path_to_error::Segment;

/// Why a manifest was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {reason}")]
    Read { path: String, reason: String },
    /// The text is not JSON (or has text after the closing brace). `path` is where in
    /// the manifest the parser was, empty at the top level.
    #[error("invalid JSON at line {line}, column {column}{}: {message}", inside(.path))]
    Syntax {
        line: usize,
        column: usize,
        path: String,
        message: String,
    },
    /// A key the model does not have (often a typo); `expected` lists the keys allowed there.
    #[error("{path}: unknown field; expected {}", one_of(.expected))]
    UnknownField { path: String, expected: Vec<String> },
    /// A required key is absent.
    #[error("{path}: required field is missing")]
    MissingField { path: String },
    /// The same key twice in one object.
    #[error("{path}: appears more than once; write each key once")]
    DuplicateKey { path: String },
    /// A value of the wrong type or out of bounds.
    #[error("{path}: expected {expected}, found {found}")]
    Invalid {
        path: String,
        expected: String,
        found: String,
    },
    /// Any other error serde reported, in its own words.
    #[error("{path}: {message}")]
    Serde { path: String, message: String },
    /// Services that bind to each other in a circle, first service repeated last
    /// (`["web", "api", "web"]`).
    #[error(
        "{}: binding cycle {}; a service starts only after the services it binds to are ready, \
         so none of these would ever start; remove one of these bindings",
        bindings_path(.cycle),
        .cycle.join(" -> ")
    )]
    BindingCycle { cycle: Vec<String> },
}

fn inside(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" (inside {path})")
    }
}

fn one_of(names: &[String]) -> String {
    match names {
        [] => "no fields here".to_string(),
        [one] => one.clone(),
        _ => format!("one of {}", names.join(", ")),
    }
}

fn bindings_path(cycle: &[String]) -> FieldPath {
    let first = cycle.first().map(String::as_str).unwrap_or_default();
    FieldPath::root().key("services").key(first).key("bindings")
}

impl ManifestError {
    /// Rewords a serde error into one that names the field path, what was expected and
    /// what was found.
    pub fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> ManifestError {
        let path = FieldPath::from_serde(err.path());
        let inner = err.inner();
        match inner.classify() {
            serde_json::error::Category::Data => reword(path, strip_position(&inner.to_string())),
            _ => syntax(inner, path.0),
        }
    }

    /// A JSON error with no path (for example text after the manifest's closing brace).
    pub(crate) fn from_json(err: serde_json::Error) -> ManifestError {
        match err.classify() {
            serde_json::error::Category::Data => reword(FieldPath::root(), strip_position(&err.to_string())),
            _ => syntax(&err, String::new()),
        }
    }

    /// The field path this error is about, when it is about one.
    pub fn path(&self) -> Option<String> {
        match self {
            ManifestError::Read { .. } => None,
            ManifestError::Syntax { path, .. } => (!path.is_empty()).then(|| path.clone()),
            ManifestError::UnknownField { path, .. }
            | ManifestError::MissingField { path }
            | ManifestError::DuplicateKey { path }
            | ManifestError::Invalid { path, .. }
            | ManifestError::Serde { path, .. } => Some(path.clone()),
            ManifestError::BindingCycle { cycle } => Some(bindings_path(cycle).to_string()),
        }
    }
}

fn syntax(err: &serde_json::Error, path: String) -> ManifestError {
    let message = strip_position(&err.to_string()).to_string();
    let message = if message.starts_with("EOF while parsing") {
        format!("{message}; is the file truncated?")
    } else if message == "trailing comma" {
        "trailing comma; JSON allows no comma after the last item".to_string()
    } else if message == "trailing characters" {
        "text after the end of the manifest".to_string()
    } else {
        message
    };
    ManifestError::Syntax {
        line: err.line(),
        column: err.column(),
        path,
        message,
    }
}

/// serde_json appends " at line L column C" to its messages; the path says it better.
fn strip_position(message: &str) -> &str {
    if let Some(at) = message.rfind(" at line ") {
        let rest = &message[at + " at line ".len()..];
        let mut words = rest.split(' ');
        let is_position = matches!(
            (words.next(), words.next(), words.next(), words.next()),
            (Some(l), Some("column"), Some(c), None)
                if l.chars().all(|ch| ch.is_ascii_digit()) && c.chars().all(|ch| ch.is_ascii_digit())
        );
        if is_position {
            return &message[..at];
        }
    }
    message
}

/// Turns serde's wording ("invalid type: string \"two\", expected u32") into ours.
fn reword(path: FieldPath, message: &str) -> ManifestError {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, allowed)) = rest.split_once('`') {
            let path = path.with_last_key(field);
            let expected = allowed.strip_prefix(", expected ").map(backticked).unwrap_or_default();
            return ManifestError::UnknownField {
                path: path.into(),
                expected,
            };
        }
    }
    if let Some(field) = backticked_after(message, "missing field ") {
        return ManifestError::MissingField {
            path: path.key(&field).into(),
        };
    }
    if let Some(key) =
        backticked_after(message, "duplicate field ").or_else(|| backticked_after(message, "duplicate key "))
    {
        return ManifestError::DuplicateKey {
            path: path.key(&key).into(),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((variant, allowed)) = rest.split_once('`') {
            let allowed = allowed.strip_prefix(", expected ").map(backticked).unwrap_or_default();
            return ManifestError::Invalid {
                path: path.into(),
                expected: one_of(&allowed),
                found: quoted(variant),
            };
        }
    }
    for (prefix, is_value) in [("invalid type: ", false), ("invalid value: ", true)] {
        if let Some((found, expected)) = message.strip_prefix(prefix).and_then(|r| r.rsplit_once(", expected ")) {
            return ManifestError::Invalid {
                path: path.into(),
                expected: expected_words(expected, is_value),
                found: found_words(found),
            };
        }
    }
    if let Some((length, expected)) = message
        .strip_prefix("invalid length ")
        .and_then(|r| r.split_once(", expected "))
    {
        return ManifestError::Invalid {
            path: path.into(),
            expected: expected_words(expected, false),
            found: format!("{length} items"),
        };
    }
    ManifestError::Serde {
        path: path.into(),
        message: message.to_string(),
    }
}

/// "`a`, `b` or `c`" -> [a, b, c].
fn backticked(list: &str) -> Vec<String> {
    list.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    let (name, tail) = rest.split_once('`')?;
    tail.is_empty().then(|| name.to_string())
}

fn expected_words(expected: &str, out_of_range: bool) -> String {
    let max = match expected {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        "u64" | "usize" => Some(u64::MAX),
        _ => None,
    };
    if let Some(max) = max {
        return if out_of_range && max == u64::MAX {
            // A negative number (no setting goes near 2^64): the field's own range, when
            // it has one, is checked once the number is read.
            "a whole number, 0 or more".to_string()
        } else if out_of_range {
            format!("a whole number from 0 to {max}")
        } else {
            "a whole number".to_string()
        };
    }
    match expected {
        "a sequence" => "an array".to_string(),
        "a map" => "an object".to_string(),
        "a boolean" => "true or false".to_string(),
        e if e.starts_with("struct ") => "an object".to_string(),
        e => e.to_string(),
    }
}

fn found_words(found: &str) -> String {
    if found.starts_with("string ") {
        return format!("a {found}");
    }
    for prefix in ["integer `", "floating point `"] {
        if let Some(number) = found.strip_prefix(prefix).and_then(|r| r.strip_suffix('`')) {
            return format!("the number {number}");
        }
    }
    match found {
        "boolean `true`" => "true".to_string(),
        "boolean `false`" => "false".to_string(),
        "unit value" | "null" => "null".to_string(),
        "map" => "an object".to_string(),
        "sequence" => "an array".to_string(),
        other => other.to_string(),
    }
}

/// A string as it would be written in the manifest, or "an empty string".
pub(crate) fn quoted(s: &str) -> String {
    if s.is_empty() {
        "an empty string".to_string()
    } else {
        serde_json::Value::from(s).to_string()
    }
}

/// A field path: `services.api.bindings[0]`, `services.api.env["A B"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(String);

impl FieldPath {
    pub(crate) fn root() -> FieldPath {
        FieldPath(String::new())
    }

    pub(crate) fn key(&self, key: &str) -> FieldPath {
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let mut path = self.0.clone();
        if plain {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        } else {
            path.push('[');
            path.push_str(&serde_json::Value::from(key).to_string());
            path.push(']');
        }
        FieldPath(path)
    }

    pub(crate) fn index(&self, index: usize) -> FieldPath {
        FieldPath(format!("{}[{index}]", self.0))
    }

    fn from_serde(path: &serde_path_to_error::Path) -> FieldPath {
        let mut out = FieldPath::root();
        for segment in path.iter() {
            out = match segment {
                Segment::Seq { index } => out.index(*index),
                Segment::Map { key } => out.key(key),
                Segment::Enum { variant } => out.key(variant),
                // Where a key was about to be read; the path up to here says enough.
                Segment::Unknown => out,
            };
        }
        out
    }

    /// This path ending in `key` (serde may or may not have recorded a rejected key).
    fn with_last_key(self, key: &str) -> FieldPath {
        let last = FieldPath::root().key(key).0;
        let ends_with_key = if last.starts_with('[') {
            self.0.ends_with(&last)
        } else {
            self.0 == last || self.0.ends_with(&format!(".{last}"))
        };
        if ends_with_key {
            self
        } else {
            self.key(key)
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("manifest")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl From<FieldPath> for String {
    fn from(path: FieldPath) -> String {
        path.to_string()
    }
}

/// One step of a field path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The steps of a path as [`FieldPath`] writes it (`a.b[0]["x y"]`); None for text it
/// would not write, or the root.
fn steps(path: &str) -> Option<Vec<Step>> {
    let is_plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            if inner.starts_with('"') {
                let mut strings = serde_json::Deserializer::from_str(inner).into_iter::<String>();
                let key = strings.next()?.ok()?;
                let end = strings.byte_offset();
                out.push(Step::Key(key));
                rest = inner[end..].strip_prefix(']')?;
            } else {
                let (digits, tail) = inner.split_once(']')?;
                out.push(Step::Index(digits.parse().ok()?));
                rest = tail;
            }
        } else {
            let body = if out.is_empty() { rest } else { rest.strip_prefix('.')? };
            let end = body.find(|c: char| !is_plain(c)).unwrap_or(body.len());
            if end == 0 {
                return None;
            }
            out.push(Step::Key(body[..end].to_string()));
            rest = &body[end..];
        }
    }
    (!out.is_empty()).then_some(out)
}

fn path_of(steps: &[Step]) -> FieldPath {
    steps.iter().fold(FieldPath::root(), |path, step| match step {
        Step::Key(key) => path.key(key),
        Step::Index(i) => path.index(*i),
    })
}

/// What [`step_over`] took out of the manifest.
#[derive(Debug)]
pub(crate) struct SteppedOver {
    /// The path of the value taken out.
    pub removed: String,
    /// Paths whose checks could now judge defaults rather than the text.
    pub unchecked: Vec<String>,
}

/// Takes out of `manifest` (its JSON) the value `problem` is about, so that reading it
/// again goes past this problem: an unknown key, a value of the wrong type (a wrong item
/// of an array takes the whole array with it: removing the item alone would renumber
/// the ones after it). None for a problem that cannot be stepped over (a syntax error,
/// a missing field, a path not found in the JSON).
pub(crate) fn step_over(problem: &ManifestError, manifest: &mut serde_json::Value) -> Option<SteppedOver> {
    let (path, changes_defaults) = match problem {
        ManifestError::UnknownField { path, .. } => (path, false),
        ManifestError::Invalid { path, .. } | ManifestError::Serde { path, .. } => (path, true),
        // The JSON holds one of the two already: reading it again finds the next problem.
        ManifestError::DuplicateKey { path } => {
            return Some(SteppedOver {
                removed: path.clone(),
                unchecked: Vec::new(),
            })
        }
        _ => return None,
    };
    let mut steps = steps(path)?;
    let whole_array = changes_defaults && matches!(steps.last(), Some(Step::Index(_)));
    while changes_defaults && matches!(steps.last(), Some(Step::Index(_))) {
        steps.pop();
    }
    let (last, parent) = steps.split_last()?;
    let Step::Key(key) = last else {
        return None;
    };
    let mut object = &mut *manifest;
    for step in parent {
        object = match step {
            Step::Key(k) => object.get_mut(k.as_str())?,
            Step::Index(i) => object.get_mut(*i)?,
        };
    }
    object.as_object_mut()?.remove(key.as_str())?;
    let removed = path_of(&steps).to_string();
    let unchecked = if !changes_defaults {
        Vec::new()
    } else if whole_array || parent.is_empty() {
        vec![removed.clone()]
    } else {
        // An object's fields are checked against each other (min against max): the
        // default that replaced a wrong value could be blamed on its neighbours.
        vec![path_of(parent).to_string()]
    };
    Some(SteppedOver { removed, unchecked })
}
