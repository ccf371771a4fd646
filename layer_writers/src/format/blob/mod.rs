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
//!
//! The header is [`encode_header`] / [`decode_header`]; whole blobs are [`encode_blob`], [`check_blob`] and
//! [`decode_blob`], and [`check_blob_exact`] / [`decode_blob_exact`] for a blob whose extent in the file is
//! known (from the index) before it is read: blobs lie back to back, so the extent of one runs to the
//! next one's offset. The exact check reads the CRC trailer first, over the whole extent as the index
//! gives it, so a flipped bit anywhere in a blob (header included) is a checksum mismatch before any
//! field is believed, and then requires the header to describe exactly that extent, which catches an
//! index pointing into the middle of a blob.

mod codec;
mod header;
#[cfg(test)]
mod tests;

pub use codec::{
    blob_crc, check_blob, check_blob_exact, decode_blob, decode_blob_exact, decode_blob_with_limit,
    decode_payload, encode_blob, encode_blob_into, CheckedBlob,
};
pub use header::{decode_header, encode_header, BlobHeader, Compression, EncodedHeader};

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
