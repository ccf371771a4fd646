//! The byte layout of one B-tree page: encoding a page from sorted entries and validating a page read back.
//!
//! ```text
//! offset  size  field
//!      0     4  magic                 b"LWBT"
//!      4     4  crc32c                u32 BE, CRC32C of bytes [8, PAGE_SIZE)
//!      8     4  page_no               u32 BE, this page's number relative to the index start
//!     12     1  level                 0 = leaf, n = internal page whose children are at level n - 1
//!     13     1  key_len               full key length of the tree, 1..=255
//!     14     1  prefix_len            bytes shared by every key of this page, 0..=key_len
//!     15     1  reserved              0
//!     16     2  count                 u16 BE, number of entries
//!     18     2  reserved              0
//!     20     P  prefix                P = prefix_len
//!   20+P   N*S  key suffixes          S = key_len - prefix_len, in strictly increasing key order
//! 20+P+N*S N*8  values                u64 BE: blob offsets (leaf) or child page numbers (internal)
//!          ...  zero up to PAGE_SIZE
//! ```
//!
//! The prefix is the longest common prefix of the page's first and last keys, which (keys being sorted) is
//! the common prefix of all of them. In an internal page, entry `i` is the first key of child `i`.

use std::cmp::Ordering;

use crate::format::error::FormatError;
use crate::format::raw::{all_zero, array_at};

/// Size of every B-tree page.
pub const PAGE_SIZE: usize = 8192;
/// Magic at the start of every page.
pub const PAGE_MAGIC: [u8; 4] = *b"LWBT";
/// Deepest tree a reader accepts: the root's level is at most `MAX_DEPTH - 1`. A tree of 255-byte keys
/// (the worst fanout, 31) needs 13 levels for 2^64 entries.
pub const MAX_DEPTH: usize = 16;

pub(crate) const MAGIC_OFFSET: usize = 0;
pub(crate) const CRC_OFFSET: usize = MAGIC_OFFSET + PAGE_MAGIC.len();
pub(crate) const PAGE_NO_OFFSET: usize = CRC_OFFSET + 4;
pub(crate) const LEVEL_OFFSET: usize = PAGE_NO_OFFSET + 4;
pub(crate) const KEY_LEN_OFFSET: usize = LEVEL_OFFSET + 1;
pub(crate) const PREFIX_LEN_OFFSET: usize = KEY_LEN_OFFSET + 1;
const RESERVED1_OFFSET: usize = PREFIX_LEN_OFFSET + 1;
pub(crate) const COUNT_OFFSET: usize = RESERVED1_OFFSET + 1;
const RESERVED2_OFFSET: usize = COUNT_OFFSET + 2;
/// Size of the page header; the prefix starts here.
pub const HEADER_LEN: usize = RESERVED2_OFFSET + 2;
/// Bytes available for prefix, suffixes and values.
pub const BODY_LEN: usize = PAGE_SIZE - HEADER_LEN;
/// Size of one stored value.
pub const VALUE_LEN: usize = 8;

/// Bytes the body of a page needs for `count` entries with a `prefix_len`-byte prefix.
pub(crate) fn body_size(key_len: usize, prefix_len: usize, count: usize) -> usize {
    prefix_len + count * (key_len - prefix_len + VALUE_LEN)
}

