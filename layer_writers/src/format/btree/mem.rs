//! An in-memory [`PageSource`]: for tests, and for indexes that are built and read without a file.

use std::future::{ready, Future};

use bytes::Bytes;

use super::builder::BuiltPage;
use super::reader::PageSource;
use crate::format::error::PageOutOfRange;

/// Pages held in memory, page `n` at position `n`.
#[derive(Debug, Clone, Default)]
pub struct MemPageSource {
    pages: Vec<Bytes>,
}

impl MemPageSource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a page; it becomes page number `len() - 1`. Any length is accepted (readers reject pages
    /// that are not [`PAGE_SIZE`](super::page::PAGE_SIZE) bytes), so tests can store damaged pages.
    pub fn push(&mut self, page: impl Into<Bytes>) {
        self.pages.push(page.into());
    }

    /// Number of pages held.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether no page is held.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The pages, in page-number order.
    pub fn pages(&self) -> &[Bytes] {
        &self.pages
    }
}

impl FromIterator<BuiltPage> for MemPageSource {
    fn from_iter<I: IntoIterator<Item = BuiltPage>>(iter: I) -> Self {
        let mut source = MemPageSource::new();
        for page in iter {
            debug_assert_eq!(
                page.page_no as usize,
                source.len(),
                "pages must come in page-number order"
            );
            source.push(Bytes::from(page.bytes.to_vec()));
        }
        source
    }
}

impl PageSource for MemPageSource {
    type Page = Bytes;
    type Error = PageOutOfRange;

    fn read_page(
        &self,
        page_no: u32,
    ) -> impl Future<Output = Result<Bytes, PageOutOfRange>> + Send {
        ready(
            self.pages
                .get(page_no as usize)
                .cloned()
                .ok_or(PageOutOfRange {
                    page: page_no,
                    num_pages: self.pages.len(),
                }),
        )
    }
}
