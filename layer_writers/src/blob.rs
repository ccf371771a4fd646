//! Blob encoding: a length header, the blob's bytes (optionally zstd-compressed), and a CRC32C trailer.
//!
//! ```text
//! short header (1 byte), stored length < 128, uncompressed only:
//!
//!     bit  7 6 5 4 3 2 1 0
//!         +-+-------------+
//!         |0|   length    |                      then `length` payload bytes, then the CRC
//!         +-+-------------+
//!
//! long header (4 bytes, one u32 big-endian):
//!
//!     bit  31  30..28        27..0
//!         +---+-----------+--------------------+
//!         | 1 |compression|   stored length    |  then `stored length` payload bytes, then the CRC
//!         +---+-----------+--------------------+
//!     compression: 0 = none, 1 = zstd, 2..=7 reserved (an error when read)
//!
//! a whole blob:
//!
//!     offset            size            field
//!     0                 h (1 or 4)      header
//!     h                 stored length   payload (compressed bytes if compression = zstd)
//!     h + stored length CRC_LEN (4)     crc32c, u32 BE, of bytes [0, h + stored length): header and payload
//! ```
//!
//! The stored length is the payload size on disk (after compression), at most [`MAX_BLOB_LEN`]
//! (256 MiB - 1), so a blob occupies at most [`MAX_BLOB_EXTENT`] bytes of the file. A compressed blob
//! always uses the long header, whatever its length; an uncompressed blob uses the short header when it
//! fits. The decoder accepts a long header for any length.
//!
//! # Why one CRC per blob
//!
//! A checksum per blob, rather than per fixed-size chunk of the values region, because a blob is the unit
//! every read fetches and returns: a point read checks exactly the bytes it returns, with no read of
//! neighbouring bytes to complete a chunk and no chunk boundaries to align merged reads to. It costs 4
//! bytes per value, computed in the same pass that writes the value (no extra copy), and the CRC covers the
//! header too, so a flipped length or compression bit is caught before the header is believed (a flipped
//! compression bit would otherwise hand back the compressed bytes as the value). CRC32C detects every
//! single-bit and every burst error of up to 32 bits in a blob of any length this format allows.
//!
//! [`encode_blob`] compresses (zstd level 1) only when asked and only when that makes the whole encoded
//! blob smaller. [`decode_blob`] checks the CRC first, then bounds the decompressed size, so a corrupt
//! header or zstd frame cannot make it allocate more than the limit: the output grows as real data is
//! decompressed, never from a size field.

use std::io::Read;

use crate::FormatError;

/// Largest stored (on-disk) payload length a header can describe: 2^28 - 1 bytes.
pub const MAX_BLOB_LEN: usize = (1 << 28) - 1;
/// Largest uncompressed value [`encode_blob`] accepts and the default decompression limit of
/// [`decode_blob`].
pub const MAX_VALUE_LEN: usize = MAX_BLOB_LEN;
/// Largest header size.
pub const MAX_HEADER_LEN: usize = 4;
/// Size of the CRC32C trailer of every blob.
pub const CRC_LEN: usize = 4;
/// Smallest blob: a 1-byte header, no payload, the CRC.
pub const MIN_BLOB_EXTENT: usize = 1 + CRC_LEN;
/// Largest blob a file can hold: the long header, [`MAX_BLOB_LEN`] payload bytes and the CRC. No read of
/// one blob needs more bytes than this, whatever a file claims.
pub const MAX_BLOB_EXTENT: usize = MAX_HEADER_LEN + MAX_BLOB_LEN + CRC_LEN;
/// zstd level used by [`encode_blob`].
pub const ZSTD_LEVEL: i32 = 1;

const LONG_FLAG: u8 = 0x80;
const SHORT_MAX: usize = 0x7f;
const COMPRESSION_SHIFT: u32 = 28;
const COMPRESSION_MASK: u32 = 0b111;
const LEN_MASK: u32 = (1 << COMPRESSION_SHIFT) - 1;

/// How a blob's payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Compression {
    /// The payload is the value.
    None = 0,
    /// The payload is one or more zstd frames that decompress to the value.
    Zstd = 1,
}

