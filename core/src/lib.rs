#![doc = include_str!("../README.md")]

pub mod classify;
pub mod clock;
pub mod error;
pub mod failure;
#[cfg(feature = "test-util")]
pub mod harness;
pub mod health;
pub mod key;
#[cfg(feature = "redis")]
pub mod redis;
pub mod service;
