//! Wire constants of libnv's packed nvlist format (FreeBSD `sys/contrib/libnv`).
//!
//! Every header is packed (no padding) and its multi-byte fields are in the sender's byte
//! order; a big-endian sender sets [`FLAG_BIG_ENDIAN`] in each list header.

/// `nvlist_header.nvlh_magic`: `'l'`.
pub const HEADER_MAGIC: u8 = 0x6c;
/// `nvlist_header.nvlh_version`: the only version libnv has ever written.
pub const HEADER_VERSION: u8 = 0;
/// Size of a list header: magic, version, flags (u8 each), descriptors, size (u64 each).
pub const LIST_HEADER_LEN: usize = 19;
/// Size of a pair header: type (u8), namesize (u16), datasize (u64), nitems (u64).
pub const PAIR_HEADER_LEN: usize = 19;
/// Size of a marker pair (NVLIST_UP / NVLIST_ARRAY_NEXT): a pair header and an empty name.
pub const MARKER_LEN: usize = PAIR_HEADER_LEN + 1;

/// Public flag: names are compared case-insensitively.
pub const FLAG_IGNORE_CASE: u8 = 0x01;
/// Public flag: the same name may occur more than once.
pub const FLAG_NO_UNIQUE: u8 = 0x02;
/// Private flag: the sender was big-endian.
pub const FLAG_BIG_ENDIAN: u8 = 0x80;
/// Flags a public caller may set.
pub const FLAG_PUBLIC_MASK: u8 = FLAG_IGNORE_CASE | FLAG_NO_UNIQUE;
/// Every flag a header may carry (`NV_FLAG_ALL_MASK` truncated to the u8 header field).
pub const FLAG_ALL_MASK: u8 = FLAG_PUBLIC_MASK | FLAG_BIG_ENDIAN;

/// libnv's `NV_NAME_MAX`: a name's size on the wire, terminating NUL included.
pub const NV_NAME_MAX: usize = 2048;

/// Pair type codes (`NV_TYPE_*`).
pub mod ty {
    /// `NV_TYPE_NULL`: no data.
    pub const NULL: u8 = 1;
    /// `NV_TYPE_BOOL`: one byte, 0 or 1.
    pub const BOOL: u8 = 2;
    /// `NV_TYPE_NUMBER`: u64.
    pub const NUMBER: u8 = 3;
    /// `NV_TYPE_STRING`: NUL-terminated.
    pub const STRING: u8 = 4;
    /// `NV_TYPE_NVLIST`: the child's header and pairs follow inline, closed by NVLIST_UP.
    pub const NVLIST: u8 = 5;
    /// `NV_TYPE_DESCRIPTOR`: i64 index into the descriptors passed beside the message.
    pub const DESCRIPTOR: u8 = 6;
    /// `NV_TYPE_BINARY`: raw bytes (never empty).
    pub const BINARY: u8 = 7;
    /// `NV_TYPE_BOOL_ARRAY`.
    pub const BOOL_ARRAY: u8 = 8;
    /// `NV_TYPE_NUMBER_ARRAY`.
    pub const NUMBER_ARRAY: u8 = 9;
    /// `NV_TYPE_STRING_ARRAY`.
    pub const STRING_ARRAY: u8 = 10;
    /// `NV_TYPE_NVLIST_ARRAY`: each element's header and pairs follow, each closed by
    /// NVLIST_ARRAY_NEXT.
    pub const NVLIST_ARRAY: u8 = 11;
    /// `NV_TYPE_DESCRIPTOR_ARRAY`.
    pub const DESCRIPTOR_ARRAY: u8 = 12;
    /// `NV_TYPE_NVLIST_ARRAY_NEXT`: closes one element of an nvlist array.
    pub const NVLIST_ARRAY_NEXT: u8 = 254;
    /// `NV_TYPE_NVLIST_UP`: closes a nested nvlist.
    pub const NVLIST_UP: u8 = 255;
}
