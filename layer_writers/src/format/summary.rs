//! The summary block: the first 8 KiB of a layer file, written last, describing the rest.
//!
//! ```text
//! offset  size  field
//!      0     4  magic              b"LWSM"
//!      4     2  format_version     u16 BE, FORMAT_VERSION
//!      6     1  kind               1 = delta, 2 = image
//!      7     1  reserved           0
//!      8    16  key_range.start    Key (big-endian bytes), inclusive
//!     24    16  key_range.end      Key, exclusive
//!     40     8  lsn_range.start    u64 BE, inclusive
//!     48     8  lsn_range.end      u64 BE, exclusive
//!     56     8  values_end         u64 BE, file offset just past the last blob (values start at 8192)
//!     64     4  index_start_page   u32 BE, first index page: values_end rounded up to a page, / 8192
//!     68     4  index_root         u32 BE, root page number, relative to index_start_page
//!     72     4  index_page_count   u32 BE, number of index pages
//!     76     4  crc32c             u32 BE, CRC32C of bytes [0, 76)
//!     80  8112  zero
//! ```
//!
//! Decoding checks, in order: size, magic, version (so a future version may move everything after it),
//! checksum, then that the fields are consistent. The zero tail is checked too, so every byte of the block
//! is covered by some check.
//!
//! Format versions: 1 had no checksum on values; 2 (this one) ends every blob with a CRC32C (see
//! [`crate::format::blob`]) and requires the index to start at the first page boundary after the values. A file of
//! any other version is refused with [`FormatError::UnsupportedVersion`].

use std::ops::Range;

use crate::format::btree::page::PAGE_SIZE;
use crate::format::error::FormatError;
use crate::format::key::{
    Key, Lsn, DELTA_INDEX_KEY_SIZE, IMAGE_INDEX_KEY_SIZE, KEY_SIZE, LSN_SIZE,
};
use crate::format::raw::{all_zero, array_at};

/// Size of the summary block, and the offset where the values start.
pub const SUMMARY_SIZE: usize = PAGE_SIZE;
/// Magic at offset 0 of every layer file.
pub const SUMMARY_MAGIC: [u8; 4] = *b"LWSM";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 2;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + SUMMARY_MAGIC.len();
const KIND_OFFSET: usize = VERSION_OFFSET + 2;
const RESERVED_OFFSET: usize = KIND_OFFSET + 1;
const KEY_START_OFFSET: usize = RESERVED_OFFSET + 1;
const KEY_END_OFFSET: usize = KEY_START_OFFSET + KEY_SIZE;
const LSN_START_OFFSET: usize = KEY_END_OFFSET + KEY_SIZE;
const LSN_END_OFFSET: usize = LSN_START_OFFSET + LSN_SIZE;
const VALUES_END_OFFSET: usize = LSN_END_OFFSET + LSN_SIZE;
const INDEX_START_OFFSET: usize = VALUES_END_OFFSET + 8;
const INDEX_ROOT_OFFSET: usize = INDEX_START_OFFSET + 4;
const INDEX_PAGES_OFFSET: usize = INDEX_ROOT_OFFSET + 4;
const CRC_OFFSET: usize = INDEX_PAGES_OFFSET + 4;
/// End of the summary fields; the rest of the block is zero.
pub const SUMMARY_FIELDS_END: usize = CRC_OFFSET + 4;

/// Which kind of layer a file holds; decides the index key length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LayerKind {
    /// `(key, lsn) -> value` records; index keys are [`DELTA_INDEX_KEY_SIZE`] bytes.
    Delta = 1,
    /// `key -> image` at one LSN; index keys are [`IMAGE_INDEX_KEY_SIZE`] bytes.
    Image = 2,
}

impl LayerKind {
    /// Key length of this kind's B-tree index.
    pub const fn index_key_len(self) -> usize {
        match self {
            LayerKind::Delta => DELTA_INDEX_KEY_SIZE,
            LayerKind::Image => IMAGE_INDEX_KEY_SIZE,
        }
    }

    fn from_code(code: u8) -> Option<LayerKind> {
        match code {
            1 => Some(LayerKind::Delta),
            2 => Some(LayerKind::Image),
            _ => None,
        }
    }
}