impl Compression {
    fn from_code(code: u8) -> Result<Compression, FormatError> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            code => Err(FormatError::UnknownCompression { code }),
        }
    }
}

/// A decoded blob header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    /// Size of the header itself: 1 or 4.
    pub header_len: usize,
    /// Size of the payload that follows the header.
    pub payload_len: usize,
    /// How the payload is stored.
    pub compression: Compression,
}

impl BlobHeader {
    /// Header plus payload: the bytes the CRC covers.
    pub fn checked_len(&self) -> usize {
        self.header_len + self.payload_len
    }

    /// Header, payload and CRC: the distance to the next blob.
    pub fn total_len(&self) -> usize {
        self.checked_len() + CRC_LEN
    }
}

/// The CRC32C a blob with `header` and stored `payload` carries in its trailer.
pub fn blob_crc(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header), payload)
}

/// An encoded blob header: up to [`MAX_HEADER_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl EncodedHeader {
    /// The header bytes to write before the payload.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Encodes the header of a blob whose stored payload is `payload_len` bytes.
///
/// Uses the 1-byte form for uncompressed payloads shorter than 128 bytes, else the 4-byte form.
/// Fails with [`FormatError::TooLarge`] above [`MAX_BLOB_LEN`].
pub fn encode_header(
    payload_len: usize,
    compression: Compression,
) -> Result<EncodedHeader, FormatError> {
    if payload_len > MAX_BLOB_LEN {
        return Err(FormatError::TooLarge {
            len: payload_len as u64,
            max: MAX_BLOB_LEN as u64,
        });
    }
    if compression == Compression::None && payload_len <= SHORT_MAX {
        return Ok(EncodedHeader {
            // Fits in 7 bits: checked just above.
            bytes: [payload_len as u8, 0, 0, 0],
            len: 1,
        });
    }
    // Fits in 28 bits: checked above.
    let word = (u32::from(LONG_FLAG) << 24)
        | ((compression as u32) << COMPRESSION_SHIFT)
        | payload_len as u32;
    Ok(EncodedHeader {
        bytes: word.to_be_bytes(),
        len: 4,
    })
}

/// Decodes the blob header at the start of `buf`. Only the header bytes need to be present.
pub fn decode_header(buf: &[u8]) -> Result<BlobHeader, FormatError> {
    let truncated = |needed| FormatError::Truncated {
        what: "blob header",
        needed,
        available: buf.len(),
    };
    let first = *buf.first().ok_or_else(|| truncated(1))?;
    if first & LONG_FLAG == 0 {
        return Ok(BlobHeader {
            header_len: 1,
            payload_len: usize::from(first),
            compression: Compression::None,
        });
    }
    let bytes: [u8; 4] = buf
        .get(..4)
        .ok_or_else(|| truncated(4))?
        .try_into()
        .map_err(|_| truncated(4))?;
    let word = u32::from_be_bytes(bytes);
    // Masked to 3 bits.
    let code = ((word >> COMPRESSION_SHIFT) & COMPRESSION_MASK) as u8;
    Ok(BlobHeader {
        header_len: 4,
        payload_len: (word & LEN_MASK) as usize,
        compression: Compression::from_code(code)?,
    })
}

/// Encodes `value` as a blob (header and payload).
///
/// With `compress`, the value is zstd-compressed at level [`ZSTD_LEVEL`] and the compressed form is kept
/// only if the whole encoded blob gets smaller. Fails with [`FormatError::TooLarge`] if `value` is longer
/// than [`MAX_VALUE_LEN`].
pub fn encode_blob(value: &[u8], compress: bool) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    encode_blob_into(value, compress, &mut out)?;
    Ok(out)
}

