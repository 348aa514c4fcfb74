//! Dead letters: requests the layer gave up on, kept for inspection and replay.
//!
//! When a request fails after its last allowed attempt (or the budget, the elapsed limit
//! or the deadline stopped it), the layer hands a [`DeadLetter`] to its
//! [`DeadLetterSink`]: how many attempts were made, the last error, the first and last
//! attempt times and a description of the request that the user supplies (the layer never
//! stores request bodies on its own).
//!
//! Two sinks ship: [`MemorySink`], a bounded in-process buffer (oldest letters go first),
//! and (feature `redis`) `RedisStreamSink`, durable in a Redis Stream until a consumer
//! group acknowledges each entry, read back through `DeadLetterStream`.

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use self::memory::MemorySink;
#[cfg(feature = "redis")]
pub use self::redis::{
    DeadLetterStream, FlushError, PendingDeadLetter, RedisSinkOptions, RedisStreamSink,
    SinkStartError, StoredDeadLetter,
};
use crate::schedule::StopReason;

/// Longest stored error or request description, in bytes: a hostile upstream's error
/// text must not fill the sink.
pub const MAX_TEXT_LEN: usize = 4096;

/// One request the layer gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Attempts made, the first included.
    pub attempts: u32,
    /// Why retrying stopped.
    pub reason: StopReason,
    /// The last attempt's error (or a description of its failed answer).
    pub last_error: String,
    /// When the first attempt started, Unix milliseconds.
    pub first_attempt_unix_ms: u64,
    /// When the last attempt ended, Unix milliseconds.
    pub last_attempt_unix_ms: u64,
    /// The user-supplied description of the request.
    pub request: String,
}

impl DeadLetter {
    /// A letter; texts longer than [`MAX_TEXT_LEN`] are cut at a character boundary.
    pub fn new(
        attempts: u32,
        reason: StopReason,
        last_error: impl Into<String>,
        first_attempt: SystemTime,
        last_attempt: SystemTime,
        request: impl Into<String>,
    ) -> Self {
        Self {
            attempts,
            reason,
            last_error: bounded(last_error.into()),
            first_attempt_unix_ms: reliability_core::health::unix_ms(first_attempt),
            last_attempt_unix_ms: reliability_core::health::unix_ms(last_attempt),
            request: bounded(request.into()),
        }
    }

    /// How long the request was tried.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(
            self.last_attempt_unix_ms
                .saturating_sub(self.first_attempt_unix_ms),
        )
    }
}

fn bounded(mut s: String) -> String {
    if s.len() > MAX_TEXT_LEN {
        let mut end = MAX_TEXT_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Where given-up requests go. `send` must not block: sinks that do I/O queue the letter.
pub trait DeadLetterSink: Send + Sync + std::fmt::Debug + 'static {
    /// Takes one letter.
    fn send(&self, letter: DeadLetter);
}

impl<T: DeadLetterSink + ?Sized> DeadLetterSink for std::sync::Arc<T> {
    fn send(&self, letter: DeadLetter) {
        (**self).send(letter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_on_a_char_boundary() {
        let letter = DeadLetter::new(
            3,
            StopReason::AttemptsExhausted,
            "é".repeat(5000),
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1500),
            "GET /x",
        );
        assert!(letter.last_error.len() <= MAX_TEXT_LEN);
        assert!(letter.last_error.chars().all(|c| c == 'é'));
        assert_eq!(letter.duration(), Duration::from_millis(1500));
    }
}
