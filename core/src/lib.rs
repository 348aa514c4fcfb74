#![doc = include_str!("../README.md")]

pub mod answer;
pub mod classify;
pub mod clock;
pub mod deadline;
pub mod error;
pub mod failure;
#[cfg(feature = "test-util")]
pub mod harness;
pub mod health;
#[cfg(feature = "http")]
pub mod idempotent;
pub mod key;
#[cfg(feature = "redis")]
pub mod redis;
pub mod service;
