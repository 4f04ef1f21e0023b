//! Packing and unpacking nvlists in libnv's format (`nvlist_pack` / `nvlist_unpack`).
//!
//! Layout (all headers packed, multi-byte fields in the sender's byte order):
//!
//! ```text
//! list header (19): magic 0x6c | version 0 | flags | descriptors u64 | size u64
//! pair header (19): type u8 | namesize u16 | datasize u64 | nitems u64, then the name + NUL
//! ```
//!
//! A nested NVLIST pair is followed by the child's header and pairs and an NVLIST_UP marker;
//! an NVLIST_ARRAY pair by each element's header and pairs, each closed by NVLIST_ARRAY_NEXT.
//! Markers are pair headers with an empty name and no data.
//!
//! Three fields are computed the way libnv computes them, which this encoder reproduces
//! exactly (checked against libnv's own output in the tests):
//! - a header's `size` is the number of bytes after it to the end of the *whole* buffer;
//! - a header's `descriptors` counts the descriptors after it to the end of the buffer;
//! - an NVLIST pair's `datasize` is `nvlist_size()` of the child, and because libnv's
//!   size walk does not stop at the child's end, it is 19 plus the bytes of every pair after
//!   the NVLIST pair in the buffer (19 alone for an empty child), not counting the
//!   end markers and element headers that enclosing lists opened earlier.
//!
//! The decoder is strict where libnv is merely lenient by accident (markers must be bare,
//! nested lists must be closed, one byte order per buffer) and bounds everything an
//! untrusted sender controls: total size, depth, name length, pair and array-item counts.

use std::collections::HashSet;
use std::fmt;

use crate::nvlist::{Blob, Nvlist, Value, type_name};
use crate::wire::{self, ty};

/// Bounds applied while decoding untrusted bytes.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest packed message accepted, in bytes.
    pub max_size: usize,
    /// Deepest nesting accepted (the root list is depth 0).
    pub max_depth: usize,
    /// Longest name accepted, terminating NUL included (libnv's `NV_NAME_MAX` is 2048).
    pub max_name_len: usize,
    /// Most pairs accepted in the whole message, nested ones included.
    pub max_pairs: usize,
    /// Most items accepted in one array.
    pub max_array_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 1 << 20,
            max_depth: 16,
            max_name_len: wire::NV_NAME_MAX,
            max_pairs: 1 << 18,
            max_array_items: 1 << 16,
        }
    }
}

/// Byte order of a packed buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// Little-endian (x86, arm64 in practice).
    Little,
    /// Big-endian; the headers carry `NV_FLAG_BIG_ENDIAN`.
    Big,
}

impl ByteOrder {
    /// The host's byte order, which [`encode`] uses as libnv does.
    pub const fn native() -> Self {
        if cfg!(target_endian = "big") {
            ByteOrder::Big
        } else {
            ByteOrder::Little
        }
    }
}

