//! Demo and benchmark tools.
