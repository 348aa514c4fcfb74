//! How values become bytes for the lower tiers.

use bytes::Bytes;

/// Turns values into bytes and back, for tiers below L1.
///
/// `encode` may refuse a value (`None`): it then stays in L1 only. A blob `decode`
/// cannot read is treated as a miss.
pub trait Codec<V>: Send + Sync + 'static {
    /// The bytes of `value`, or `None` to keep it out of the lower tiers.
    fn encode(&self, value: &V) -> Option<Bytes>;
    /// The value of `bytes`, or `None` when they are not a valid encoding.
    fn decode(&self, bytes: &Bytes) -> Option<V>;
}

/// The identity codec for byte-like values (`Bytes`, `Vec<u8>`, `String`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

impl Codec<Bytes> for BytesCodec {
    fn encode(&self, value: &Bytes) -> Option<Bytes> {
        Some(value.clone())
    }
    fn decode(&self, bytes: &Bytes) -> Option<Bytes> {
        Some(bytes.clone())
    }
}

impl Codec<Vec<u8>> for BytesCodec {
    fn encode(&self, value: &Vec<u8>) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(value))
    }
    fn decode(&self, bytes: &Bytes) -> Option<Vec<u8>> {
        Some(bytes.to_vec())
    }
}

impl Codec<String> for BytesCodec {
    fn encode(&self, value: &String) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(value.as_bytes()))
    }
    fn decode(&self, bytes: &Bytes) -> Option<String> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// A codec from two functions.
///
/// ```
/// use bytes::Bytes;
/// use cache_layer::codec::{Codec, FnCodec};
///
/// let c = FnCodec::new(
///     |v: &u64| Some(Bytes::copy_from_slice(&v.to_le_bytes())),
///     |b: &Bytes| Some(u64::from_le_bytes(b.as_ref().try_into().ok()?)),
/// );
/// assert_eq!(c.decode(&c.encode(&7).unwrap()), Some(7));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FnCodec<E, D> {
    encode: E,
    decode: D,
}

impl<E, D> FnCodec<E, D> {
    /// A codec encoding with `encode` and decoding with `decode`.
    pub fn new(encode: E, decode: D) -> Self {
        Self { encode, decode }
    }
}

impl<V, E, D> Codec<V> for FnCodec<E, D>
where
    E: Fn(&V) -> Option<Bytes> + Send + Sync + 'static,
    D: Fn(&Bytes) -> Option<V> + Send + Sync + 'static,
{
    fn encode(&self, value: &V) -> Option<Bytes> {
        (self.encode)(value)
    }
    fn decode(&self, bytes: &Bytes) -> Option<V> {
        (self.decode)(bytes)
    }
}