/// What was wrong with a packed nvlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The buffer ended before a header or value did.
    Truncated {
        /// Bytes needed from the offset.
        need: u64,
        /// Bytes left.
        have: usize,
    },
    /// The message is larger than [`Limits::max_size`].
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A list header's magic byte is not 0x6c.
    BadMagic(u8),
    /// A list header's version is not 0.
    BadVersion(u8),
    /// A list header carries unknown flag bits.
    BadFlags(u8),
    /// A nested header's byte order differs from the root's.
    MixedByteOrder,
    /// A header's `size` is not the number of bytes after it.
    SizeMismatch {
        /// What the header says.
        declared: u64,
        /// What is actually there.
        actual: usize,
    },
    /// A header announces more descriptors than came with the message.
    TooManyDescriptors {
        /// What the header says.
        declared: u64,
        /// Descriptors available.
        available: usize,
    },
    /// A pair's type code is not a libnv type.
    BadType(u8),
    /// A name is empty on the wire, too long, lacks its NUL, has an interior NUL or is
    /// not UTF-8.
    BadName(&'static str),
    /// A pair's size fields or bytes do not fit its type.
    BadData(&'static str),
    /// A STRING value is not UTF-8.
    InvalidUtf8,
    /// An end marker where none belongs, or a marker with a name or data.
    UnexpectedMarker(u8),
    /// The buffer ended inside a nested list.
    Unterminated,
    /// Nesting deeper than [`Limits::max_depth`].
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// More pairs than [`Limits::max_pairs`].
    TooManyPairs {
        /// The limit.
        max: usize,
    },
    /// An array with more items than [`Limits::max_array_items`].
    TooManyItems {
        /// Items announced.
        nitems: u64,
        /// The limit.
        max: usize,
    },
    /// The same name twice in a list without NO_UNIQUE.
    DuplicateKey,
    /// A descriptor index that is negative or beyond the descriptors received.
    DescriptorOutOfRange(i64),
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeErrorKind::*;
        match self {
            Truncated { need, have } => write!(f, "truncated: need {need} bytes, have {have}"),
            TooLarge { size, max } => write!(f, "message of {size} bytes exceeds {max}"),
            BadMagic(m) => write!(f, "bad header magic 0x{m:02x} (want 0x6c)"),
            BadVersion(v) => write!(f, "unsupported header version {v}"),
            BadFlags(fl) => write!(f, "unknown header flags 0x{fl:02x}"),
            MixedByteOrder => write!(f, "nested header byte order differs from the root's"),
            SizeMismatch { declared, actual } => write!(
                f,
                "header size {declared} does not match the {actual} bytes that follow"
            ),
            TooManyDescriptors {
                declared,
                available,
            } => write!(
                f,
                "header announces {declared} descriptors, {available} received"
            ),
            BadType(t) => write!(f, "unknown pair type {t}"),
            BadName(why) => write!(f, "bad pair name: {why}"),
            BadData(why) => write!(f, "bad value: {why}"),
            InvalidUtf8 => write!(f, "string is not UTF-8"),
            UnexpectedMarker(t) => write!(f, "unexpected {}", type_name(*t)),
            Unterminated => write!(f, "message ends inside a nested list"),
            TooDeep { max } => write!(f, "nested deeper than {max} levels"),
            TooManyPairs { max } => write!(f, "more than {max} pairs"),
            TooManyItems { nitems, max } => {
                write!(f, "array of {nitems} items exceeds {max}")
            }
            DuplicateKey => write!(f, "duplicate key"),
            DescriptorOutOfRange(i) => write!(f, "descriptor index {i} out of range"),
        }
    }
}

/// A decode failure: what, where in the buffer, and under which key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("nvlist: {kind} (key '{}', byte {offset})", display_key(.key))]
pub struct DecodeError {
    /// What was wrong.
    pub kind: DecodeErrorKind,
    /// Dotted path of the offending key (`args.remote.port`, `peers[2].bytes`); empty for
    /// the root list.
    pub key: String,
    /// Byte offset where the problem was found.
    pub offset: usize,
}

fn display_key(k: &str) -> &str {
    if k.is_empty() { "(root)" } else { k }
}

/// What cannot be packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeErrorKind {
    /// Name (with NUL) longer than libnv's 2048.
    NameTooLong(usize),
    /// Name with an interior NUL.
    NameHasNul,
    /// String with an interior NUL.
    StringHasNul,
    /// libnv cannot carry an empty BINARY.
    EmptyBinary,
    /// libnv cannot carry an empty array.
    EmptyArray,
    /// The same name twice in a list without NO_UNIQUE.
    DuplicateKey,
}

impl fmt::Display for EncodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeErrorKind::NameTooLong(n) => {
                write!(f, "name of {n} bytes exceeds {}", wire::NV_NAME_MAX)
            }
            EncodeErrorKind::NameHasNul => write!(f, "name contains NUL"),
            EncodeErrorKind::StringHasNul => write!(f, "string contains NUL"),
            EncodeErrorKind::EmptyBinary => write!(f, "empty binary value"),
            EncodeErrorKind::EmptyArray => write!(f, "empty array"),
            EncodeErrorKind::DuplicateKey => write!(f, "duplicate key"),
        }
    }
}

/// A pack failure naming the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("nvlist: cannot pack key '{}': {kind}", display_key(.key))]
pub struct EncodeError {
    /// What was wrong.
    pub kind: EncodeErrorKind,
    /// Dotted path of the key.
    pub key: String,
}

