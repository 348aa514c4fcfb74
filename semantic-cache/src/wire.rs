//! Byte layouts of what the cache persists, and key digests.
//!
//! Vectors are little-endian `f32`s after a `u32` dimension; a stored entry is its vector
//! followed by the value's bytes (from the user's codec). Decoding checks every length and
//! treats a malformed blob as absent.

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

/// 128 bits of SHA-256 over length-prefixed parts, as 32 hex digits.
pub(crate) fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut s = String::with_capacity(32);
    for b in &d[..16] {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn encode_vector(v: &[f32]) -> Bytes {
    encode_entry(v, &[])
}

pub(crate) fn decode_vector(b: &[u8]) -> Option<Vec<f32>> {
    decode_entry(b).map(|(v, _)| v)
}

pub(crate) fn encode_entry(v: &[f32], value: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + v.len() * 4 + value.len());
    out.put_u32_le(u32::try_from(v.len()).unwrap_or(u32::MAX));
    for x in v {
        out.put_f32_le(*x);
    }
    out.put_slice(value);
    out.freeze()
}

pub(crate) fn decode_entry(b: &[u8]) -> Option<(Vec<f32>, &[u8])> {
    let dim = usize::try_from(u32::from_le_bytes(b.get(..4)?.try_into().ok()?)).ok()?;
    let end = dim.checked_mul(4)?.checked_add(4)?;
    let floats = b.get(4..end)?;
    let v: Vec<f32> = floats
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    Some((v, &b[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Entries round-trip; no blob makes decoding panic.
        #[test]
        fn entries_round_trip(v in proptest::collection::vec(-1e6f32..1e6, 1..50),
                              value in proptest::collection::vec(any::<u8>(), 0..50),
                              junk in proptest::collection::vec(any::<u8>(), 0..80)) {
            let b = encode_entry(&v, &value);
            let (v2, value2) = decode_entry(&b).unwrap();
            prop_assert_eq!(&v2, &v);
            prop_assert_eq!(value2, &value[..]);
            let _ = decode_entry(&junk);
            prop_assert!(decode_entry(&b[..b.len().min(4 + v.len() * 4 - 1)]).is_none());
        }

    }

    #[test]
    fn digests_separate_parts() {
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
        assert_eq!(digest(&[b"x"]).len(), 32);
    }
}