/// The decoded summary block of a layer file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Delta or image layer.
    pub kind: LayerKind,
    /// Keys in the layer, end exclusive.
    pub key_range: Range<Key>,
    /// LSNs in the layer, end exclusive.
    pub lsn_range: Range<Lsn>,
    /// File offset just past the last blob.
    pub values_end: u64,
    /// File page (8 KiB) where the index starts.
    pub index_start_page: u32,
    /// Root page of the index, relative to `index_start_page`.
    pub index_root: u32,
    /// Number of index pages.
    pub index_page_count: u32,
}

impl Summary {
    /// Byte offset of the first index page.
    pub fn index_start_offset(&self) -> u64 {
        u64::from(self.index_start_page) * PAGE_SIZE as u64
    }

    /// Byte offset just past the last index page: the expected file length.
    pub fn file_len(&self) -> u64 {
        self.index_start_offset() + u64::from(self.index_page_count) * PAGE_SIZE as u64
    }

    /// Checks that the fields are consistent: non-inverted ranges, values after the summary, the index
    /// after the values, the root inside the index.
    pub fn validate(&self) -> Result<(), FormatError> {
        let invalid = |reason: String| Err(FormatError::Invalid { reason });
        if self.key_range.start > self.key_range.end {
            return invalid(format!(
                "key range {}..{} is inverted",
                self.key_range.start, self.key_range.end
            ));
        }
        if self.lsn_range.start > self.lsn_range.end {
            return invalid(format!(
                "LSN range {}..{} is inverted",
                self.lsn_range.start, self.lsn_range.end
            ));
        }
        if self.values_end < SUMMARY_SIZE as u64 {
            return invalid(format!(
                "values end {} is inside the summary block",
                self.values_end
            ));
        }
        if self.index_start_offset() < self.values_end {
            return invalid(format!(
                "index starts at page {} (byte {}), before the values end at {}",
                self.index_start_page,
                self.index_start_offset(),
                self.values_end
            ));
        }
        if self.index_start_offset() - self.values_end >= PAGE_SIZE as u64 {
            return invalid(format!(
                "index starts at page {} (byte {}), not at the first page boundary after the values \
                 end at {}",
                self.index_start_page,
                self.index_start_offset(),
                self.values_end
            ));
        }
        if self.index_page_count == 0 {
            return invalid("index has no pages".to_string());
        }
        if self.index_root >= self.index_page_count {
            return invalid(format!(
                "index root {} is outside the index of {} pages",
                self.index_root, self.index_page_count
            ));
        }
        if u64::from(self.index_start_page) + u64::from(self.index_page_count)
            > u64::from(u32::MAX) + 1
        {
            return invalid("index extends past the last addressable page".to_string());
        }
        Ok(())
    }

