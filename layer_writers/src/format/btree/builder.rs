//! Bottom-up, streaming construction of a B-tree from keys appended in strictly increasing order.
//!
//! The builder keeps one partly filled page per level. When the next key would overflow a level's page,
//! that page is encoded with the next page number and queued, and its first key and page number are
//! appended to the level above (which may overflow in turn). So pages come out in page-number order,
//! every child before its parent, and the root last; the caller drains them as they are produced and
//! writes them straight to the file. Memory is one page per level plus the drained queue.

use std::collections::VecDeque;

use crate::format::error::BtreeBuildError;

use super::page::{body_size, common_prefix_len, encode_page, BODY_LEN, PAGE_SIZE};

/// A finished page and its number, relative to the start of the index.
#[derive(Clone, PartialEq, Eq)]
pub struct BuiltPage {
    /// Page number: the page belongs at byte `index_start + page_no * PAGE_SIZE`.
    pub page_no: u32,
    /// The encoded page.
    pub bytes: Box<[u8; PAGE_SIZE]>,
}

impl std::fmt::Debug for BuiltPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltPage")
            .field("page_no", &self.page_no)
            .finish_non_exhaustive()
    }
}

/// What a reader needs to know about a finished tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtreeSummary {
    /// Key length of every entry.
    pub key_len: u8,
    /// Page number of the root (always the last page: `num_pages - 1`).
    pub root_page: u32,
    /// Number of pages in the index.
    pub num_pages: u32,
    /// Number of levels, 1 for a tree that is a single leaf.
    pub depth: u8,
    /// Number of entries appended.
    pub num_entries: u64,
}

/// Entries of the unfinished page of one level.
#[derive(Debug, Default)]
struct LevelBuf {
    keys: Vec<u8>,
    values: Vec<u64>,
}

/// Builds a B-tree bottom-up; see the module docs.
#[derive(Debug)]
pub struct BtreeBuilder {
    key_len: usize,
    /// `levels[0]` holds leaf entries; `levels[n]` entries point at pages of level `n - 1`.
    levels: Vec<LevelBuf>,
    next_page_no: u32,
    ready: VecDeque<BuiltPage>,
    last_key: Vec<u8>,
    num_entries: u64,
}

impl BtreeBuilder {
    /// A builder for `key_len`-byte keys (1..=255).
    pub fn new(key_len: usize) -> Result<BtreeBuilder, BtreeBuildError> {
        if !(1..=usize::from(u8::MAX)).contains(&key_len) {
            return Err(BtreeBuildError::InvalidKeyLength { key_len });
        }
        Ok(BtreeBuilder {
            key_len,
            levels: vec![LevelBuf::default()],
            next_page_no: 0,
            ready: VecDeque::new(),
            last_key: Vec::with_capacity(key_len),
            num_entries: 0,
        })
    }

    /// The key length this builder was created with.
    pub fn key_len(&self) -> usize {
        self.key_len
    }

    /// Entries appended so far.
    pub fn num_entries(&self) -> u64 {
        self.num_entries
    }

    /// Appends an entry. `key` must be `key_len` bytes and greater than the previous key. On error nothing
    /// changes. Completed pages become available from [`BtreeBuilder::drain_pages`].
    pub fn append(&mut self, key: &[u8], value: u64) -> Result<(), BtreeBuildError> {
        let entry = self.num_entries;
        if key.len() != self.key_len {
            return Err(BtreeBuildError::WrongKeyLength {
                entry,
                expected: self.key_len,
                got: key.len(),
            });
        }
        if entry > 0 && key <= self.last_key.as_slice() {
            return Err(BtreeBuildError::KeyNotIncreasing { entry });
        }
        // One append emits at most one page per level and may add one level.
        self.check_page_budget(self.levels.len() + 1)?;
        self.push_entry(0, key, value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.num_entries += 1;
        Ok(())
    }

    /// Removes and returns the completed pages, in page-number order.
    pub fn drain_pages(&mut self) -> impl Iterator<Item = BuiltPage> + '_ {
        self.ready.drain(..)
    }

    /// Number of completed pages not yet drained.
    pub fn pending_pages(&self) -> usize {
        self.ready.len()
    }

    /// Completes the tree. Returns its summary and the pages not yet drained (ending with the root).
    /// An empty tree is one empty leaf page.
    pub fn finish(mut self) -> Result<(BtreeSummary, Vec<BuiltPage>), BtreeBuildError> {
        self.check_page_budget(self.levels.len() + 1)?;
        // Flush every level into the one above; the top level's page is the root. An upper level always
        // ends up with at least two entries: it was created by an overflow below, which left an entry
        // behind that the flush below adds.
        let mut level = 0;
        while level + 1 < self.levels.len() {
            self.flush_level(level);
            level += 1;
        }
        let root_page = self.emit_page(level);
        let depth = level + 1;
        let summary = BtreeSummary {
            // Checked in `new`.
            key_len: self.key_len as u8,
            root_page,
            num_pages: self.next_page_no,
            // At most a handful of levels: every page holds at least 31 entries.
            depth: depth as u8,
            num_entries: self.num_entries,
        };
        Ok((summary, self.ready.into_iter().collect()))
    }

