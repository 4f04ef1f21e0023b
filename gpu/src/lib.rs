//! Batch AEAD on CUDA implementing `crypto::BatchAead`.