    /// The 8 KiB summary block. Does not validate; writers call [`Summary::validate`] first.
    pub fn encode(&self) -> [u8; SUMMARY_SIZE] {
        let mut b = [0u8; SUMMARY_SIZE];
        b[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&SUMMARY_MAGIC);
        b[VERSION_OFFSET..KIND_OFFSET].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        b[KIND_OFFSET] = self.kind as u8;
        b[KEY_START_OFFSET..KEY_END_OFFSET].copy_from_slice(self.key_range.start.as_bytes());
        b[KEY_END_OFFSET..LSN_START_OFFSET].copy_from_slice(self.key_range.end.as_bytes());
        b[LSN_START_OFFSET..LSN_END_OFFSET].copy_from_slice(&self.lsn_range.start.to_be_bytes());
        b[LSN_END_OFFSET..VALUES_END_OFFSET].copy_from_slice(&self.lsn_range.end.to_be_bytes());
        b[VALUES_END_OFFSET..INDEX_START_OFFSET].copy_from_slice(&self.values_end.to_be_bytes());
        b[INDEX_START_OFFSET..INDEX_ROOT_OFFSET]
            .copy_from_slice(&self.index_start_page.to_be_bytes());
        b[INDEX_ROOT_OFFSET..INDEX_PAGES_OFFSET].copy_from_slice(&self.index_root.to_be_bytes());
        b[INDEX_PAGES_OFFSET..CRC_OFFSET].copy_from_slice(&self.index_page_count.to_be_bytes());
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..SUMMARY_FIELDS_END].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes and validates a summary block (the first [`SUMMARY_SIZE`] bytes of `bytes`).
    pub fn decode(bytes: &[u8]) -> Result<Summary, FormatError> {
        let b = bytes.get(..SUMMARY_SIZE).ok_or(FormatError::Truncated {
            what: "layer summary",
            needed: SUMMARY_SIZE,
            available: bytes.len(),
        })?;
        if b[MAGIC_OFFSET..VERSION_OFFSET] != SUMMARY_MAGIC {
            return Err(FormatError::BadMagic {
                found: u32::from_be_bytes(array_at(b, MAGIC_OFFSET)),
            });
        }
        let version = u16::from_be_bytes(array_at(b, VERSION_OFFSET));
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let stored = u32::from_be_bytes(array_at(b, CRC_OFFSET));
        let computed = crc32c::crc32c(&b[..CRC_OFFSET]);
        if stored != computed {
            return Err(FormatError::SummaryChecksumMismatch { stored, computed });
        }
        let invalid = |reason: String| FormatError::Invalid { reason };
        if b[RESERVED_OFFSET] != 0 {
            return Err(invalid("reserved byte is not zero".to_string()));
        }
        if !all_zero(&b[SUMMARY_FIELDS_END..]) {
            return Err(invalid(
                "non-zero bytes after the summary fields".to_string(),
            ));
        }
        let kind = LayerKind::from_code(b[KIND_OFFSET])
            .ok_or_else(|| invalid(format!("unknown layer kind {}", b[KIND_OFFSET])))?;
        let summary = Summary {
            kind,
            key_range: Key::from_bytes(array_at(b, KEY_START_OFFSET))
                ..Key::from_bytes(array_at(b, KEY_END_OFFSET)),
            lsn_range: Lsn::from_be_bytes(array_at(b, LSN_START_OFFSET))
                ..Lsn::from_be_bytes(array_at(b, LSN_END_OFFSET)),
            values_end: u64::from_be_bytes(array_at(b, VALUES_END_OFFSET)),
            index_start_page: u32::from_be_bytes(array_at(b, INDEX_START_OFFSET)),
            index_root: u32::from_be_bytes(array_at(b, INDEX_ROOT_OFFSET)),
            index_page_count: u32::from_be_bytes(array_at(b, INDEX_PAGES_OFFSET)),
        };
        summary.validate()?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        Summary {
            kind: LayerKind::Delta,
            key_range: Key::from_u128(0x1234)..Key::from_u128(0xff_ffff),
            lsn_range: Lsn(0x10)..Lsn(0x2000_0000_0000),
            values_end: 3 * 8192 + 17,
            index_start_page: 4,
            index_root: 6,
            index_page_count: 7,
        }
    }

    /// Re-encodes with a valid CRC after `edit`, so only the field checks can reject it.
    fn with_fixed_crc(
        mut b: [u8; SUMMARY_SIZE],
        edit: impl FnOnce(&mut [u8; SUMMARY_SIZE]),
    ) -> [u8; SUMMARY_SIZE] {
        edit(&mut b);
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..SUMMARY_FIELDS_END].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn round_trip() {
        for kind in [LayerKind::Delta, LayerKind::Image] {
            let s = Summary { kind, ..sample() };
            let b = s.encode();
            assert_eq!(Summary::decode(&b).unwrap(), s);
            // Longer input: only the first block counts.
            let mut longer = b.to_vec();
            longer.extend_from_slice(&[0xaa; 100]);
            assert_eq!(Summary::decode(&longer).unwrap(), s);
        }
        assert_eq!(sample().index_start_offset(), 4 * 8192);
        assert_eq!(sample().file_len(), 11 * 8192);
        assert_eq!(LayerKind::Delta.index_key_len(), 24);
        assert_eq!(LayerKind::Image.index_key_len(), 16);
    }

