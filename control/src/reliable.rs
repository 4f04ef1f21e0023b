//! reliable
