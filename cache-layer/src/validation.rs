//! Limits on keys and values, in three modes ([`ValidationMode`]).
//!
//! A key or value outside the limits never reaches a tier and never fails the request:
//! an over-long key makes the request bypass the cache, an oversize value is served to its
//! caller and not stored. Both are counted. Explicit writes ([`CacheHandle::put`]) return
//! the typed error instead.
//!
//! | mode | key length | value size | key characters |
//! |---|---|---|---|
//! | `strict` | 256 B | 64 KiB | printable ASCII only |
//! | `normal` (default) | 1 KiB | 1 MiB | no control characters |
//! | `relaxed` | 8 KiB | 16 MiB | anything |
//!
//! [`CacheHandle::put`]: crate::CacheHandle::put

use crate::ValidationMode;
use crate::error::{InvalidKey, ValueTooLarge};

/// The limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The mode they come from (decides the key character rule).
    pub mode: ValidationMode,
    /// Longest key, bytes.
    pub max_key_len: usize,
    /// Largest value, bytes (as measured by the cache's size function).
    pub max_value_size: usize,
}

impl Limits {
    /// The limits of a mode.
    pub fn of(mode: ValidationMode) -> Self {
        let (max_key_len, max_value_size) = match mode {
            ValidationMode::Strict => (256, 64 << 10),
            ValidationMode::Normal => (1 << 10, 1 << 20),
            ValidationMode::Relaxed => (8 << 10, 16 << 20),
        };
        Self {
            mode,
            max_key_len,
            max_value_size,
        }
    }

    /// Checks a key.
    pub fn check_key(&self, key: &str) -> Result<(), InvalidKey> {
        if key.len() > self.max_key_len {
            return Err(InvalidKey::TooLong {
                len: key.len(),
                limit: self.max_key_len,
            });
        }
        let bad = match self.mode {
            ValidationMode::Strict => key.bytes().any(|b| !(0x20..0x7f).contains(&b)),
            ValidationMode::Normal => key.chars().any(char::is_control),
            ValidationMode::Relaxed => false,
        };
        if bad {
            return Err(InvalidKey::BadCharacter);
        }
        Ok(())
    }

    /// Checks a value's size.
    pub fn check_value(&self, size: usize) -> Result<(), ValueTooLarge> {
        if size > self.max_value_size {
            Err(ValueTooLarge {
                size,
                limit: self.max_value_size,
            })
        } else {
            Ok(())
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::of(ValidationMode::Normal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let strict = Limits::of(ValidationMode::Strict);
        assert!(strict.check_key("GET /a?b=c").is_ok());
        assert_eq!(strict.check_key("é"), Err(InvalidKey::BadCharacter));
        assert!(matches!(
            strict.check_key(&"k".repeat(257)),
            Err(InvalidKey::TooLong {
                len: 257,
                limit: 256
            })
        ));
        assert!(strict.check_value(65 << 10).is_err());
        let normal = Limits::default();
        assert!(normal.check_key("é").is_ok());
        assert_eq!(normal.check_key("a\nb"), Err(InvalidKey::BadCharacter));
        assert!(normal.check_value(65 << 10).is_ok());
        let relaxed = Limits::of(ValidationMode::Relaxed);
        assert!(relaxed.check_key("a\nb").is_ok());
        assert_eq!(
            relaxed.check_value(17 << 20),
            Err(ValueTooLarge {
                size: 17 << 20,
                limit: 16 << 20
            })
        );
    }
}
