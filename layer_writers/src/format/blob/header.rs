//! The blob header: 1 byte (short, uncompressed, stored length < 128) or 4 bytes (long, with the
//! compression bits); the diagram is in the [module docs](super).

use super::CRC_LEN;
use super::MAX_BLOB_LEN;
use super::MAX_HEADER_LEN;
use crate::format::error::FormatError;

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
