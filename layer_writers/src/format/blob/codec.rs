//! Whole blobs: encoding (header, payload, CRC32C trailer), checking the CRC, decoding with a bounded
//! decompressed size.

use std::io::Read;

use super::header::{decode_header, encode_header, BlobHeader, Compression};
use super::{CRC_LEN, MAX_VALUE_LEN, MIN_BLOB_EXTENT, ZSTD_LEVEL};
use crate::format::error::FormatError;
use crate::format::raw::array_at;

/// The CRC32C a blob with `header` and stored `payload` carries in its trailer.
pub fn blob_crc(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header), payload)
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
    let checked = check_crc(blob, header.checked_len())?;
    Ok(CheckedBlob {
        header,
        payload: &checked[header.header_len..],
    })
}

/// Checks the blob that fills `bytes` exactly: first the CRC trailer (the last [`CRC_LEN`] bytes) against
/// everything before it, then that the header describes a blob of exactly `bytes.len()` bytes. Returns
/// the header and the stored payload, borrowed; nothing is allocated.
pub fn check_blob_exact(bytes: &[u8]) -> Result<CheckedBlob<'_>, FormatError> {
    if bytes.len() < MIN_BLOB_EXTENT {
        return Err(FormatError::Truncated {
            what: "blob",
            needed: MIN_BLOB_EXTENT,
            available: bytes.len(),
        });
    }
    let checked = check_crc(bytes, bytes.len() - CRC_LEN)?;
    let header = decode_header(checked)?;
    if header.total_len() != bytes.len() {
        return Err(FormatError::BlobExtentMismatch {
            extent: bytes.len(),
            encoded: header.total_len(),
        });
    }
    Ok(CheckedBlob {
        header,
        payload: &checked[header.header_len..],
    })
}

/// Checks the CRC32C trailer at `blob[checked_len..]` against `blob[..checked_len]` and returns the
/// checked bytes (header and payload). The caller has checked that the trailer is there.
fn check_crc(blob: &[u8], checked_len: usize) -> Result<&[u8], FormatError> {
    let (checked, trailer) = blob.split_at(checked_len);
    let stored = u32::from_be_bytes(array_at(trailer, 0));
    let computed = crc32c::crc32c(checked);
    if stored != computed {
        return Err(FormatError::BlobChecksumMismatch { stored, computed });
    }
    Ok(checked)
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

/// Decodes the blob that fills `bytes` exactly (checked as [`check_blob_exact`] does). The decoded value
/// is at most [`MAX_VALUE_LEN`] bytes; nothing is allocated from the header's length beyond what `bytes`
/// holds.
pub fn decode_blob_exact(bytes: &[u8]) -> Result<Vec<u8>, FormatError> {
    decode_payload(check_blob_exact(bytes)?, MAX_VALUE_LEN)
}