/// Like [`encode_blob`], appending to `out`. Returns the number of bytes appended. On error `out` is
/// unchanged.
pub fn encode_blob_into(
    value: &[u8],
    compress: bool,
    out: &mut Vec<u8>,
) -> Result<usize, FormatError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(FormatError::TooLarge {
            len: value.len() as u64,
            max: MAX_VALUE_LEN as u64,
        });
    }
    let raw_header = encode_header(value.len(), Compression::None)?;
    let raw_total = raw_header.as_slice().len() + value.len() + CRC_LEN;
    if compress {
        // zstd only fails here on allocation failure or an invalid level; store the value raw then.
        if let Ok(compressed) = zstd::bulk::compress(value, ZSTD_LEVEL) {
            if let Ok(header) = encode_header(compressed.len(), Compression::Zstd) {
                let total = header.as_slice().len() + compressed.len() + CRC_LEN;
                if total < raw_total {
                    out.extend_from_slice(header.as_slice());
                    out.extend_from_slice(&compressed);
                    let crc = blob_crc(header.as_slice(), &compressed);
                    out.extend_from_slice(&crc.to_be_bytes());
                    return Ok(total);
                }
            }
        }
    }
    out.extend_from_slice(raw_header.as_slice());
    out.extend_from_slice(value);
    out.extend_from_slice(&blob_crc(raw_header.as_slice(), value).to_be_bytes());
    Ok(raw_total)
}

/// A blob whose CRC matched: its header and its stored payload, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedBlob<'a> {
    /// The decoded header: its own length, the payload length, the compression.
    pub header: BlobHeader,
    /// The stored bytes (compressed if `header.compression` says so).
    pub payload: &'a [u8],
}

/// Checks the blob at the start of `bytes` (bytes after it are ignored): its header, that all of it is
/// present, and its CRC. Nothing is copied or allocated.
pub fn check_blob(bytes: &[u8]) -> Result<CheckedBlob<'_>, FormatError> {
    let header = decode_header(bytes)?;
    let blob = bytes
        .get(..header.total_len())
        .ok_or(FormatError::Truncated {
            what: "blob",
            needed: header.total_len(),
            available: bytes.len(),
        })?;
    let (checked, trailer) = blob.split_at(header.checked_len());
    let stored = u32::from_be_bytes(crate::raw::array_at(trailer, 0));
    let computed = crc32c::crc32c(checked);
    if stored != computed {
        return Err(FormatError::BlobChecksumMismatch { stored, computed });
    }
    Ok(CheckedBlob {
        header,
        payload: &checked[header.header_len..],
    })
}

/// Decodes a checked blob's payload into its value, decompressing with at most `max_value_len` bytes out.
pub fn decode_payload(blob: CheckedBlob<'_>, max_value_len: usize) -> Result<Vec<u8>, FormatError> {
    let payload = blob.payload;
    let too_large = |len: usize| FormatError::TooLarge {
        len: len as u64,
        max: max_value_len as u64,
    };
    match blob.header.compression {
        Compression::None => {
            if payload.len() > max_value_len {
                return Err(too_large(payload.len()));
            }
            Ok(payload.to_vec())
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(payload)
                .map_err(|source| FormatError::Decompress { source })?;
            let mut out = Vec::new();
            // Read one byte past the limit to tell "exactly at the limit" from "over it".
            let limit = (max_value_len as u64).saturating_add(1);
            decoder
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|source| FormatError::Decompress { source })?;
            if out.len() > max_value_len {
                return Err(too_large(out.len()));
            }
            Ok(out)
        }
    }
}

/// Decodes the blob at the start of `bytes` (bytes after it are ignored): checks its CRC, then
/// decompresses it if needed. The value may be at most [`MAX_VALUE_LEN`] bytes.
pub fn decode_blob(bytes: &[u8]) -> Result<Vec<u8>, FormatError> {
    decode_blob_with_limit(bytes, MAX_VALUE_LEN)
}

