//! Shared pieces of the example programs: a simulated flaky upstream with a scripted
//! scenario, the example server's application, and the gRPC example's service and client.

pub mod grpc;
pub mod server;
pub mod upstream;