/// Finds a repeated name without allocating for the usual small lists.
struct DupCheck<'a> {
    ignore_case: bool,
    names: Vec<&'a str>,
    set: Option<HashSet<std::borrow::Cow<'a, str>>>,
}

impl<'a> DupCheck<'a> {
    fn new(ignore_case: bool) -> Self {
        DupCheck {
            ignore_case,
            names: Vec::new(),
            set: None,
        }
    }

    /// Records `name`; false if it was already there.
    fn insert(&mut self, name: &'a str) -> bool {
        const LINEAR: usize = 16;
        if let Some(set) = &mut self.set {
            let k = if self.ignore_case {
                std::borrow::Cow::Owned(name.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(name)
            };
            return set.insert(k);
        }
        let dup = if self.ignore_case {
            self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
        } else {
            self.names.contains(&name)
        };
        if dup {
            return false;
        }
        self.names.push(name);
        if self.names.len() > LINEAR {
            let ic = self.ignore_case;
            self.set = Some(
                self.names
                    .drain(..)
                    .map(|n| {
                        if ic {
                            std::borrow::Cow::Owned(n.to_ascii_lowercase())
                        } else {
                            std::borrow::Cow::Borrowed(n)
                        }
                    })
                    .collect(),
            );
        }
        true
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Packs a list in the host's byte order, as `nvlist_pack` does.
pub fn encode(nvl: &Nvlist) -> Result<Vec<u8>, EncodeError> {
    encode_with_order(nvl, ByteOrder::native())
}

/// Packs a list in the given byte order (the other order is for tests and tools).
pub fn encode_with_order(nvl: &Nvlist, order: ByteOrder) -> Result<Vec<u8>, EncodeError> {
    let mut path = Vec::new();
    let total_desc = validate_list(nvl, &mut path)?;
    let mut enc = Encoder {
        out: Vec::with_capacity(256),
        order,
        headers: Vec::new(),
        nested: Vec::new(),
        desc_seen: 0,
    };
    enc.list(nvl, 0);
    let total = enc.out.len();
    // Patch the fields that depend on what follows them.
    for (off, desc_before) in std::mem::take(&mut enc.headers) {
        let size = (total - off - wire::LIST_HEADER_LEN) as u64;
        let desc = (total_desc - desc_before) as u64;
        enc.put_u64_at(off + 3, desc);
        enc.put_u64_at(off + 11, size);
    }
    for (field, child_hdr, pending) in std::mem::take(&mut enc.nested) {
        let datasize = (total - child_hdr - pending) as u64;
        enc.put_u64_at(field, datasize);
    }
    Ok(enc.out)
}

/// Checks what libnv would refuse to build and counts descriptors.
fn validate_list<'a>(nvl: &'a Nvlist, path: &mut Vec<Seg<'a>>) -> Result<usize, EncodeError> {
    let err = |kind, path: &Vec<Seg<'_>>, name: &str| EncodeError {
        kind,
        key: path_string(path, Some(name)),
    };
    let mut descs = 0usize;
    let unique = nvl.flags() & wire::FLAG_NO_UNIQUE == 0;
    let mut seen = DupCheck::new(nvl.flags() & wire::FLAG_IGNORE_CASE != 0);
    for (name, value) in nvl.iter() {
        if name.len() + 1 > wire::NV_NAME_MAX {
            return Err(err(
                EncodeErrorKind::NameTooLong(name.len() + 1),
                path,
                name,
            ));
        }
        if name.as_bytes().contains(&0) {
            return Err(err(EncodeErrorKind::NameHasNul, path, name));
        }
        if unique && !seen.insert(name) {
            return Err(err(EncodeErrorKind::DuplicateKey, path, name));
        }
        match value {
            Value::String(s) if s.as_bytes().contains(&0) => {
                return Err(err(EncodeErrorKind::StringHasNul, path, name));
            }
            Value::StringArray(a) if a.iter().any(|s| s.as_bytes().contains(&0)) => {
                return Err(err(EncodeErrorKind::StringHasNul, path, name));
            }
            Value::Binary(b) if b.is_empty() => {
                return Err(err(EncodeErrorKind::EmptyBinary, path, name));
            }
            Value::BoolArray(a) if a.is_empty() => {
                return Err(err(EncodeErrorKind::EmptyArray, path, name));
            }
            Value::NumberArray(a) if a.is_empty() => {
                return Err(err(EncodeErrorKind::EmptyArray, path, name));
            }
            Value::StringArray(a) if a.is_empty() => {
                return Err(err(EncodeErrorKind::EmptyArray, path, name));
            }
            Value::DescriptorArray(a) if a.is_empty() => {
                return Err(err(EncodeErrorKind::EmptyArray, path, name));
            }
            Value::NvlistArray(a) if a.is_empty() => {
                return Err(err(EncodeErrorKind::EmptyArray, path, name));
            }
            Value::Descriptor(_) => descs += 1,
            Value::DescriptorArray(a) => descs += a.len(),
            Value::Nvlist(child) => {
                path.push(Seg::Name(name));
                descs += validate_list(child, path)?;
                path.pop();
            }
            Value::NvlistArray(elems) => {
                for (i, e) in elems.iter().enumerate() {
                    path.push(Seg::Elem(name, i));
                    descs += validate_list(e, path)?;
                    path.pop();
                }
            }
            _ => {}
        }
    }
    Ok(descs)
}

struct Encoder {
    out: Vec<u8>,
    order: ByteOrder,
    /// (offset of a list header, descriptors written before it)
    headers: Vec<(usize, usize)>,
    /// (offset of an NVLIST pair's datasize field, offset of the child header, bytes that
    /// enclosing lists had already counted when they opened but that come after it)
    nested: Vec<(usize, usize, usize)>,
    desc_seen: usize,
}

impl Encoder {
    fn u16(&mut self, v: u16) {
        match self.order {
            ByteOrder::Little => self.out.extend_from_slice(&v.to_le_bytes()),
            ByteOrder::Big => self.out.extend_from_slice(&v.to_be_bytes()),
        }
    }

