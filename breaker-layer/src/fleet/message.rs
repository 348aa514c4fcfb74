//! The wire format of fleet messages: one short, versioned ASCII line. Pure: no I/O.
//!
//! ```text
//! rb1 open 9f86d081884c7d65 30000 failure_rate
//! rb1 closed 9f86d081884c7d65 0 probes_succeeded
//! ```
//!
//! Five fields separated by single spaces: the format and its version (`rb1`), the kind
//! (`open`, `closed`), the sending instance (16 lowercase hex digits), how long the sender
//! stays open in milliseconds (0 for `closed`), and the cause (`[a-z_]{1,32}`, a
//! [`TransitionCause`](crate::TransitionCause) name). Text rather than binary so that
//! `redis-cli SUBSCRIBE` shows an operator what the fleet says.
//!
//! Anyone who can publish on the channel can send anything: decoding checks every field
//! and refuses the rest with a [`Garbage`] reason, never a panic. A later format would
//! start `rb2`; this version ignores it (and counts it) rather than guess.

use std::fmt;
use std::time::Duration;

/// Longest message decoded; anything longer is garbage without being read.
pub(crate) const MAX_MESSAGE_LEN: usize = 128;

const MAGIC: &str = "rb1";
const MAX_CAUSE_LEN: usize = 32;

/// What a message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The sender's circuit opened by its own verdict.
    Open,
    /// The sender's circuit closed (probes succeeded, or an operator reset it).
    Closed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// One fleet message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) kind: Kind,
    /// The sending link's instance id, so that a link ignores its own messages.
    pub(crate) instance: u64,
    /// How long the sender stays open (whole milliseconds; zero for `closed`).
    pub(crate) open_for: Duration,
    /// Why, as a `TransitionCause` name (a newer sender may send names this version does
    /// not know; they are only logged).
    pub(crate) cause: String,
}

/// Why a payload is not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Garbage {
    TooLong,
    NotAscii,
    /// Not five fields, or a field out of shape.
    Malformed,
    /// An `rb` format of another version.
    UnknownVersion,
}

impl Garbage {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::NotAscii => "not_ascii",
            Self::Malformed => "malformed",
            Self::UnknownVersion => "unknown_version",
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = u64::try_from(self.open_for.as_millis()).unwrap_or(u64::MAX);
        write!(
            f,
            "{MAGIC} {} {:016x} {ms} {}",
            self.kind.as_str(),
            self.instance,
            self.cause
        )
    }
}

impl Message {
    pub(crate) fn open(instance: u64, open_for: Duration, cause: &str) -> Self {
        Self {
            kind: Kind::Open,
            instance,
            open_for,
            cause: cause.to_owned(),
        }
    }

    pub(crate) fn closed(instance: u64, cause: &str) -> Self {
        Self {
            kind: Kind::Closed,
            instance,
            open_for: Duration::ZERO,
            cause: cause.to_owned(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Self, Garbage> {
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(Garbage::TooLong);
        }
        if !payload.is_ascii() {
            return Err(Garbage::NotAscii);
        }
        let text = std::str::from_utf8(payload).map_err(|_| Garbage::NotAscii)?;
        let mut fields = text.split(' ');
        let mut field = || fields.next().ok_or(Garbage::Malformed);
        let magic = field()?;
        if magic != MAGIC {
            return Err(if magic.starts_with("rb") {
                Garbage::UnknownVersion
            } else {
                Garbage::Malformed
            });
        }
        let kind = match field()? {
            "open" => Kind::Open,
            "closed" => Kind::Closed,
            _ => return Err(Garbage::Malformed),
        };
        let instance = field()?;
        if instance.len() != 16
            || !instance
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(Garbage::Malformed);
        }
        let instance = u64::from_str_radix(instance, 16).map_err(|_| Garbage::Malformed)?;
        let ms = field()?;
        // Canonical decimal only (no sign, no leading zero), so one message has one text.
        if ms.is_empty()
            || !ms.bytes().all(|b| b.is_ascii_digit())
            || (ms.len() > 1 && ms.starts_with('0'))
        {
            return Err(Garbage::Malformed);
        }
        let ms: u64 = ms.parse().map_err(|_| Garbage::Malformed)?;
        let cause = field()?;
        if cause.is_empty()
            || cause.len() > MAX_CAUSE_LEN
            || !cause.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(Garbage::Malformed);
        }
        if fields.next().is_some() {
            return Err(Garbage::Malformed);
        }
        Ok(Self {
            kind,
            instance,
            open_for: Duration::from_millis(ms),
            cause: cause.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_reads_like_a_log_line() {
        let open = Message::open(
            0x9f86_d081_884c_7d65,
            Duration::from_secs(30),
            "failure_rate",
        );
        assert_eq!(
            open.to_string(),
            "rb1 open 9f86d081884c7d65 30000 failure_rate"
        );
        assert_eq!(Message::decode(&open.encode()), Ok(open));
        let closed = Message::closed(1, "probes_succeeded");
        assert_eq!(
            closed.to_string(),
            "rb1 closed 0000000000000001 0 probes_succeeded"
        );
        assert_eq!(Message::decode(&closed.encode()), Ok(closed));
        let longest = Message::open(u64::MAX, Duration::MAX, &"z".repeat(MAX_CAUSE_LEN));
        assert!(longest.encode().len() <= MAX_MESSAGE_LEN);
        assert_eq!(
            Message::decode(&longest.encode()).unwrap().instance,
            u64::MAX
        );
    }

    #[test]
    fn garbage_has_a_reason() {
        use Garbage::*;
        let cases: &[(&[u8], Garbage)] = &[
            (b"", Malformed),
            (b"hello", Malformed),
            (b"rb2 open 0000000000000001 1 x", UnknownVersion),
            (b"rb1 shut 0000000000000001 1 x", Malformed),
            (b"rb1 open 1 1 x", Malformed),
            (b"rb1 open 000000000000000G 1 x", Malformed),
            (b"rb1 open 000000000000000A 1 x", Malformed),
            (b"rb1 open 0000000000000001 -1 x", Malformed),
            (b"rb1 open 0000000000000001 +1 x", Malformed),
            (b"rb1 open 0000000000000001 01 x", Malformed),
            (
                b"rb1 open 0000000000000001 99999999999999999999 x",
                Malformed,
            ),
            (b"rb1 open 0000000000000001 1 Bad", Malformed),
            (b"rb1 open 0000000000000001 1 ", Malformed),
            (b"rb1 open 0000000000000001 1 x extra", Malformed),
            (b"rb1  open 0000000000000001 1 x", Malformed),
            (b"rb1 open 0000000000000001 1 x\n", Malformed),
            (b"rb1 open \xff000000000000001 1 x", NotAscii),
            (&[b'a'; MAX_MESSAGE_LEN + 1], TooLong),
        ];
        for (payload, reason) in cases {
            assert_eq!(
                Message::decode(payload),
                Err(*reason),
                "{:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&payload);
        }

        #[test]
        fn near_messages_decode_without_panic(s in "rb[0-9] (open|closed|x) [0-9a-fA-F]{0,17} [0-9+-]{0,21} [a-z_]{0,33}") {
            if let Ok(m) = Message::decode(s.as_bytes()) {
                prop_assert_eq!(m.to_string(), s);
            }
        }

        #[test]
        fn every_message_round_trips(instance in any::<u64>(), ms in any::<u64>(), cause in "[a-z_]{1,32}", open in any::<bool>()) {
            let m = if open {
                Message::open(instance, Duration::from_millis(ms), &cause)
            } else {
                Message::closed(instance, &cause)
            };
            prop_assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
    }
}
