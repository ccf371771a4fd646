//! The errors of the format floor, one type per thing that fails:
//!
//! - [`FormatError`]: bytes that violate one of the on-disk formats (blobs, B-tree pages, the layer
//!   summary, padding), found while decoding (or, for size limits, while encoding). Every variant says
//!   which structure was bad and where, so a person reading a log line can find the bytes.
//! - [`BtreeBuildError`]: the B-tree builder refused an entry.
//! - [`BtreeReadError`]: a B-tree lookup or scan failed: its page source's own error (IO is not a format
//!   error), a [`FormatError`] in a page, or a lookup key of the wrong length.
//! - [`PageOutOfRange`]: the in-memory page source was asked for a page it does not hold.

/// A violation of one of the on-disk formats of this crate, found while decoding (or, for size limits,
/// while encoding).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input ended before the structure did.
    #[error("truncated {what}: need {needed} bytes, have {available}")]
    Truncated {
        /// The structure being decoded (`blob header`, `blob`, `key`, `layer summary`, ...).
        what: &'static str,
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes there were.
        available: usize,
    },

    /// A blob header names a compression algorithm this version does not know.
    #[error("blob header has unknown compression code {code}")]
    UnknownCompression {
        /// The compression bits of the header.
        code: u8,
    },

    /// A blob (stored or uncompressed) is larger than the format can describe, or than the caller allows.
    #[error("blob of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The blob's length, bytes.
        len: u64,
        /// The limit, bytes: the format's or the caller's, whichever applied.
        max: u64,
    },

    /// A blob's header describes a blob of `encoded` bytes (header and payload), but the blob's extent in
    /// the file (from its offset to the next blob's) is `extent` bytes: blobs are stored back to back.
    #[error("blob header says {encoded} bytes, its extent in the file is {extent} bytes")]
    BlobExtentMismatch {
        /// Bytes from the blob's offset to the next blob's (or the end of the values).
        extent: usize,
        /// Bytes the header describes: header, payload and checksum.
        encoded: usize,
    },

    /// A blob's stored CRC32C does not match its header and payload.
    #[error("blob checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BlobChecksumMismatch {
        /// The CRC32C in the blob's trailer.
        stored: u32,
        /// The CRC32C of the header and payload as read.
        computed: u32,
    },

    /// Bytes the format requires to be zero (the padding between the values and the index) are not.
    #[error("non-zero byte {byte:#04x} in the {what} at offset {offset}")]
    NonZeroPadding {
        /// The region that must be zero.
        what: &'static str,
        /// File offset of the first non-zero byte.
        offset: u64,
        /// The byte found there.
        byte: u8,
    },

    /// The zstd payload of a blob is not a valid zstd stream.
    #[error("corrupt zstd payload in blob")]
    Decompress {
        /// What the zstd decoder reported.
        #[source]
        source: std::io::Error,
    },

    /// A B-tree page's stored CRC32C does not match its contents.
    #[error(
        "index page {page}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    ChecksumMismatch {
        /// Index page number, counted from the index's first page (`index_start`).
        page: u32,
        /// The CRC32C stored in the page.
        stored: u32,
        /// The CRC32C of the page as read.
        computed: u32,
    },

    /// A B-tree page has a valid checksum but breaks a structural rule (wrong page number, level,
    /// key length, ordering, ...).
    #[error("index page {page}: {reason}")]
    BadPage {
        /// Index page number, counted from the index's first page (`index_start`).
        page: u32,
        /// The rule it breaks.
        reason: String,
    },

    /// The layer summary does not start with the summary magic.
    #[error("bad layer summary magic {found:#010x}")]
    BadMagic {
        /// The first four bytes of the summary (offset 0 of the file), big-endian.
        found: u32,
    },

    /// The layer summary is of a format version this code cannot read.
    #[error("unsupported layer format version {found} (this build reads {supported})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },

    /// The layer summary's stored CRC32C does not match its fields.
    #[error("layer summary checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    SummaryChecksumMismatch {
        /// The CRC32C stored in the summary.
        stored: u32,
        /// The CRC32C of the summary's fields as read.
        computed: u32,
    },

    /// The layer summary has a valid checksum but inconsistent fields.
    #[error("invalid layer summary: {reason}")]
    Invalid {
        /// Which fields disagree, and how.
        reason: String,
    },
}

impl FormatError {
    /// A [`FormatError::BadPage`] for `page`.
    pub(crate) fn bad_page(page: u32, reason: impl Into<String>) -> FormatError {
        FormatError::BadPage {
            page,
            reason: reason.into(),
        }
    }
}

/// Why the B-tree builder (`BtreeBuilder`) refused an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BtreeBuildError {
    /// Keys must be 1 to 255 bytes.
    #[error("B-tree key length {key_len} is not in 1..=255")]
    InvalidKeyLength {
        /// The key length asked for, bytes.
        key_len: usize,
    },
    /// The key does not have the tree's key length.
    #[error("entry {entry}: key is {got} bytes, the tree has {expected}-byte keys")]
    WrongKeyLength {
        /// Number of the refused entry, counting from 0 (the entries appended before it).
        entry: u64,
        /// The tree's key length, bytes.
        expected: usize,
        /// The refused key's length, bytes.
        got: usize,
    },
    /// The key is not greater than the previous one.
    #[error("entry {entry}: key is not greater than the previous key")]
    KeyNotIncreasing {
        /// Number of the refused entry, counting from 0 (the entries appended before it).
        entry: u64,
    },
    /// The index would need more than `u32::MAX` pages.
    #[error("B-tree index exceeds {max} pages")]
    TooManyPages {
        /// The page limit (`u32::MAX`).
        max: u32,
    },
}

/// Why a B-tree read (`BtreeReader`) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BtreeReadError<E> {
    /// The page source failed.
    #[error("reading index page {page}")]
    Source {
        /// The page being read, numbered from the index's first page.
        page: u32,
        /// The page source's error.
        #[source]
        source: E,
    },
    /// A page is corrupt or the tree is malformed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The lookup key does not have the index's key length.
    #[error("lookup key is {got} bytes, the index has {expected}-byte keys")]
    WrongKeyLength {
        /// The index's key length, bytes.
        expected: usize,
        /// The lookup key's length, bytes.
        got: usize,
    },
}

/// A read of a page that `MemPageSource` does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("page {page} is beyond the {num_pages} pages held in memory")]
pub struct PageOutOfRange {
    /// The page asked for.
    pub page: u32,
    /// Pages held.
    pub num_pages: usize,
}