/// Length of the common prefix of `a` and `b`.
pub(crate) fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    // 8 bytes at a time (called once per appended entry): the first differing byte is where the
    // big-endian XOR of the two words has its highest set bit
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut done = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let diff = u64::from_be_bytes(crate::format::raw::array_at(x, 0))
            ^ u64::from_be_bytes(crate::format::raw::array_at(y, 0));
        if diff != 0 {
            return done + (diff.leading_zeros() / 8) as usize;
        }
        done += 8;
    }
    done + a[done..]
        .iter()
        .zip(&b[done..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// The CRC stored in a page: over everything after the CRC field.
fn page_crc(page: &[u8; PAGE_SIZE]) -> u32 {
    crc32c::crc32c(&page[PAGE_NO_OFFSET..])
}

/// Encodes a page from `count` keys laid out back to back in `keys` (each `key_len` bytes, strictly
/// increasing) and their `values`. The caller guarantees the entries fit (see [`body_size`]).
pub(crate) fn encode_page(
    page_no: u32,
    level: u8,
    key_len: usize,
    keys: &[u8],
    values: &[u64],
) -> Box<[u8; PAGE_SIZE]> {
    let count = values.len();
    debug_assert_eq!(keys.len(), count * key_len);
    let prefix_len = match count {
        0 => 0,
        _ => common_prefix_len(&keys[..key_len], &keys[(count - 1) * key_len..]),
    };
    let suffix_len = key_len - prefix_len;
    assert!(
        body_size(key_len, prefix_len, count) <= BODY_LEN && key_len <= usize::from(u8::MAX),
        "B-tree page overfilled: {count} entries of {key_len}-byte keys"
    );

    let mut page = Box::new([0u8; PAGE_SIZE]);
    page[MAGIC_OFFSET..CRC_OFFSET].copy_from_slice(&PAGE_MAGIC);
    page[PAGE_NO_OFFSET..LEVEL_OFFSET].copy_from_slice(&page_no.to_be_bytes());
    page[LEVEL_OFFSET] = level;
    // Both checked by the assert above (prefix_len <= key_len).
    page[KEY_LEN_OFFSET] = key_len as u8;
    page[PREFIX_LEN_OFFSET] = prefix_len as u8;
    // count <= BODY_LEN / VALUE_LEN < u16::MAX by the assert above.
    page[COUNT_OFFSET..RESERVED2_OFFSET].copy_from_slice(&(count as u16).to_be_bytes());

    let mut pos = HEADER_LEN;
    if count > 0 {
        page[pos..pos + prefix_len].copy_from_slice(&keys[..prefix_len]);
        pos += prefix_len;
    }
    for key in keys.chunks_exact(key_len) {
        page[pos..pos + suffix_len].copy_from_slice(&key[prefix_len..]);
        pos += suffix_len;
    }
    for v in values {
        page[pos..pos + VALUE_LEN].copy_from_slice(&v.to_be_bytes());
        pos += VALUE_LEN;
    }
    let crc = page_crc(&page);
    page[CRC_OFFSET..PAGE_NO_OFFSET].copy_from_slice(&crc.to_be_bytes());
    page
}

/// A page whose checksum and structure were verified, borrowed from the page bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageView<'a> {
    page: &'a [u8; PAGE_SIZE],
    level: u8,
    key_len: usize,
    prefix_len: usize,
    count: usize,
}

impl<'a> PageView<'a> {
    /// Verifies `bytes` as page `page_no` of a tree with `key_len`-byte keys: size, magic, CRC, header
    /// fields, that everything fits, that the padding is zero and that keys are strictly increasing.
    pub(crate) fn parse(
        bytes: &'a [u8],
        page_no: u32,
        key_len: usize,
    ) -> Result<PageView<'a>, FormatError> {
        let page = as_page(bytes, page_no)?;
        if page[MAGIC_OFFSET..CRC_OFFSET] != PAGE_MAGIC {
            return Err(FormatError::bad_page(
                page_no,
                format!("bad magic {:02x?}", &page[MAGIC_OFFSET..CRC_OFFSET]),
            ));
        }
        let stored = u32::from_be_bytes(array_at(page, CRC_OFFSET));
        let computed = page_crc(page);
        if stored != computed {
            return Err(FormatError::ChecksumMismatch {
                page: page_no,
                stored,
                computed,
            });
        }
        let view = Self::parse_header(page, page_no, key_len)?;
        let used = body_size(key_len, view.prefix_len, view.count);
        if !all_zero(&page[HEADER_LEN + used..]) {
            return Err(FormatError::bad_page(
                page_no,
                "non-zero bytes after the entries",
            ));
        }
        for i in 1..view.count {
            if view.suffix(i - 1) >= view.suffix(i) {
                return Err(FormatError::bad_page(
                    page_no,
                    format!("keys {} and {i} are not strictly increasing", i - 1),
                ));
            }
        }
        if view.count > 0 && common_prefix_len(view.suffix(0), view.suffix(view.count - 1)) != 0 {
            // Not wrong for lookups, but the builder never writes it: a changed prefix length that
            // survived the CRC would show up here.
            return Err(FormatError::bad_page(
                page_no,
                "prefix is shorter than the common prefix of the keys",
            ));
        }
        Ok(view)
    }

    /// Re-derives the view of a page that [`PageView::parse`] accepted before: checks only what keeps
    /// accesses in bounds (size and header), not the checksum or key order.
    pub(crate) fn parse_verified(
        bytes: &'a [u8],
        page_no: u32,
        key_len: usize,
    ) -> Result<PageView<'a>, FormatError> {
        Self::parse_header(as_page(bytes, page_no)?, page_no, key_len)
    }

    fn parse_header(
        page: &'a [u8; PAGE_SIZE],
        page_no: u32,
        key_len: usize,
    ) -> Result<PageView<'a>, FormatError> {
        let stored_no = u32::from_be_bytes(array_at(page, PAGE_NO_OFFSET));
        if stored_no != page_no {
            return Err(FormatError::bad_page(
                page_no,
                format!("page says it is page {stored_no}"),
            ));
        }
        let level = page[LEVEL_OFFSET];
        if usize::from(level) >= MAX_DEPTH {
            return Err(FormatError::bad_page(
                page_no,
                format!("level {level} exceeds the maximum depth {MAX_DEPTH}"),
            ));
        }
        let stored_key_len = usize::from(page[KEY_LEN_OFFSET]);
        if stored_key_len != key_len {
            return Err(FormatError::bad_page(
                page_no,
                format!("key length {stored_key_len}, expected {key_len}"),
            ));
        }
        let prefix_len = usize::from(page[PREFIX_LEN_OFFSET]);
        if prefix_len > key_len {
            return Err(FormatError::bad_page(
                page_no,
                format!("prefix length {prefix_len} exceeds key length {key_len}"),
            ));
        }
        if page[RESERVED1_OFFSET] != 0 || page[RESERVED2_OFFSET..HEADER_LEN] != [0, 0] {
            return Err(FormatError::bad_page(
                page_no,
                "reserved header bytes are not zero",
            ));
        }
        let count = usize::from(u16::from_be_bytes(array_at(page, COUNT_OFFSET)));
        let used = body_size(key_len, prefix_len, count);
        if used > BODY_LEN {
            return Err(FormatError::bad_page(
                page_no,
                format!("{count} entries need {used} bytes, page has {BODY_LEN}"),
            ));
        }
        if count == 0 && prefix_len != 0 {
            return Err(FormatError::bad_page(page_no, "empty page with a prefix"));
        }
        Ok(PageView {
            page,
            level,
            key_len,
            prefix_len,
            count,
        })
    }

    pub(crate) fn level(&self) -> u8 {
        self.level
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    fn suffix_len(&self) -> usize {
        self.key_len - self.prefix_len
    }

    fn prefix(&self) -> &'a [u8] {
        &self.page[HEADER_LEN..HEADER_LEN + self.prefix_len]
    }

    fn suffix(&self, i: usize) -> &'a [u8] {
        let start = HEADER_LEN + self.prefix_len + i * self.suffix_len();
        &self.page[start..start + self.suffix_len()]
    }

    /// The value of entry `i` (`i < len()`).
    pub(crate) fn value(&self, i: usize) -> u64 {
        let start = HEADER_LEN + self.prefix_len + self.count * self.suffix_len() + i * VALUE_LEN;
        u64::from_be_bytes(array_at(self.page, start))
    }

    /// Writes the full key of entry `i` into `out` (cleared first).
    pub(crate) fn key_into(&self, i: usize, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(self.prefix());
        out.extend_from_slice(self.suffix(i));
    }

    /// Compares the full key of entry `i` with `key` (`key` has the tree's key length).
    pub(crate) fn cmp_key(&self, i: usize, key: &[u8]) -> Ordering {
        let (key_prefix, key_suffix) = key.split_at(self.prefix_len.min(key.len()));
        self.prefix()
            .cmp(key_prefix)
            .then_with(|| self.suffix(i).cmp(key_suffix))
    }

    /// Number of entries whose key is `<= key` (so the last such entry is at the result minus one).
    pub(crate) fn count_le(&self, key: &[u8]) -> usize {
        self.partition(|ord| ord != Ordering::Greater, key)
    }

    /// Number of entries whose key is `< key`.
    pub(crate) fn count_lt(&self, key: &[u8]) -> usize {
        self.partition(|ord| ord == Ordering::Less, key)
    }

    fn partition(&self, pred: impl Fn(Ordering) -> bool, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.cmp_key(mid, key)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

fn as_page(bytes: &[u8], page_no: u32) -> Result<&[u8; PAGE_SIZE], FormatError> {
    bytes.try_into().map_err(|_| FormatError::BadPage {
        page: page_no,
        reason: format!("page is {} bytes, expected {PAGE_SIZE}", bytes.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&[u8]]) -> Vec<u8> {
        list.concat()
    }

    #[test]
    fn layout_offsets() {
        assert_eq!(HEADER_LEN, 20);
        let k = keys(&[b"abcd", b"abcz"]);
        let page = encode_page(7, 0, 4, &k, &[1, 0x0102]);
        assert_eq!(&page[..4], b"LWBT");
        assert_eq!(page[8..12], 7u32.to_be_bytes());
        assert_eq!((page[12], page[13], page[14]), (0, 4, 3));
        assert_eq!(page[16..18], [0, 2]);
        assert_eq!(&page[20..23], b"abc");
        assert_eq!(&page[23..25], b"dz");
        assert_eq!(page[25..33], 1u64.to_be_bytes());
        assert_eq!(page[33..41], 0x0102u64.to_be_bytes());
        assert!(page[41..].iter().all(|&b| b == 0));
        let crc = crc32c::crc32c(&page[8..]);
        assert_eq!(page[4..8], crc.to_be_bytes());
    }

    #[test]
    fn view_reads_back() {
        let k = keys(&[b"aaa1", b"aab2", b"aac3"]);
        let page = encode_page(3, 1, 4, &k, &[10, 20, 30]);
        let v = PageView::parse(&page[..], 3, 4).unwrap();
        assert_eq!((v.len(), v.level()), (3, 1));
        let mut out = Vec::new();
        v.key_into(1, &mut out);
        assert_eq!(out, b"aab2");
        assert_eq!(v.value(2), 30);
        assert_eq!(v.count_le(b"aab2"), 2);
        assert_eq!(v.count_lt(b"aab2"), 1);
        assert_eq!(v.count_le(b"aa00"), 0);
        assert_eq!(v.count_le(b"zzzz"), 3);
        assert_eq!(v.count_lt(b"a"), 0);
    }

    #[test]
    fn wrong_identity_is_rejected() {
        let page = encode_page(3, 0, 4, b"abcd", &[1]);
        assert!(matches!(
            PageView::parse(&page[..], 4, 4),
            Err(FormatError::BadPage { page: 4, .. })
        ));
        assert!(matches!(
            PageView::parse(&page[..], 3, 5),
            Err(FormatError::BadPage { page: 3, .. })
        ));
        for len in [0, 1, PAGE_SIZE - 1] {
            assert!(matches!(
                PageView::parse(&page[..len], 3, 4),
                Err(FormatError::BadPage { page: 3, .. })
            ));
        }
    }

    /// Rewrites a header field and fixes the CRC, so only the structural checks can catch it.
    fn with_fixed_crc(
        page: &[u8; PAGE_SIZE],
        edit: impl FnOnce(&mut [u8; PAGE_SIZE]),
    ) -> Box<[u8; PAGE_SIZE]> {
        let mut p = Box::new(*page);
        edit(&mut p);
        let crc = page_crc(&p);
        p[CRC_OFFSET..PAGE_NO_OFFSET].copy_from_slice(&crc.to_be_bytes());
        p
    }

    #[test]
    fn structural_checks_behind_a_valid_crc() {
        let k = keys(&[b"abcd", b"abce", b"abcf"]);
        let page = encode_page(0, 0, 4, &k, &[1, 2, 3]);
        let edits: [fn(&mut [u8; PAGE_SIZE]); 8] = [
            |p| p[LEVEL_OFFSET] = MAX_DEPTH as u8,
            |p| p[PREFIX_LEN_OFFSET] = 5,
            |p| p[PREFIX_LEN_OFFSET] = 2,
            |p| p[RESERVED1_OFFSET] = 1,
            |p| p[COUNT_OFFSET] = 0xff,
            |p| p[COUNT_OFFSET + 1] = 2,
            |p| p[PAGE_SIZE - 1] = 1,
            |p| p[HEADER_LEN + 3] = b'e', // second suffix equals the first
        ];
        for (i, edit) in edits.iter().enumerate() {
            let bad = with_fixed_crc(&page, edit);
            assert!(
                matches!(
                    PageView::parse(&bad[..], 0, 4),
                    Err(FormatError::BadPage { page: 0, .. })
                ),
                "edit {i}"
            );
        }
    }
}
