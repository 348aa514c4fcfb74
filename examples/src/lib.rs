//! Shared pieces of the example programs: a simulated flaky upstream with a scripted
//! scenario.

pub mod upstream;