    fn check_page_budget(&self, more: usize) -> Result<(), BtreeBuildError> {
        if u64::from(self.next_page_no) + more as u64 > u64::from(u32::MAX) {
            return Err(BtreeBuildError::TooManyPages { max: u32::MAX });
        }
        Ok(())
    }

    /// Adds an entry to `level`'s page, first emitting that page if the entry would not fit.
    fn push_entry(&mut self, level: usize, key: &[u8], value: u64) {
        if level == self.levels.len() {
            self.levels.push(LevelBuf::default());
        }
        let buf = &self.levels[level];
        if let Some(first) = buf.keys.get(..self.key_len) {
            let prefix = common_prefix_len(first, key);
            if body_size(self.key_len, prefix, buf.values.len() + 1) > BODY_LEN {
                self.flush_level(level);
            }
        }
        let buf = &mut self.levels[level];
        buf.keys.extend_from_slice(key);
        buf.values.push(value);
    }

    /// Emits `level`'s page (if it has entries) and links it into the level above.
    fn flush_level(&mut self, level: usize) {
        if self.levels[level].values.is_empty() {
            return;
        }
        let first_key = self.levels[level].keys[..self.key_len].to_vec();
        let page_no = self.emit_page(level);
        self.push_entry(level + 1, &first_key, u64::from(page_no));
    }

    /// Encodes `level`'s entries as the next page, queues it and clears the level.
    fn emit_page(&mut self, level: usize) -> u32 {
        let page_no = self.next_page_no;
        self.next_page_no += 1;
        let buf = &mut self.levels[level];
        // Levels are bounded by MAX_DEPTH (far below 256) because pages hold at least 31 entries.
        let bytes = encode_page(page_no, level as u8, self.key_len, &buf.keys, &buf.values);
        buf.keys.clear();
        buf.values.clear();
        self.ready.push_back(BuiltPage { page_no, bytes });
        page_no
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            BtreeBuilder::new(0).unwrap_err(),
            BtreeBuildError::InvalidKeyLength { key_len: 0 }
        );
        assert!(BtreeBuilder::new(256).is_err());
        let mut b = BtreeBuilder::new(4).unwrap();
        b.append(b"bbbb", 1).unwrap();
        assert_eq!(
            b.append(b"bbb", 2),
            Err(BtreeBuildError::WrongKeyLength {
                entry: 1,
                expected: 4,
                got: 3
            })
        );
        assert_eq!(
            b.append(b"bbbb", 2),
            Err(BtreeBuildError::KeyNotIncreasing { entry: 1 })
        );
        assert_eq!(
            b.append(b"aaaa", 2),
            Err(BtreeBuildError::KeyNotIncreasing { entry: 1 })
        );
        // Errors change nothing.
        b.append(b"bbbc", 2).unwrap();
        let (summary, pages) = b.finish().unwrap();
        assert_eq!(summary.num_entries, 2);
        assert_eq!(pages.len(), 1);
    }

    #[test]
    fn empty_tree_is_one_empty_leaf() {
        let (summary, pages) = BtreeBuilder::new(16).unwrap().finish().unwrap();
        assert_eq!(
            summary,
            BtreeSummary {
                key_len: 16,
                root_page: 0,
                num_pages: 1,
                depth: 1,
                num_entries: 0
            }
        );
        assert_eq!(pages.len(), 1);
    }

    #[test]
    fn pages_stream_out_in_order_root_last() {
        let mut b = BtreeBuilder::new(24).unwrap();
        let mut pages = Vec::new();
        let mut max_pending = 0;
        for i in 0u64..50_000 {
            let mut key = [0u8; 24];
            key[8..16].copy_from_slice(&i.to_be_bytes());
            b.append(&key, i).unwrap();
            max_pending = max_pending.max(b.pending_pages());
            pages.extend(b.drain_pages());
        }
        let (summary, rest) = b.finish().unwrap();
        pages.extend(rest);
        assert!(
            max_pending <= 2,
            "pages must be drainable as they are completed"
        );
        assert!(summary.depth >= 2);
        assert_eq!(summary.num_pages as usize, pages.len());
        assert_eq!(summary.root_page, summary.num_pages - 1);
        for (i, p) in pages.iter().enumerate() {
            assert_eq!(p.page_no as usize, i);
        }
    }
}
