#![doc = include_str!("../README.md")]
//!
//! The library holds the shared pieces of the example programs: a simulated flaky upstream
//! with a scripted scenario ([`upstream`]), the example server's application ([`server`]),
//! and the gRPC example's service and client ([`grpc`]).

pub mod grpc;
pub mod proxy;
pub mod server;
pub mod upstream;
