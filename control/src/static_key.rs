//! static_key
