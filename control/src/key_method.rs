//! key_method
