//! The wagelink contract, generated from `proto/wagelink/v1/*.proto`.
//!
//! The `.proto` files are the public interface agency and bank systems code against; this crate
//! only makes them usable from Rust (messages, clients, servers) and carries the encoded file
//! descriptor set for gRPC reflection.

/// Package `wagelink.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("wagelink.v1");
}

/// The encoded `FileDescriptorSet` of every wagelink/v1 file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/wagelink_descriptor.bin"));

pub mod envelope;