    fn u64(&mut self, v: u64) {
        match self.order {
            ByteOrder::Little => self.out.extend_from_slice(&v.to_le_bytes()),
            ByteOrder::Big => self.out.extend_from_slice(&v.to_be_bytes()),
        }
    }

    fn put_u64_at(&mut self, at: usize, v: u64) {
        let b = match self.order {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        };
        self.out[at..at + 8].copy_from_slice(&b);
    }

    fn list_header(&mut self, flags: u8) {
        self.headers.push((self.out.len(), self.desc_seen));
        self.out.push(wire::HEADER_MAGIC);
        self.out.push(wire::HEADER_VERSION);
        let be = if self.order == ByteOrder::Big {
            wire::FLAG_BIG_ENDIAN
        } else {
            0
        };
        self.out.push(flags | be);
        self.u64(0); // descriptors, patched
        self.u64(0); // size, patched
    }

    fn pair_header(&mut self, code: u8, name: &str, datasize: u64, nitems: u64) -> usize {
        self.out.push(code);
        // Name length was validated against NV_NAME_MAX (2048), so it fits a u16.
        self.u16((name.len() + 1) as u16);
        let ds_at = self.out.len();
        self.u64(datasize);
        self.u64(nitems);
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        ds_at
    }

    fn marker(&mut self, code: u8) {
        self.pair_header(code, "", 0, 0);
    }

    /// Writes a list's header and pairs (not its closing marker). `pending` is the number
    /// of bytes enclosing lists counted at opening time that are written after this point.
    fn list(&mut self, nvl: &Nvlist, pending: usize) {
        self.list_header(nvl.flags());
        for (name, value) in nvl.iter() {
            self.pair(name, value, pending);
        }
    }

