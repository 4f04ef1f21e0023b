//! Errors of the typed mapping between Rust structs and nvlists, naming the offending key.

use std::fmt;

/// What went wrong mapping a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapErrorKind {
    /// A required key is absent.
    MissingKey,
    /// The key holds another type than the struct expects.
    WrongType {
        /// What the struct expects.
        expected: String,
        /// What the nvlist holds.
        found: String,
    },
    /// The value has the right type but is not acceptable (range, length, unknown name...).
    Invalid(String),
    /// The Rust type has no nvlist form (floats, nested arrays, mixed arrays...).
    Unsupported(&'static str),
}

/// A mapping failure and the dotted path of the key it concerns (`args.remote.port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapError {
    /// What went wrong.
    pub kind: MapErrorKind,
    // Path segments innermost first; pushed as the error travels outwards.
    rev_path: Vec<String>,
}

impl MapError {
    /// An error with no key yet.
    pub fn new(kind: MapErrorKind) -> Self {
        MapError {
            kind,
            rev_path: Vec::new(),
        }
    }

    /// An invalid-value error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(MapErrorKind::Invalid(msg.into()))
    }

    /// Adds an enclosing key or index (`name` or `[3]`) to the path.
    pub fn within(mut self, segment: impl Into<String>) -> Self {
        self.rev_path.push(segment.into());
        self
    }

    /// The dotted path of the offending key; empty for the root.
    pub fn key(&self) -> String {
        let mut s = String::new();
        for seg in self.rev_path.iter().rev() {
            if !s.is_empty() && !seg.starts_with('[') {
                s.push('.');
            }
            s.push_str(seg);
        }
        s
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.key();
        let key = if key.is_empty() { "(root)" } else { &key };
        match &self.kind {
            MapErrorKind::MissingKey => write!(f, "missing key '{key}'"),
            MapErrorKind::WrongType { expected, found } => {
                write!(f, "key '{key}': expected {expected}, found {found}")
            }
            MapErrorKind::Invalid(m) => write!(f, "key '{key}': {m}"),
            MapErrorKind::Unsupported(m) => write!(f, "key '{key}': {m}"),
        }
    }
}

impl std::error::Error for MapError {}

impl serde::ser::Error for MapError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        MapError::invalid(msg.to_string())
    }
}

impl serde::de::Error for MapError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        MapError::invalid(msg.to_string())
    }

    fn invalid_type(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Self {
        MapError::new(MapErrorKind::WrongType {
            expected: exp.to_string(),
            found: unexp.to_string(),
        })
    }

    fn missing_field(field: &'static str) -> Self {
        MapError::new(MapErrorKind::MissingKey).within(field)
    }
}
