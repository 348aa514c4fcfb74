//! Shared pieces of the example programs: a simulated flaky upstream with a scripted
//! scenario, and the example server's application.

pub mod server;
pub mod upstream;