/// Like [`decode_blob`] with a caller-chosen limit on the decoded value size; a larger value fails with
/// [`FormatError::TooLarge`] after at most `max_value_len + 1` bytes were produced.
pub fn decode_blob_with_limit(bytes: &[u8], max_value_len: usize) -> Result<Vec<u8>, FormatError> {
    decode_payload(check_blob(bytes)?, max_value_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(0, 1)]
    #[case(1, 1)]
    #[case(127, 1)]
    #[case(128, 4)]
    #[case(129, 4)]
    #[case(MAX_BLOB_LEN, 4)]
    fn header_round_trip(#[case] len: usize, #[case] expected_header_len: usize) {
        for compression in [Compression::None, Compression::Zstd] {
            let h = encode_header(len, compression).unwrap();
            let want_len = if compression == Compression::Zstd {
                4
            } else {
                expected_header_len
            };
            assert_eq!(h.as_slice().len(), want_len);
            let d = decode_header(h.as_slice()).unwrap();
            assert_eq!(
                d,
                BlobHeader {
                    header_len: want_len,
                    payload_len: len,
                    compression
                }
            );
        }
    }

    #[test]
    fn header_bytes_are_as_documented() {
        assert_eq!(encode_header(5, Compression::None).unwrap().as_slice(), [5]);
        assert_eq!(
            encode_header(0x0123_4567, Compression::None)
                .unwrap()
                .as_slice(),
            [0x81, 0x23, 0x45, 0x67]
        );
        assert_eq!(
            encode_header(0x0123_4567, Compression::Zstd)
                .unwrap()
                .as_slice(),
            [0x91, 0x23, 0x45, 0x67]
        );
        assert_eq!(
            encode_header(3, Compression::Zstd).unwrap().as_slice(),
            [0x90, 0, 0, 3]
        );
    }

    #[test]
    fn too_large() {
        assert!(matches!(
            encode_header(MAX_BLOB_LEN + 1, Compression::None),
            Err(FormatError::TooLarge { len, max }) if len == 1 << 28 && max == MAX_BLOB_LEN as u64
        ));
        let big = vec![0u8; MAX_VALUE_LEN + 1];
        assert!(matches!(
            encode_blob(&big, true),
            Err(FormatError::TooLarge { .. })
        ));
        let blob = encode_blob(&[7; 300], false).unwrap();
        assert!(matches!(
            decode_blob_with_limit(&blob, 299),
            Err(FormatError::TooLarge { len: 300, max: 299 })
        ));
        assert_eq!(decode_blob_with_limit(&blob, 300).unwrap(), vec![7; 300]);
    }

    #[test]
    fn decompression_is_capped() {
        // 1 MiB of zeros compresses to a few bytes; a small limit must stop it without producing it all.
        let blob = encode_blob(&vec![0u8; 1 << 20], true).unwrap();
        assert!(blob.len() < 1000);
        assert!(matches!(
            decode_blob_with_limit(&blob, 4096),
            Err(FormatError::TooLarge {
                len: 4097,
                max: 4096
            })
        ));
    }

    #[test]
    fn unknown_compression() {
        for code in 2u8..8 {
            let b = [0x80 | (code << 4), 0, 0, 1, 0];
            assert!(
                matches!(decode_header(&b), Err(FormatError::UnknownCompression { code: c }) if c == code)
            );
        }
    }

    #[test]
    fn truncated_inputs() {
        assert!(matches!(
            decode_header(&[]),
            Err(FormatError::Truncated {
                needed: 1,
                available: 0,
                ..
            })
        ));
        for n in 1..4 {
            assert!(matches!(
                decode_header(&[0x80, 0, 1, 0][..n]),
                Err(FormatError::Truncated { needed: 4, available, .. }) if available == n
            ));
        }
        for (value, compress) in [
            (vec![1u8; 10], false),
            (vec![2u8; 1000], false),
            (vec![0u8; 1000], true),
        ] {
            let blob = encode_blob(&value, compress).unwrap();
            for cut in 0..blob.len() {
                assert!(
                    matches!(
                        decode_blob(&blob[..cut]),
                        Err(FormatError::Truncated { .. })
                    ),
                    "cut at {cut} of {}",
                    blob.len()
                );
            }
            assert_eq!(decode_blob(&blob).unwrap(), value);
        }
    }

    #[test]
    fn compression_only_when_smaller() {
        // Compressible: compressed, long header with the zstd code.
        let zeros = vec![0u8; 10_000];
        let blob = encode_blob(&zeros, true).unwrap();
        assert!(blob.len() < 100);
        assert_eq!(decode_header(&blob).unwrap().compression, Compression::Zstd);
        assert_eq!(decode_blob(&blob).unwrap(), zeros);

        // Not asked: stored raw.
        let blob = encode_blob(&zeros, false).unwrap();
        assert_eq!(blob.len(), 4 + zeros.len() + CRC_LEN);
        assert_eq!(decode_header(&blob).unwrap().compression, Compression::None);

        // Incompressible (random) and tiny values: stored raw even when asked.
        let mut random = vec![0u8; 4096];
        rand::Rng::fill(&mut rand::rng(), &mut random[..]);
        for value in [&random[..], b"", b"a", b"abcabc"] {
            let blob = encode_blob(value, true).unwrap();
            let h = decode_header(&blob).unwrap();
            assert_eq!(h.compression, Compression::None, "len {}", value.len());
            assert_eq!(blob.len(), h.header_len + value.len() + CRC_LEN);
            assert_eq!(decode_blob(&blob).unwrap(), value);
        }
    }

    #[test]
    fn trailing_bytes_are_ignored_and_blobs_chain() {
        let values: Vec<Vec<u8>> = vec![
            vec![],
            vec![1; 127],
            vec![2; 128],
            vec![0; 5000],
            b"xyz".to_vec(),
        ];
        let mut file = Vec::new();
        for (i, v) in values.iter().enumerate() {
            encode_blob_into(v, i % 2 == 1, &mut file).unwrap();
        }
        let mut pos = 0;
        for v in &values {
            let h = decode_header(&file[pos..]).unwrap();
            assert_eq!(&decode_blob(&file[pos..]).unwrap(), v);
            pos += h.total_len();
        }
        assert_eq!(pos, file.len());
    }

    #[test]
    fn corrupt_zstd_payload_is_an_error() {
        let mut blob = encode_blob(&vec![3u8; 5000], true).unwrap();
        assert_eq!(decode_header(&blob).unwrap().compression, Compression::Zstd);
        // Destroy the zstd magic number, with a CRC that matches: the frame itself is refused.
        blob[4] ^= 0xff;
        let n = blob.len() - CRC_LEN;
        let crc = crc32c::crc32c(&blob[..n]);
        blob[n..].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_blob(&blob),
            Err(FormatError::Decompress { .. })
        ));
    }

    #[test]
    fn crc_trailer_is_as_documented() {
        let blob = encode_blob(b"hello, world", false).unwrap();
        assert_eq!(blob.len(), 1 + 12 + CRC_LEN);
        assert_eq!(blob[0], 12);
        assert_eq!(&blob[1..13], b"hello, world");
        assert_eq!(blob[13..], crc32c::crc32c(&blob[..13]).to_be_bytes());
        let checked = check_blob(&blob).unwrap();
        assert_eq!(checked.payload, b"hello, world");
        assert_eq!(checked.header.total_len(), blob.len());
    }

    #[test]
    fn every_bit_flip_in_a_blob_is_detected() {
        for (value, compress) in [
            (b"hello, world".to_vec(), false),
            (vec![9u8; 300], false),
            (vec![5u8; 3000], true),
        ] {
            let good = encode_blob(&value, compress).unwrap();
            for bit in 0..good.len() * 8 {
                let mut b = good.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                // Never the value: a checksum mismatch, or (a length flip) a header or truncation error.
                match decode_blob(&b) {
                    Ok(v) => panic!("bit {bit}: decoded {} bytes", v.len()),
                    Err(
                        FormatError::BlobChecksumMismatch { .. }
                        | FormatError::Truncated { .. }
                        | FormatError::UnknownCompression { .. },
                    ) => {}
                    Err(e) => panic!("bit {bit}: unexpected {e:?}"),
                }
            }
        }
    }

    #[test]
    fn compression_bit_flip_is_a_checksum_mismatch() {
        // The flip that used to hand back the compressed bytes as the value.
        let mut blob = encode_blob(&vec![7u8; 5000], true).unwrap();
        assert_eq!(decode_header(&blob).unwrap().compression, Compression::Zstd);
        blob[0] ^= 0x10; // compression 1 -> 0
        assert_eq!(decode_header(&blob).unwrap().compression, Compression::None);
        assert!(matches!(
            decode_blob(&blob),
            Err(FormatError::BlobChecksumMismatch { .. })
        ));
    }
}
