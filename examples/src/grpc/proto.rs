//! The code generated from `proto/prices.proto` by `build.rs`: the messages, the
//! `prices_client` and `prices_server` modules, and the file descriptor set.

tonic::include_proto!("prices");

/// The encoded `FileDescriptorSet` of `prices.proto` (with its imports), which server
/// reflection answers from.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("prices_descriptor");
