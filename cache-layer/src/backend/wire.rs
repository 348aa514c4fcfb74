//! The byte form of an entry in a lower tier: metadata, value (LZ4-compressed above a
//! threshold) and a checksum, in one blob.
//!
//! ```text
//! "RC" 1 | flags u8 | stored_at_ms u64 | ttl_ms u64 | swr_ms u64 | sie_ms u64 | cost_ms u64
//!        | n_tags u16 | (len u16, bytes)* | value_len u32 | value | fnv1a-64 of all before
//! ```
//!
//! All integers little-endian. Decoding checks every length against the blob and the
//! checksum before trusting anything, so a torn or corrupted blob is an error, never a
//! wrong value or a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{EntryMeta, Stored};

const MAGIC: &[u8; 3] = b"RC\x01";
const COMPRESSED: u8 = 1;
const NEGATIVE: u8 = 2;

/// Why a blob could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt cache entry: {0}")]
pub struct CorruptEntry(pub &'static str);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A 64-bit checksum, a word at a time: each step is a bijection of the state for a given
/// word, so any change confined to one word always changes the sum (every single-bit
/// flip is caught); the length is mixed in, so is every truncation. Catches torn writes
/// and bit rot, not an adversary.
fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(K);
        h ^= h >> 29;
    }
    let rest = words.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 32)
}

