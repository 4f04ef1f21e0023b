//! The nvlist value model: an ordered list of named, typed values, as libnv keeps it.
//!
//! Order is preserved (libnv appends, and packs in insertion order), so a list built here
//! packs byte for byte like the same list built with `nvlist_add_*`.

use std::fmt;

use zeroize::Zeroize;

use crate::wire::{self, ty};

/// Raw bytes of a BINARY pair. Zeroised on drop because key material travels in them.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Blob(Vec<u8>);

impl Blob {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Blob(bytes)
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Takes the bytes out, leaving an empty blob (so nothing is left to zeroise).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::ops::Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Blob(v)
    }
}

impl From<&[u8]> for Blob {
    fn from(v: &[u8]) -> Self {
        Blob(v.to_vec())
    }
}

// Never print the bytes: a BINARY pair may hold a data-channel key.
impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// One typed value of an nvlist pair.
#[derive(Clone, PartialEq, Debug)]
pub enum Value {
    /// NULL: presence only.
    Null,
    /// BOOL.
    Bool(bool),
    /// NUMBER: u64 (libnv has no signed or floating type).
    Number(u64),
    /// STRING: no interior NUL; UTF-8 here.
    String(String),
    /// NVLIST: a nested list.
    Nvlist(Nvlist),
    /// DESCRIPTOR: index into the descriptors sent beside the message.
    Descriptor(i64),
    /// BINARY: non-empty raw bytes.
    Binary(Blob),
    /// BOOL_ARRAY (non-empty).
    BoolArray(Vec<bool>),
    /// NUMBER_ARRAY (non-empty).
    NumberArray(Vec<u64>),
    /// STRING_ARRAY (non-empty).
    StringArray(Vec<String>),
    /// NVLIST_ARRAY (non-empty).
    NvlistArray(Vec<Nvlist>),
    /// DESCRIPTOR_ARRAY (non-empty).
    DescriptorArray(Vec<i64>),
}

impl Value {
    /// The libnv type code.
    pub fn type_code(&self) -> u8 {
        match self {
            Value::Null => ty::NULL,
            Value::Bool(_) => ty::BOOL,
            Value::Number(_) => ty::NUMBER,
            Value::String(_) => ty::STRING,
            Value::Nvlist(_) => ty::NVLIST,
            Value::Descriptor(_) => ty::DESCRIPTOR,
            Value::Binary(_) => ty::BINARY,
            Value::BoolArray(_) => ty::BOOL_ARRAY,
            Value::NumberArray(_) => ty::NUMBER_ARRAY,
            Value::StringArray(_) => ty::STRING_ARRAY,
            Value::NvlistArray(_) => ty::NVLIST_ARRAY,
            Value::DescriptorArray(_) => ty::DESCRIPTOR_ARRAY,
        }
    }

    /// The type's name as libnv's `nvpair_type_string` spells it, lower-case.
    pub fn type_name(&self) -> &'static str {
        type_name(self.type_code())
    }
}

/// Name of a type code, for error messages.
pub fn type_name(code: u8) -> &'static str {
    match code {
        ty::NULL => "null",
        ty::BOOL => "bool",
        ty::NUMBER => "number",
        ty::STRING => "string",
        ty::NVLIST => "nvlist",
        ty::DESCRIPTOR => "descriptor",
        ty::BINARY => "binary",
        ty::BOOL_ARRAY => "bool array",
        ty::NUMBER_ARRAY => "number array",
        ty::STRING_ARRAY => "string array",
        ty::NVLIST_ARRAY => "nvlist array",
        ty::DESCRIPTOR_ARRAY => "descriptor array",
        ty::NVLIST_UP => "nvlist-up marker",
        ty::NVLIST_ARRAY_NEXT => "nvlist-array-next marker",
        _ => "unknown type",
    }
}

/// An ordered list of named values with libnv's public flags.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Nvlist {
    flags: u8,
    pairs: Vec<(String, Value)>,
}

impl Nvlist {
    /// An empty list with no flags (what `nvlist_create(0)` gives).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with public flags ([`wire::FLAG_IGNORE_CASE`], [`wire::FLAG_NO_UNIQUE`]).
    /// Private bits are dropped.
    pub fn with_flags(flags: u8) -> Self {
        Nvlist {
            flags: flags & wire::FLAG_PUBLIC_MASK,
            pairs: Vec::new(),
        }
    }

    /// The public flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Appends a pair. Uniqueness is checked when the list is packed.
    pub fn push(&mut self, name: impl Into<String>, value: Value) {
        self.pairs.push((name.into(), value));
    }

    /// Builder form of [`Nvlist::push`].
    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.push(name, value);
        self
    }

    /// The first value with this name (case-insensitive if the list has IGNORE_CASE).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.pairs
            .iter()
            .find(|(n, _)| self.name_eq(n, name))
            .map(|(_, v)| v)
    }

    /// Removes and returns the first value with this name.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let pos = self.pairs.iter().position(|(n, _)| self.name_eq(n, name))?;
        Some(self.pairs.remove(pos).1)
    }

    /// Whether a pair with this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn name_eq(&self, a: &str, b: &str) -> bool {
        if self.flags & wire::FLAG_IGNORE_CASE != 0 {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Number of pairs (not counting nested ones).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the list has no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Consumes the list into its pairs.
    pub fn into_pairs(self) -> Vec<(String, Value)> {
        self.pairs
    }
}
