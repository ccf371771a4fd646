//! Small byte-slice helpers shared by the format codecs.

/// Largest slice [`all_zero`] checks; every block of these formats is at most this long.
const MAX_ZERO_CHECK: usize = 8192;

/// Compared against (a `memcmp`) to check that unused bytes are zero.
static ZEROS: [u8; MAX_ZERO_CHECK] = [0; MAX_ZERO_CHECK];

/// Whether `bytes` are all zero. A `memcmp`, fast in any build. Slices longer than 8 KiB are checked in
/// 8 KiB steps.
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(MAX_ZERO_CHECK)
        .all(|chunk| chunk == &ZEROS[..chunk.len()])
}

/// The `N` bytes of `bytes` at `offset`. The caller has checked that they are in bounds.
pub(crate) fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_check() {
        assert!(all_zero(&[]));
        assert!(all_zero(&[0; 20_000]));
        let mut v = vec![0u8; 20_000];
        v[19_999] = 1;
        assert!(!all_zero(&v));
        assert!(!all_zero(&[1]));
    }

    #[test]
    fn arrays() {
        assert_eq!(array_at::<2>(&[1, 2, 3, 4], 1), [2, 3]);
    }
}