/// Encodes an entry; values longer than `compress_above` bytes are LZ4-compressed when
/// that makes them smaller.
pub fn encode(entry: &Stored<Bytes>, compress_above: usize) -> Vec<u8> {
    let m = &entry.meta;
    let compressed = (entry.value.len() > compress_above)
        .then(|| lz4_flex::compress_prepend_size(&entry.value))
        .filter(|c| c.len() < entry.value.len());
    let value: &[u8] = compressed.as_deref().unwrap_or(&entry.value);
    let mut out = Vec::with_capacity(64 + value.len());
    out.extend_from_slice(MAGIC);
    let mut flags = 0;
    if compressed.is_some() {
        flags |= COMPRESSED;
    }
    if m.negative {
        flags |= NEGATIVE;
    }
    out.push(flags);
    let stored_ms = m.stored_at.duration_since(UNIX_EPOCH).map(ms).unwrap_or(0);
    for v in [
        stored_ms,
        ms(m.ttl),
        ms(m.stale_while_revalidate),
        ms(m.stale_if_error),
        ms(m.fetch_cost),
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let tags: Vec<&String> = m
        .tags
        .iter()
        .filter(|t| t.len() <= usize::from(u16::MAX))
        .take(usize::from(u16::MAX))
        .collect();
    out.extend_from_slice(&(tags.len() as u16).to_le_bytes());
    for t in tags {
        out.extend_from_slice(&(t.len() as u16).to_le_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(value);
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptEntry> {
        if self.buf.len() < n {
            return Err(CorruptEntry("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, CorruptEntry> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }

    fn u32(&mut self) -> Result<u32, CorruptEntry> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn u64(&mut self) -> Result<u64, CorruptEntry> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
}

/// Decodes a blob made by [`encode`] (copying the value).
pub fn decode(blob: &[u8]) -> Result<Stored<Bytes>, CorruptEntry> {
    decode_with(blob, Bytes::copy_from_slice)
}

/// Decodes an owned blob; an uncompressed value is a slice of it, not a copy.
pub fn decode_owned(blob: Bytes) -> Result<Stored<Bytes>, CorruptEntry> {
    decode_with(&blob, |raw| blob.slice_ref(raw))
}

fn decode_with(
    blob: &[u8],
    value_of: impl FnOnce(&[u8]) -> Bytes,
) -> Result<Stored<Bytes>, CorruptEntry> {
    if blob.len() < MAGIC.len() + 8 {
        return Err(CorruptEntry("truncated"));
    }
    let (body, sum) = blob.split_at(blob.len() - 8);
    if checksum(body).to_le_bytes() != sum {
        return Err(CorruptEntry("checksum mismatch"));
    }
    let mut r = Reader { buf: body };
    if r.take(3)? != MAGIC {
        return Err(CorruptEntry("unknown format"));
    }
    let flags = r.take(1)?[0];
    let stored_ms = r.u64()?;
    let [ttl, swr, sie, cost] = [r.u64()?, r.u64()?, r.u64()?, r.u64()?].map(Duration::from_millis);
    let n_tags = r.u16()?;
    let mut tags = Vec::with_capacity(usize::from(n_tags).min(64));
    for _ in 0..n_tags {
        let len = r.u16()?;
        let t = std::str::from_utf8(r.take(usize::from(len))?)
            .map_err(|_| CorruptEntry("tag is not UTF-8"))?;
        tags.push(t.to_owned());
    }
    let len = r.u32()? as usize;
    let raw = r.take(len)?;
    if !r.buf.is_empty() {
        return Err(CorruptEntry("trailing bytes"));
    }
    let value = if flags & COMPRESSED != 0 {
        Bytes::from(
            lz4_flex::decompress_size_prepended(raw)
                .map_err(|_| CorruptEntry("bad compression"))?,
        )
    } else {
        value_of(raw)
    };
    Ok(Stored {
        value,
        meta: EntryMeta {
            stored_at: UNIX_EPOCH + Duration::from_millis(stored_ms),
            ttl,
            stale_while_revalidate: swr,
            stale_if_error: sie,
            fetch_cost: cost,
            negative: flags & NEGATIVE != 0,
            tags,
        },
    })
}

/// Milliseconds a lower tier should keep an entry: TTL plus the longer stale window
/// (at least 1).
pub fn keep_ms(meta: &EntryMeta, now: SystemTime) -> u64 {
    let end = meta.stored_at + meta.ttl + meta.stale_while_revalidate.max(meta.stale_if_error);
    ms(end.duration_since(now).unwrap_or_default()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(value: Vec<u8>, tags: Vec<String>) -> Stored<Bytes> {
        Stored {
            value: Bytes::from(value),
            meta: EntryMeta {
                stored_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
                ttl: Duration::from_secs(5),
                stale_while_revalidate: Duration::from_secs(1),
                stale_if_error: Duration::from_secs(10),
                fetch_cost: Duration::from_millis(40),
                negative: true,
                tags,
            },
        }
    }

    #[test]
    fn owned_decoding_shares_the_blob() {
        let e = entry(vec![7; 100], vec![]);
        let blob = Bytes::from(encode(&e, 1 << 20));
        let d = decode_owned(blob.clone()).unwrap();
        assert_eq!(d, e);
        let inside = blob.as_ptr_range();
        assert!(inside.contains(&d.value.as_ptr()), "no copy");
    }

    #[test]
    fn compresses_large_repetitive_values() {
        let e = entry(vec![b'a'; 10_000], vec!["t".into()]);
        let blob = encode(&e, 1024);
        assert!(blob.len() < 1_000, "{}", blob.len());
        assert_eq!(decode(&blob).unwrap(), e);
    }

    proptest! {
        #[test]
        fn round_trips(value in proptest::collection::vec(any::<u8>(), 0..3000),
                       tags in proptest::collection::vec(".{0,12}", 0..4),
                       threshold in 0usize..4000) {
            let e = entry(value, tags);
            prop_assert_eq!(decode(&encode(&e, threshold)).unwrap(), e);
        }

        /// Any torn (truncated) or flipped blob is rejected, never misread.
        #[test]
        fn damage_is_detected(value in proptest::collection::vec(any::<u8>(), 0..500),
                              cut in any::<prop::sample::Index>(),
                              flip in any::<prop::sample::Index>(), bit in 0u8..8) {
            let blob = encode(&entry(value, vec!["x".into()]), 64);
            let torn = &blob[..cut.index(blob.len())];
            prop_assert!(decode(torn).is_err());
            let mut flipped = blob.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 1 << bit;
            prop_assert!(decode(&flipped).is_err());
        }
    }
}
