//! The gRPC example's price service and client, generated from `proto/prices.proto` and
//! wrapped in the reliability layers on both sides.
//!
//! - [`service`]: `prices.Prices` over the simulated upstream, behind a rate limit
//!   (`RESOURCE_EXHAUSTED` with `retry-after`), an SLA monitor and a circuit breaker
//!   (`UNAVAILABLE` with `grpc-retry-pushback-ms`), next to server reflection.
//! - [`client`]: the generated client over a channel wrapped in an SLA monitor, gRPC
//!   retries that honour pushback, and a breaker of its own.
//! - [`proto`]: what `build.rs` generated, and the descriptor set reflection serves.
//!
//! The `grpc` binary runs both in one process (a scripted session) or, with `serve`, the
//! server alone for any gRPC client:
//!
//! ```text
//! cargo run -p examples --bin grpc -- serve --addr 127.0.0.1:50051
//! grpcurl -plaintext 127.0.0.1:50051 list
//! grpcurl -plaintext -d '{"symbol": "ETH-USDC"}' 127.0.0.1:50051 prices.Prices/GetPrice
//! ```

pub mod client;
pub mod proto;
pub mod service;

pub use client::{PriceClient, QuotaIsNotFailure};
pub use service::{API_KEY, PriceServer, ServerSettings, UpstreamPrices, bind, start_server};
