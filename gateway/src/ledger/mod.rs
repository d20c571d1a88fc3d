//! The evidence log (DESIGN §6): an append-only RFC 9162 Merkle tree over entries that record
//! every accepted envelope (and, with later work, deliveries, acknowledgements and admin
//! actions), with signed checkpoints and inclusion / consistency proofs.

pub mod checkpoint;
pub mod export;
pub mod log;
pub mod merkle;
pub mod witness;
