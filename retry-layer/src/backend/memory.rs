//! A bounded in-process dead-letter sink.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{DeadLetter, DeadLetterSink};

/// Keeps the last `capacity` dead letters in memory; older ones are dropped (and counted).
///
/// Clones share the same buffer.
#[derive(Debug, Clone)]
pub struct MemorySink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    letters: Mutex<VecDeque<DeadLetter>>,
    dropped: AtomicU64,
}

impl MemorySink {
    /// A sink holding at most `capacity` letters (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Arc::new(Inner {
                capacity,
                letters: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    fn letters_mut(&self) -> std::sync::MutexGuard<'_, VecDeque<DeadLetter>> {
        // A panic elsewhere while holding the lock leaves a valid queue behind.
        self.inner
            .letters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Letters held, oldest first.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.letters_mut().iter().cloned().collect()
    }

    /// Takes every letter out, oldest first.
    pub fn drain(&self) -> Vec<DeadLetter> {
        self.letters_mut().drain(..).collect()
    }

    /// Letters held.
    pub fn len(&self) -> usize {
        self.letters_mut().len()
    }

    /// Whether no letter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Letters pushed out by newer ones since the sink was made.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl DeadLetterSink for MemorySink {
    fn send(&self, letter: DeadLetter) {
        let mut letters = self.letters_mut();
        if letters.len() >= self.inner.capacity {
            letters.pop_front();
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
        letters.push_back(letter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::StopReason;
    use std::time::SystemTime;

    fn letter(n: u32) -> DeadLetter {
        DeadLetter::new(
            n,
            StopReason::AttemptsExhausted,
            "boom",
            SystemTime::now(),
            SystemTime::now(),
            "",
        )
    }

    #[test]
    fn bounded_oldest_first_out() {
        let sink = MemorySink::new(2);
        for n in 1..=5 {
            sink.send(letter(n));
        }
        let attempts: Vec<_> = sink.letters().iter().map(|l| l.attempts).collect();
        assert_eq!(attempts, [4, 5]);
        assert_eq!(sink.dropped(), 3);
        assert_eq!(sink.drain().len(), 2);
        assert!(sink.is_empty());
        assert_eq!(MemorySink::new(0).inner.capacity, 1, "zero is clamped");
    }
}
