//! Keys and LSNs as stored in layer files.
//!
//! A [`Key`] is 16 opaque bytes ordered as an unsigned big-endian integer, which is the same as the
//! byte-wise (lexicographic) order, so B-tree pages can compare serialized keys with `memcmp`.
//! An [`Lsn`] is a `u64` log sequence number, serialized big-endian for the same reason.
//!
//! Index keys:
//!
//! ```text
//! image index key (16 bytes):   [ key: 16 bytes ]
//! delta index key (24 bytes):   [ key: 16 bytes ][ lsn: u64 BE ]
//! ```
//!
//! Sorting delta index keys byte-wise sorts by key, then by LSN.

use std::fmt;

use crate::format::error::FormatError;

/// Serialized size of a [`Key`].
pub const KEY_SIZE: usize = 16;
/// Serialized size of an [`Lsn`].
pub const LSN_SIZE: usize = 8;
/// Key length of the image layer index: the key alone.
pub const IMAGE_INDEX_KEY_SIZE: usize = KEY_SIZE;
/// Key length of the delta layer index: the key, then the LSN.
pub const DELTA_INDEX_KEY_SIZE: usize = KEY_SIZE + LSN_SIZE;

/// A 16-byte key, ordered as big-endian bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Key([u8; KEY_SIZE]);

impl Key {
    /// The smallest key (all zero bytes).
    pub const MIN: Key = Key([0; KEY_SIZE]);
    /// The largest key (all `0xff` bytes).
    pub const MAX: Key = Key([0xff; KEY_SIZE]);

    /// The key whose big-endian bytes are `v`.
    pub const fn from_u128(v: u128) -> Key {
        Key(v.to_be_bytes())
    }

    /// The key as a big-endian integer.
    pub const fn to_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// The key with these serialized bytes.
    pub const fn from_bytes(bytes: [u8; KEY_SIZE]) -> Key {
        Key(bytes)
    }

    /// Reads a key from the first [`KEY_SIZE`] bytes of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Result<Key, FormatError> {
        match bytes.get(..KEY_SIZE) {
            Some(b) => {
                let mut out = [0; KEY_SIZE];
                out.copy_from_slice(b);
                Ok(Key(out))
            }
            None => Err(FormatError::Truncated {
                what: "key",
                needed: KEY_SIZE,
                available: bytes.len(),
            }),
        }
    }

    /// The serialized bytes.
    pub const fn to_bytes(self) -> [u8; KEY_SIZE] {
        self.0
    }

    /// The serialized bytes, borrowed.
    pub const fn as_bytes(&self) -> &[u8; KEY_SIZE] {
        &self.0
    }

    /// The key right after this one, or `None` for [`Key::MAX`].
    pub const fn checked_next(self) -> Option<Key> {
        match self.to_u128().checked_add(1) {
            Some(v) => Some(Key::from_u128(v)),
            None => None,
        }
    }

    /// The key right after this one.
    ///
    /// # Panics
    ///
    /// On [`Key::MAX`], which has no successor (like integer overflow); use [`Key::checked_next`] where
    /// `MAX` can occur.
    pub const fn next(self) -> Key {
        match self.checked_next() {
            Some(k) => k,
            None => panic!("Key::MAX has no next key"),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:032x})", self.to_u128())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.to_u128())
    }
}

/// A log sequence number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The smallest LSN.
    pub const MIN: Lsn = Lsn(0);
    /// The largest LSN.
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// Big-endian serialization.
    pub const fn to_be_bytes(self) -> [u8; LSN_SIZE] {
        self.0.to_be_bytes()
    }

    /// Inverse of [`Lsn::to_be_bytes`].
    pub const fn from_be_bytes(bytes: [u8; LSN_SIZE]) -> Lsn {
        Lsn(u64::from_be_bytes(bytes))
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

/// Displayed as PostgreSQL does: the high and low 32 bits in hex, `16/B374D848`.
impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// The 16-byte image index key of `key`.
pub const fn image_index_key(key: Key) -> [u8; IMAGE_INDEX_KEY_SIZE] {
    key.0
}

/// The 24-byte delta index key of `(key, lsn)`: the key, then the LSN big-endian.
pub fn delta_index_key(key: Key, lsn: Lsn) -> [u8; DELTA_INDEX_KEY_SIZE] {
    let mut out = [0; DELTA_INDEX_KEY_SIZE];
    out[..KEY_SIZE].copy_from_slice(&key.0);
    out[KEY_SIZE..].copy_from_slice(&lsn.to_be_bytes());
    out
}

/// Splits a 24-byte delta index key into its key and LSN.
pub fn parse_delta_index_key(bytes: &[u8]) -> Result<(Key, Lsn), FormatError> {
    if bytes.len() < DELTA_INDEX_KEY_SIZE {
        return Err(FormatError::Truncated {
            what: "delta index key",
            needed: DELTA_INDEX_KEY_SIZE,
            available: bytes.len(),
        });
    }
    let key = Key::from_slice(bytes)?;
    let mut lsn = [0; LSN_SIZE];
    lsn.copy_from_slice(&bytes[KEY_SIZE..DELTA_INDEX_KEY_SIZE]);
    Ok((key, Lsn::from_be_bytes(lsn)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u128_round_trip_and_order() {
        for v in [
            0u128,
            1,
            255,
            256,
            u64::MAX as u128,
            u128::MAX - 1,
            u128::MAX,
        ] {
            assert_eq!(Key::from_u128(v).to_u128(), v);
        }
        // Byte order equals numeric order.
        let vals = [0u128, 1, 0xff, 0x100, 1 << 64, (1 << 64) + 1, u128::MAX];
        for w in vals.windows(2) {
            let (a, b) = (Key::from_u128(w[0]), Key::from_u128(w[1]));
            assert!(a < b);
            assert!(a.as_bytes() < b.as_bytes());
        }
        assert_eq!(Key::from_u128(0), Key::MIN);
        assert_eq!(Key::from_u128(u128::MAX), Key::MAX);
        assert_eq!(Key::from_u128(0x0102).to_bytes()[14..], [1, 2]);
    }

    #[test]
    fn next_key() {
        assert_eq!(Key::MIN.next(), Key::from_u128(1));
        assert_eq!(Key::from_u128(0xff).next(), Key::from_u128(0x100));
        assert_eq!(Key::MAX.checked_next(), None);
    }

    #[test]
    #[should_panic(expected = "no next key")]
    fn next_of_max_panics() {
        let _ = Key::MAX.next();
    }

    #[test]
    fn delta_index_key_round_trip_and_order() {
        let k = Key::from_u128(42);
        let a = delta_index_key(k, Lsn(7));
        let b = delta_index_key(k, Lsn(0x100));
        let c = delta_index_key(k.next(), Lsn(0));
        assert!(a < b && b < c);
        assert_eq!(parse_delta_index_key(&b).unwrap(), (k, Lsn(0x100)));
        assert!(matches!(
            parse_delta_index_key(&b[..23]),
            Err(FormatError::Truncated {
                needed: 24,
                available: 23,
                ..
            })
        ));
        assert!(matches!(
            Key::from_slice(&[0; 15]),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn lsn_display() {
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn::from_be_bytes(Lsn(5).to_be_bytes()), Lsn(5));
    }
}
