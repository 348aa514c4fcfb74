//! [`ResponseCodec`]: buffered responses as bytes, for L2.

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::{CachedBody, CachedResponse};
use crate::codec::Codec;

/// Encodes buffered responses for L2: status, headers, body. Streamed bodies (over the
/// cap) are never stored, so never encoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseCodec;

impl Codec<CachedResponse> for ResponseCodec {
    fn encode(&self, resp: &CachedResponse) -> Option<Bytes> {
        let body = resp.body().bytes()?;
        let mut out = BytesMut::with_capacity(body.len() + 256);
        out.extend_from_slice(&resp.status().as_u16().to_le_bytes());
        let n = u16::try_from(resp.headers().len()).ok()?;
        out.extend_from_slice(&n.to_le_bytes());
        for (name, value) in resp.headers() {
            for part in [name.as_str().as_bytes(), value.as_bytes()] {
                out.extend_from_slice(&u16::try_from(part.len()).ok()?.to_le_bytes());
                out.extend_from_slice(part);
            }
        }
        out.extend_from_slice(body);
        Some(out.freeze())
    }

    fn decode(&self, bytes: &Bytes) -> Option<CachedResponse> {
        fn take(b: &mut Bytes, n: usize) -> Option<Bytes> {
            (b.len() >= n).then(|| b.split_to(n))
        }
        fn u16_of(b: &mut Bytes) -> Option<u16> {
            let raw = take(b, 2)?;
            Some(u16::from_le_bytes([raw[0], raw[1]]))
        }
        let mut b = bytes.clone();
        let status = StatusCode::from_u16(u16_of(&mut b)?).ok()?;
        let n = u16_of(&mut b)?;
        let mut resp = Response::new(CachedBody::full(Bytes::new()));
        *resp.status_mut() = status;
        for _ in 0..n {
            let len = usize::from(u16_of(&mut b)?);
            let name = HeaderName::from_bytes(&take(&mut b, len)?).ok()?;
            let len = usize::from(u16_of(&mut b)?);
            let value = HeaderValue::from_maybe_shared(take(&mut b, len)?).ok()?;
            resp.headers_mut().append(name, value);
        }
        *resp.body_mut() = CachedBody::full(b);
        Some(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::policy::tests::resp;

    #[test]
    fn response_codec_round_trips_and_rejects_garbage() {
        let r = resp(
            203,
            &[("cache-control", "max-age=5"), ("x-a", "1"), ("x-a", "2")],
        );
        let bytes = ResponseCodec.encode(&r).unwrap();
        let back = ResponseCodec.decode(&bytes).unwrap();
        assert_eq!(back.status(), 203);
        assert_eq!(back.headers(), r.headers());
        assert_eq!(back.body().bytes().unwrap(), "x");
        for cut in 0..bytes.len() {
            let _ = ResponseCodec.decode(&bytes.slice(..cut));
        }
        assert!(
            ResponseCodec
                .decode(&Bytes::from_static(b"\xff\xff"))
                .is_none()
        );
    }
}