    #[test]
    fn layout_is_as_documented() {
        assert_eq!(SUMMARY_FIELDS_END, 80);
        let b = sample().encode();
        assert_eq!(&b[0..4], b"LWSM");
        assert_eq!(b[4..6], [0, 2]);
        assert_eq!(b[6], 1);
        assert_eq!(b[8..24], 0x1234u128.to_be_bytes());
        assert_eq!(b[40..48], 0x10u64.to_be_bytes());
        assert_eq!(b[56..64], (3u64 * 8192 + 17).to_be_bytes());
        assert_eq!(b[64..68], 4u32.to_be_bytes());
        assert_eq!(b[68..72], 6u32.to_be_bytes());
        assert_eq!(b[72..76], 7u32.to_be_bytes());
        assert_eq!(b[76..80], crc32c::crc32c(&b[..76]).to_be_bytes());
        assert!(b[80..].iter().all(|&x| x == 0));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let good = sample().encode();
        let mut b = good;
        for byte in 0..SUMMARY_SIZE {
            for bit in 0..8 {
                b[byte] ^= 1 << bit;
                let err = Summary::decode(&b).expect_err("flip must be detected");
                let expected_kind = match byte {
                    0..4 => matches!(err, FormatError::BadMagic { .. }),
                    4..6 => matches!(err, FormatError::UnsupportedVersion { .. }),
                    6..80 => matches!(err, FormatError::SummaryChecksumMismatch { .. }),
                    _ => matches!(err, FormatError::Invalid { .. }),
                };
                assert!(expected_kind, "byte {byte} bit {bit}: {err:?}");
                b[byte] ^= 1 << bit;
            }
        }
        assert_eq!(b, good);
    }

    #[test]
    fn truncated() {
        let b = sample().encode();
        for len in [0, 1, 79, 80, SUMMARY_SIZE - 1] {
            assert!(matches!(
                Summary::decode(&b[..len]),
                Err(FormatError::Truncated { needed: SUMMARY_SIZE, available, .. }) if available == len
            ));
        }
    }

    #[test]
    fn inconsistent_fields_are_invalid() {
        let cases: Vec<(&str, Summary)> = vec![
            (
                "root outside index",
                Summary {
                    index_root: 7,
                    ..sample()
                },
            ),
            (
                "no index pages",
                Summary {
                    index_page_count: 0,
                    index_root: 0,
                    ..sample()
                },
            ),
            (
                "index overlaps values",
                Summary {
                    index_start_page: 3,
                    ..sample()
                },
            ),
            (
                "gap between values and index",
                Summary {
                    index_start_page: 5,
                    ..sample()
                },
            ),
            (
                "values end in summary",
                Summary {
                    values_end: 100,
                    ..sample()
                },
            ),
            (
                "inverted keys",
                Summary {
                    key_range: Key::from_u128(5)..Key::from_u128(4),
                    ..sample()
                },
            ),
            (
                "inverted lsns",
                Summary {
                    lsn_range: Lsn(5)..Lsn(4),
                    ..sample()
                },
            ),
            (
                "index past addressable pages",
                Summary {
                    index_start_page: u32::MAX,
                    ..sample()
                },
            ),
        ];
        for (what, s) in cases {
            assert!(
                matches!(s.validate(), Err(FormatError::Invalid { .. })),
                "{what}"
            );
            assert!(
                matches!(
                    Summary::decode(&s.encode()),
                    Err(FormatError::Invalid { .. })
                ),
                "{what}"
            );
        }
        let good = sample().encode();
        for edit in [
            (|b: &mut [u8; SUMMARY_SIZE]| b[KIND_OFFSET] = 3) as fn(&mut [u8; SUMMARY_SIZE]),
            |b| b[KIND_OFFSET] = 0,
            |b| b[RESERVED_OFFSET] = 1,
        ] {
            assert!(matches!(
                Summary::decode(&with_fixed_crc(good, edit)),
                Err(FormatError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn other_versions_are_refused() {
        for version in [0u8, 1, 3, 0xff] {
            let b = with_fixed_crc(sample().encode(), |b| b[VERSION_OFFSET + 1] = version);
            let err = Summary::decode(&b).unwrap_err();
            assert!(
                matches!(err, FormatError::UnsupportedVersion { found, supported: 2 } if found == u16::from(version)),
                "{err:?}"
            );
        }
        // Version 1 (values without checksums) says what it is and what this build reads.
        let b = with_fixed_crc(sample().encode(), |b| b[VERSION_OFFSET + 1] = 1);
        assert_eq!(
            Summary::decode(&b).unwrap_err().to_string(),
            "unsupported layer format version 1 (this build reads 2)"
        );
    }
}
