//! Vectors: normalization, cosine similarity and the threshold rule.
//!
//! Pure: no I/O, no async. Every vector the cache holds is normalized to unit length once,
//! when it is embedded, so that the cosine similarity of two vectors is their dot product.

/// Tolerance of the threshold comparison.
///
/// A vector normalized in `f32` has a length within a few ULPs of 1, so the dot product of
/// two vectors whose true cosine is exactly the threshold may come out a few ULPs below it.
/// A similarity counts as meeting the threshold when it is at least
/// `threshold - SIMILARITY_EPSILON`: 1e-6 absorbs that rounding and is far below any
/// threshold step a user would set (0.9499 against 0.95 differ by 1e-4).
pub const SIMILARITY_EPSILON: f32 = 1e-6;

/// Why a vector cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    /// It has no components.
    #[error("embedding vector is empty")]
    Empty,
    /// A component is NaN or infinite.
    #[error("embedding vector holds a NaN or infinite component")]
    NonFinite,
    /// Its length is zero: it has no direction.
    #[error("embedding vector has zero length")]
    Zero,
    /// Its dimension differs from the vectors already indexed.
    #[error("embedding vector has {got} dimensions, the index holds {expected}")]
    DimensionMismatch {
        /// Dimension of the index.
        expected: usize,
        /// Dimension of the vector.
        got: usize,
    },
}

/// Scales `v` to unit length in place.
pub fn normalize(v: &mut [f32]) -> Result<(), VectorError> {
    if v.is_empty() {
        return Err(VectorError::Empty);
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(VectorError::NonFinite);
    }
    // Summed in f64: a 4,096-dimension vector of large components overflows an f32 sum.
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(VectorError::Zero);
    }
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    Ok(())
}

/// The dot product of `a` and `b` (their cosine similarity when both are normalized).
///
/// Eight independent accumulators let the compiler vectorize the loop without
/// `-ffast-math`-style reassociation. Extra components of the longer slice are ignored.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for i in 0..chunks {
        let (x, y) = (&a[i * 8..i * 8 + 8], &b[i * 8..i * 8 + 8]);
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut tail = 0.0f32;
    for i in chunks * 8..n {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// Whether `similarity` meets `threshold` (within [`SIMILARITY_EPSILON`]).
#[inline]
pub fn meets(similarity: f32, threshold: f32) -> bool {
    similarity >= threshold - SIMILARITY_EPSILON
}

/// `v` scaled to unit length (tests only; panics on a zero vector).
#[cfg(test)]
pub(crate) fn unit(v: &[f32]) -> Vec<f32> {
    let mut v = v.to_vec();
    normalize(&mut v).expect("a non-zero vector");
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_vectors_are_refused() {
        assert_eq!(normalize(&mut []), Err(VectorError::Empty));
        assert_eq!(normalize(&mut [0.0, 0.0]), Err(VectorError::Zero));
        assert_eq!(normalize(&mut [1.0, f32::NAN]), Err(VectorError::NonFinite));
        assert_eq!(
            normalize(&mut [f32::INFINITY, 1.0]),
            Err(VectorError::NonFinite)
        );
        let mut big = vec![f32::MAX; 64];
        normalize(&mut big).expect("large but finite components normalize");
        assert!((dot(&big, &big) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn threshold_edges() {
        assert!(meets(0.95, 0.95));
        assert!(meets(0.95 - 1e-7, 0.95), "rounding below the threshold");
        assert!(!meets(0.9499, 0.95));
    }

    fn vector(dim: usize) -> impl Strategy<Value = Vec<f32>> {
        proptest::collection::vec(-100.0f32..100.0, dim)
            .prop_filter("non-zero", |v| v.iter().any(|x| x.abs() > 1e-3))
    }

    proptest! {
        /// A normalized vector has unit length and keeps its direction.
        #[test]
        fn normalized_has_unit_length(mut v in vector(37)) {
            let before = v.clone();
            normalize(&mut v).unwrap();
            prop_assert!((dot(&v, &v) - 1.0).abs() < 1e-5);
            let raw = dot(&before, &v);
            prop_assert!(raw > 0.0, "same direction");
        }

        /// Cosine similarity is symmetric, bounded by 1 and is 1 for a vector and itself.
        #[test]
        fn cosine_is_symmetric_and_bounded(mut a in vector(19), mut b in vector(19)) {
            normalize(&mut a).unwrap();
            normalize(&mut b).unwrap();
            let (ab, ba) = (dot(&a, &b), dot(&b, &a));
            prop_assert!((ab - ba).abs() < 1e-6);
            prop_assert!((-1.0 - 1e-5..=1.0 + 1e-5).contains(&ab));
            prop_assert!(meets(dot(&a, &a), 1.0));
        }

        /// The unrolled dot product equals the naive sum (to rounding).
        #[test]
        fn dot_matches_naive(a in proptest::collection::vec(-1.0f32..1.0, 0..70),
                             b in proptest::collection::vec(-1.0f32..1.0, 0..70)) {
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            prop_assert!((dot(&a, &b) - naive).abs() < 1e-4);
        }
    }
}
