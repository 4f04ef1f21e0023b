//! Batch AEAD on CUDA implementing `crypto::BatchAead`.

mod abi;
mod layout;
pub mod model;

pub use abi::KEY_SLOT_BYTES;
pub use model::{HostModel, lanes_for};