    fn pair(&mut self, name: &str, value: &Value, pending: usize) {
        let code = value.type_code();
        match value {
            Value::Null => {
                self.pair_header(code, name, 0, 0);
            }
            Value::Bool(b) => {
                self.pair_header(code, name, 1, 0);
                self.out.push(u8::from(*b));
            }
            Value::Number(n) => {
                self.pair_header(code, name, 8, 0);
                self.u64(*n);
            }
            Value::String(s) => {
                self.pair_header(code, name, s.len() as u64 + 1, 0);
                self.out.extend_from_slice(s.as_bytes());
                self.out.push(0);
            }
            Value::Descriptor(d) => {
                self.pair_header(code, name, 8, 0);
                self.u64(*d as u64);
                self.desc_seen += 1;
            }
            Value::Binary(b) => {
                self.pair_header(code, name, b.len() as u64, 0);
                self.out.extend_from_slice(b);
            }
            Value::BoolArray(a) => {
                self.pair_header(code, name, a.len() as u64, a.len() as u64);
                self.out.extend(a.iter().map(|b| u8::from(*b)));
            }
            Value::NumberArray(a) => {
                self.pair_header(code, name, 8 * a.len() as u64, a.len() as u64);
                for n in a {
                    self.u64(*n);
                }
            }
            Value::StringArray(a) => {
                let size: usize = a.iter().map(|s| s.len() + 1).sum();
                self.pair_header(code, name, size as u64, a.len() as u64);
                for s in a {
                    self.out.extend_from_slice(s.as_bytes());
                    self.out.push(0);
                }
            }
            Value::DescriptorArray(a) => {
                self.pair_header(code, name, 8 * a.len() as u64, a.len() as u64);
                for d in a {
                    self.u64(*d as u64);
                }
                self.desc_seen += a.len();
            }
            Value::Nvlist(child) => {
                let ds_at = self.pair_header(code, name, 0, 0);
                let hdr = self.out.len();
                if child.is_empty() {
                    // nvlist_size() of an empty list is just its header.
                    let b = wire::LIST_HEADER_LEN as u64;
                    self.put_u64_at(ds_at, b);
                } else {
                    self.nested.push((ds_at, hdr, pending + wire::MARKER_LEN));
                }
                self.list(child, pending + wire::MARKER_LEN);
                self.marker(ty::NVLIST_UP);
            }
            Value::NvlistArray(elems) => {
                let n = elems.len();
                self.pair_header(code, name, 0, n as u64);
                for (i, e) in elems.iter().enumerate() {
                    let later = (n - 1 - i) * (wire::LIST_HEADER_LEN + wire::MARKER_LEN);
                    self.list(e, pending + wire::MARKER_LEN + later);
                    self.marker(ty::NVLIST_ARRAY_NEXT);
                }
            }
        }
    }
}

/// One step of the path to a list, borrowed (built into a string only for errors).
#[derive(Clone, Copy)]
enum Seg<'a> {
    Name(&'a str),
    Elem(&'a str, usize),
}

fn path_string(path: &[Seg<'_>], name: Option<&str>) -> String {
    let mut key = String::new();
    for seg in path {
        if !key.is_empty() {
            key.push('.');
        }
        match seg {
            Seg::Name(n) => key.push_str(n),
            Seg::Elem(n, i) => {
                key.push_str(n);
                key.push_str(&format!("[{i}]"));
            }
        }
    }
    if let Some(n) = name {
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(n);
    }
    key
}

// ---------------------------------------------------------------------------------------
// Decoding

/// Unpacks a message with the default [`Limits`] and no descriptors, as
/// `nvlist_unpack(buf, len, flags)` does for any public flags.
pub fn decode(buf: &[u8]) -> Result<Nvlist, DecodeError> {
    decode_with(buf, &Limits::default(), 0)
}

/// Unpacks a message under explicit limits; `nfds` is how many descriptors arrived with it.
pub fn decode_with(buf: &[u8], limits: &Limits, nfds: usize) -> Result<Nvlist, DecodeError> {
    if buf.len() > limits.max_size {
        return Err(DecodeError {
            kind: DecodeErrorKind::TooLarge {
                size: buf.len(),
                max: limits.max_size,
            },
            key: String::new(),
            offset: 0,
        });
    }
    let mut r = Reader {
        buf,
        pos: 0,
        big_endian: false,
        limits,
        nfds,
        pairs: 0,
        path: Vec::new(),
    };
    r.list_header(false)
        .and_then(|flags| r.list(flags, End::Root, 0))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Root,
    Nested,
    Element,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big_endian: bool,
    limits: &'a Limits,
    nfds: usize,
    pairs: usize,
    path: Vec<Seg<'a>>,
}

struct PairHeader {
    code: u8,
    datasize: u64,
    nitems: u64,
}

impl<'a> Reader<'a> {
    fn err(&self, kind: DecodeErrorKind, name: Option<&str>) -> DecodeError {
        let key = path_string(&self.path, name);
        DecodeError {
            kind,
            key,
            offset: self.pos,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: u64, name: Option<&str>) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() as u64 {
            return Err(self.err(
                DecodeErrorKind::Truncated {
                    need: n,
                    have: self.remaining(),
                },
                name,
            ));
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u16_from(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.big_endian {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }

    fn u64_from(&self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        if self.big_endian {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        }
    }

    /// Reads a list header and returns its public flags.
    fn list_header(&mut self, nested: bool) -> Result<u8, DecodeError> {
        let start = self.pos;
        let h = self.take(wire::LIST_HEADER_LEN as u64, None)?;
        let (magic, version, flags) = (h[0], h[1], h[2]);
        let fail = |r: &Self, kind| {
            let mut e = r.err(kind, None);
            e.offset = start;
            e
        };
        if magic != wire::HEADER_MAGIC {
            return Err(fail(self, DecodeErrorKind::BadMagic(magic)));
        }
        if version != wire::HEADER_VERSION {
            return Err(fail(self, DecodeErrorKind::BadVersion(version)));
        }
        if flags & !wire::FLAG_ALL_MASK != 0 {
            return Err(fail(self, DecodeErrorKind::BadFlags(flags)));
        }
        let be = flags & wire::FLAG_BIG_ENDIAN != 0;
        if nested && be != self.big_endian {
            return Err(fail(self, DecodeErrorKind::MixedByteOrder));
        }
        self.big_endian = be;
        let descriptors = self.u64_from(&h[3..11]);
        let size = self.u64_from(&h[11..19]);
        if size != self.remaining() as u64 {
            return Err(fail(
                self,
                DecodeErrorKind::SizeMismatch {
                    declared: size,
                    actual: self.remaining(),
                },
            ));
        }
        if descriptors > self.nfds as u64 {
            return Err(fail(
                self,
                DecodeErrorKind::TooManyDescriptors {
                    declared: descriptors,
                    available: self.nfds,
                },
            ));
        }
        Ok(flags & wire::FLAG_PUBLIC_MASK)
    }

    fn pair_header(&mut self) -> Result<(PairHeader, &'a str), DecodeError> {
        let start = self.pos;
        let h = self.take(wire::PAIR_HEADER_LEN as u64, None)?;
        let code = h[0];
        let namesize = self.u16_from(&h[1..3]) as usize;
        let datasize = self.u64_from(&h[3..11]);
        let nitems = self.u64_from(&h[11..19]);
        let valid = (ty::NULL..=ty::DESCRIPTOR_ARRAY).contains(&code)
            || code == ty::NVLIST_UP
            || code == ty::NVLIST_ARRAY_NEXT;
        let at = |r: &Self, kind| {
            let mut e = r.err(kind, None);
            e.offset = start;
            e
        };
        if !valid {
            return Err(at(self, DecodeErrorKind::BadType(code)));
        }
        if namesize == 0 {
            return Err(at(self, DecodeErrorKind::BadName("zero name size")));
        }
        if namesize > self.limits.max_name_len.min(wire::NV_NAME_MAX) {
            return Err(at(self, DecodeErrorKind::BadName("name too long")));
        }
        let raw = self.take(namesize as u64, None)?;
        let (body, nul) = raw.split_at(namesize - 1);
        if nul[0] != 0 {
            return Err(at(
                self,
                DecodeErrorKind::BadName("name not NUL-terminated"),
            ));
        }
        if body.contains(&0) {
            return Err(at(self, DecodeErrorKind::BadName("name contains NUL")));
        }
        let name = std::str::from_utf8(body)
            .map_err(|_| at(self, DecodeErrorKind::BadName("name is not UTF-8")))?;
        Ok((
            PairHeader {
                code,
                datasize,
                nitems,
            },
            name,
        ))
    }

    fn list(&mut self, flags: u8, end: End, depth: usize) -> Result<Nvlist, DecodeError> {
        let mut nvl = Nvlist::with_flags(flags);
        let unique = flags & wire::FLAG_NO_UNIQUE == 0;
        let mut seen = DupCheck::new(flags & wire::FLAG_IGNORE_CASE != 0);
        loop {
            if self.remaining() == 0 {
                if end == End::Root {
                    return Ok(nvl);
                }
                return Err(self.err(DecodeErrorKind::Unterminated, None));
            }
            let start = self.pos;
            let (h, name) = self.pair_header()?;
            if h.code == ty::NVLIST_UP || h.code == ty::NVLIST_ARRAY_NEXT {
                let expected = if h.code == ty::NVLIST_UP {
                    End::Nested
                } else {
                    End::Element
                };
                if end != expected || !name.is_empty() || h.datasize != 0 || h.nitems != 0 {
                    let mut e = self.err(DecodeErrorKind::UnexpectedMarker(h.code), None);
                    e.offset = start;
                    return Err(e);
                }
                return Ok(nvl);
            }
            self.pairs += 1;
            if self.pairs > self.limits.max_pairs {
                return Err(self.err(
                    DecodeErrorKind::TooManyPairs {
                        max: self.limits.max_pairs,
                    },
                    Some(name),
                ));
            }
            if h.datasize > self.remaining() as u64 {
                return Err(self.err(
                    DecodeErrorKind::Truncated {
                        need: h.datasize,
                        have: self.remaining(),
                    },
                    Some(name),
                ));
            }
            if unique && !seen.insert(name) {
                let mut e = self.err(DecodeErrorKind::DuplicateKey, Some(name));
                e.offset = start;
                return Err(e);
            }
            let value = self.value(&h, name, depth)?;
            nvl.push(name, value);
        }
    }

    fn expect(&self, ok: bool, why: &'static str, name: &str) -> Result<(), DecodeError> {
        if ok {
            Ok(())
        } else {
            Err(self.err(DecodeErrorKind::BadData(why), Some(name)))
        }
    }

    fn array_len(&self, h: &PairHeader, name: &str, elem: u64) -> Result<usize, DecodeError> {
        self.expect(h.nitems > 0, "empty array", name)?;
        if h.nitems > self.limits.max_array_items as u64 {
            return Err(self.err(
                DecodeErrorKind::TooManyItems {
                    nitems: h.nitems,
                    max: self.limits.max_array_items,
                },
                Some(name),
            ));
        }
        if elem > 0 {
            self.expect(
                h.nitems.checked_mul(elem) == Some(h.datasize),
                "datasize does not match the item count",
                name,
            )?;
        }
        Ok(h.nitems as usize)
    }

    fn descriptor(&self, raw: u64, name: &str) -> Result<i64, DecodeError> {
        let idx = raw as i64;
        if idx < 0 || idx as u64 >= self.nfds as u64 {
            return Err(self.err(DecodeErrorKind::DescriptorOutOfRange(idx), Some(name)));
        }
        Ok(idx)
    }

    fn value(&mut self, h: &PairHeader, name: &'a str, depth: usize) -> Result<Value, DecodeError> {
        let n = Some(name);
        Ok(match h.code {
            ty::NULL => {
                self.expect(h.datasize == 0, "null with data", name)?;
                Value::Null
            }
            ty::BOOL => {
                self.expect(h.datasize == 1, "bool datasize is not 1", name)?;
                let b = self.take(1, n)?[0];
                self.expect(b <= 1, "bool is neither 0 nor 1", name)?;
                Value::Bool(b == 1)
            }
            ty::NUMBER => {
                self.expect(h.datasize == 8, "number datasize is not 8", name)?;
                let b = self.take(8, n)?;
                Value::Number(self.u64_from(b))
            }
            ty::STRING => {
                self.expect(h.datasize > 0, "string datasize is 0", name)?;
                let b = self.take(h.datasize, n)?;
                let (body, nul) = b.split_at(b.len() - 1);
                self.expect(nul[0] == 0 && !body.contains(&0), "bad string NUL", name)?;
                let s = std::str::from_utf8(body)
                    .map_err(|_| self.err(DecodeErrorKind::InvalidUtf8, n))?;
                Value::String(s.to_owned())
            }
            ty::DESCRIPTOR => {
                self.expect(h.datasize == 8, "descriptor datasize is not 8", name)?;
                let b = self.take(8, n)?;
                let raw = self.u64_from(b);
                Value::Descriptor(self.descriptor(raw, name)?)
            }
            ty::BINARY => {
                self.expect(h.datasize > 0, "empty binary", name)?;
                Value::Binary(Blob::from(self.take(h.datasize, n)?))
            }
            ty::BOOL_ARRAY => {
                let len = self.array_len(h, name, 1)?;
                let b = self.take(len as u64, n)?;
                self.expect(b.iter().all(|&x| x <= 1), "bool is neither 0 nor 1", name)?;
                Value::BoolArray(b.iter().map(|&x| x == 1).collect())
            }
            ty::NUMBER_ARRAY => {
                let len = self.array_len(h, name, 8)?;
                let b = self.take(8 * len as u64, n)?;
                Value::NumberArray(b.chunks_exact(8).map(|c| self.u64_from(c)).collect())
            }
            ty::DESCRIPTOR_ARRAY => {
                let len = self.array_len(h, name, 8)?;
                let b = self.take(8 * len as u64, n)?;
                let mut out = Vec::with_capacity(len);
                for c in b.chunks_exact(8) {
                    out.push(self.descriptor(self.u64_from(c), name)?);
                }
                Value::DescriptorArray(out)
            }
            ty::STRING_ARRAY => {
                let len = self.array_len(h, name, 0)?;
                self.expect(h.datasize > 0, "string array datasize is 0", name)?;
                let b = self.take(h.datasize, n)?;
                self.expect(b[b.len() - 1] == 0, "bad string NUL", name)?;
                let parts: Vec<&[u8]> = b[..b.len() - 1].split(|&c| c == 0).collect();
                self.expect(
                    parts.len() == len,
                    "string count does not match the item count",
                    name,
                )?;
                let mut out = Vec::with_capacity(len);
                for p in parts {
                    let s = std::str::from_utf8(p)
                        .map_err(|_| self.err(DecodeErrorKind::InvalidUtf8, n))?;
                    out.push(s.to_owned());
                }
                Value::StringArray(out)
            }
            ty::NVLIST => {
                self.expect(h.datasize > 0, "nvlist datasize is 0", name)?;
                self.descend(depth, name)?;
                self.path.push(Seg::Name(name));
                let flags = self.list_header(true)?;
                let child = self.list(flags, End::Nested, depth + 1)?;
                self.path.pop();
                Value::Nvlist(child)
            }
            ty::NVLIST_ARRAY => {
                let len = self.array_len(h, name, 0)?;
                // Every element needs at least a header and a marker.
                let min =
                    (len as u64).saturating_mul((wire::LIST_HEADER_LEN + wire::MARKER_LEN) as u64);
                if min > self.remaining() as u64 {
                    return Err(self.err(
                        DecodeErrorKind::Truncated {
                            need: min,
                            have: self.remaining(),
                        },
                        n,
                    ));
                }
                self.descend(depth, name)?;
                let mut elems = Vec::with_capacity(len.min(1024));
                for i in 0..len {
                    self.path.push(Seg::Elem(name, i));
                    let flags = self.list_header(true)?;
                    elems.push(self.list(flags, End::Element, depth + 1)?);
                    self.path.pop();
                }
                Value::NvlistArray(elems)
            }
            other => return Err(self.err(DecodeErrorKind::BadType(other), n)),
        })
    }

    fn descend(&self, depth: usize, name: &str) -> Result<(), DecodeError> {
        if depth + 1 > self.limits.max_depth {
            return Err(self.err(
                DecodeErrorKind::TooDeep {
                    max: self.limits.max_depth,
                },
                Some(name),
            ));
        }
        Ok(())
    }
}
