//! Lookups and ordered iteration over a B-tree whose pages come from a [`PageSource`].
//!
//! Every page is checked when it is read: checksum and header (see [`super::page`]), and its place in the
//! tree: its number is below its parent's (pages are written children first, so this rules out cycles),
//! its level is one below its parent's (bounding the depth by [`MAX_DEPTH`]), its first key is the
//! parent's separator and its last key is below the next separator. A corrupt index therefore gives a
//! [`FormatError`], never a panic, a loop or results out of order. Memory is one page per level.

use std::future::Future;
use std::ops::{Bound, ControlFlow, Range};

use super::builder::BtreeSummary;
use super::page::{PageView, MAX_DEPTH};

/// Most pages [`BtreeReader::scan_in_runs`] asks a source for in one [`PageSource::read_run`]: 256
/// pages, 2 MiB.
pub const MAX_RUN_PAGES: usize = 256;
use crate::format::error::{BtreeReadError, FormatError};

/// Where B-tree pages are read from: a layer file, or memory.
pub trait PageSource {
    /// A page's bytes. `as_ref` must return the same bytes on every call.
    type Page: AsRef<[u8]> + Send + Sync;
    /// The source's own failure (IO, out of range, ...).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads page `page_no` (relative to the index start). Success is the whole page ([`PAGE_SIZE`](super::page::PAGE_SIZE)
    /// bytes; anything else is reported as a bad page).
    fn read_page(
        &self,
        page_no: u32,
    ) -> impl Future<Output = Result<Self::Page, Self::Error>> + Send;

    /// Reads the `count` pages `first..first + count`, in order: for a walk of the whole tree
    /// ([`BtreeReader::scan_in_runs`]), which asks for the children of each lowest internal page together.
    /// A source over a file reads the run in a few large reads instead of one read per page; this
    /// default reads page by page.
    fn read_run(
        &self,
        first: u32,
        count: u32,
    ) -> impl Future<Output = Result<Vec<Self::Page>, Self::Error>> + Send
    where
        Self: Sync,
    {
        async move {
            let mut pages = Vec::with_capacity(count as usize);
            for page_no in first..first.saturating_add(count) {
                pages.push(self.read_page(page_no).await?);
            }
            Ok(pages)
        }
    }
}

/// A reference or an `Arc` to a page source is a page source: reads go to the source it points at.
macro_rules! forward_page_source {
    ($ptr:ty, $($bound:tt)+) => {
        impl<S: PageSource + $($bound)+> PageSource for $ptr {
            type Page = S::Page;
            type Error = S::Error;

            fn read_page(
                &self,
                page_no: u32,
            ) -> impl Future<Output = Result<Self::Page, Self::Error>> + Send {
                (**self).read_page(page_no)
            }

            fn read_run(
                &self,
                first: u32,
                count: u32,
            ) -> impl Future<Output = Result<Vec<Self::Page>, Self::Error>> + Send
            where
                Self: Sync,
            {
                (**self).read_run(first, count)
            }
        }
    };
}

forward_page_source!(&S, Sync);
forward_page_source!(std::sync::Arc<S>, Send + Sync);

/// Reads a B-tree built by [`super::BtreeBuilder`].
#[derive(Debug)]
pub struct BtreeReader<S> {
    source: S,
    key_len: usize,
    root_page: u32,
    num_pages: u32,
}

/// A verified page held while its entries are used.
struct Frame<P> {
    page: P,
    page_no: u32,
    next: usize,
    /// Exclusive upper bound of this page's keys (the parent's next separator), if any.
    upper: Option<Vec<u8>>,
}

impl<S: PageSource + Sync> BtreeReader<S> {
    /// A reader of the tree rooted at `root_page`, whose pages are numbered `0..num_pages`.
    pub fn new(
        source: S,
        key_len: usize,
        root_page: u32,
        num_pages: u32,
    ) -> Result<Self, FormatError> {
        if !(1..=usize::from(u8::MAX)).contains(&key_len) {
            return Err(FormatError::BadPage {
                page: root_page,
                reason: format!("key length {key_len} is not in 1..=255"),
            });
        }
        if root_page >= num_pages {
            return Err(FormatError::BadPage {
                page: root_page,
                reason: format!("root is outside the index of {num_pages} pages"),
            });
        }
        Ok(BtreeReader {
            source,
            key_len,
            root_page,
            num_pages,
        })
    }

    /// A reader for the tree `summary` describes.
    pub fn from_summary(source: S, summary: &BtreeSummary) -> Result<Self, FormatError> {
        Self::new(
            source,
            usize::from(summary.key_len),
            summary.root_page,
            summary.num_pages,
        )
    }

    /// The page source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The value stored under `key`, if any.
    pub async fn get(&self, key: &[u8]) -> Result<Option<u64>, BtreeReadError<S::Error>> {
        if key.len() != self.key_len {
            return Err(BtreeReadError::WrongKeyLength {
                expected: self.key_len,
                got: key.len(),
            });
        }
        let mut frame = self.read_root().await?;
        loop {
            let view = self.view(&frame)?;
            let n = view.count_le(key);
            if view.level() == 0 {
                let found = n > 0 && view.cmp_key(n - 1, key).is_eq();
                return Ok(found.then(|| view.value(n - 1)));
            }
            if n == 0 {
                return Ok(None);
            }
            frame = self.read_child(&frame, n - 1).await?;
        }
    }

    /// Calls `visit(key, value)` for every entry with `start <= key < end` (bounds as given), in key order,
    /// until `visit` returns [`ControlFlow::Break`]. Bounds may be of any length; they are compared
    /// byte-wise.
    pub async fn visit<F>(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        mut visit: F,
    ) -> Result<(), BtreeReadError<S::Error>>
    where
        F: FnMut(&[u8], u64) -> ControlFlow<()>,
    {
        let past_end = |key: &[u8]| match end {
            Bound::Included(e) => key > e,
            Bound::Excluded(e) => key >= e,
            Bound::Unbounded => false,
        };
        let mut key = Vec::with_capacity(self.key_len);
        let mut stack: Vec<Frame<S::Page>> = Vec::with_capacity(MAX_DEPTH);
        let mut root = self.read_root().await?;
        root.next = self.start_index(&root, start)?;
        let mut seeking = self.view(&root)?.level() > 0;
        stack.push(root);
        while let Some(top) = stack.last_mut() {
            let view = self.view_of(&top.page, top.page_no)?;
            if top.next >= view.len() {
                stack.pop();
                continue;
            }
            let i = top.next;
            top.next += 1;
            view.key_into(i, &mut key);
            if past_end(&key) {
                // Separators are first keys of subtrees, so everything from here on is past the end too.
                return Ok(());
            }
            if view.level() == 0 {
                if visit(&key, view.value(i)).is_break() {
                    return Ok(());
                }
                continue;
            }
            let mut child = self.read_child(top, i).await?;
            if seeking {
                child.next = self.start_index(&child, start)?;
                seeking = self.view(&child)?.level() > 0;
            }
            stack.push(child);
        }
        Ok(())
    }

    /// The entries with `range.start <= key < range.end`, in order, at most `limit` of them.
    pub async fn range(
        &self,
        range: Range<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u64)>, BtreeReadError<S::Error>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.visit(
            Bound::Included(range.start),
            Bound::Excluded(range.end),
            |k, v| {
                out.push((k.to_vec(), v));
                if out.len() >= limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .await?;
        Ok(out)
    }

    /// Calls `visit(key, value)` for every entry in key order, until it returns [`ControlFlow::Break`].
    pub async fn scan<F>(&self, visit: F) -> Result<(), BtreeReadError<S::Error>>
    where
        F: FnMut(&[u8], u64) -> ControlFlow<()>,
    {
        self.visit(Bound::Unbounded, Bound::Unbounded, visit).await
    }

    /// As [`scan`](Self::scan), but the leaves under each lowest internal page are read together, in runs
    /// of consecutive page numbers with [`PageSource::read_run`] (at most [`MAX_RUN_PAGES`] pages
    /// each), instead of one read per leaf: for a walk of the whole index, which a source over an
    /// `O_DIRECT` file would otherwise serve with one device round trip per page. Every page is checked
    /// as in [`scan`](Self::scan). Memory: the leaves of one internal page (at most its entries' count
    /// of pages) plus one page per level above.
    pub async fn scan_in_runs<F>(&self, mut visit: F) -> Result<(), BtreeReadError<S::Error>>
    where
        F: FnMut(&[u8], u64) -> ControlFlow<()>,
    {
        let mut key = Vec::with_capacity(self.key_len);
        let root = self.read_root().await?;
        if self.view(&root)?.level() == 0 {
            let _ = visit_leaf(&self.view(&root)?, &mut key, &mut visit);
            return Ok(());
        }
        let mut stack: Vec<Frame<S::Page>> = Vec::with_capacity(MAX_DEPTH);
        stack.push(root);
        while let Some(top) = stack.last_mut() {
            let view = self.view_of(&top.page, top.page_no)?;
            if view.level() == 1 {
                // all of this page's children are leaves: read them in runs, then visit them in order
                let parent = stack.pop().expect("the top of the stack");
                let view = self.view(&parent)?;
                let mut i = 0;
                while i < view.len() {
                    let first = self.child_page_no(&parent, i)?;
                    let mut count = 1;
                    while i + count < view.len()
                        && count < MAX_RUN_PAGES
                        && self.child_page_no(&parent, i + count)? == first + count as u32
                    {
                        count += 1;
                    }
                    let pages =
                        self.source
                            .read_run(first, count as u32)
                            .await
                            .map_err(|source| BtreeReadError::Source {
                                page: first,
                                source,
                            })?;
                    if pages.len() != count {
                        return Err(FormatError::bad_page(
                            first,
                            format!("a run of {count} pages read as {}", pages.len()),
                        )
                        .into());
                    }
                    for (j, page) in pages.into_iter().enumerate() {
                        let leaf = self.check_child(&parent, i + j, first + j as u32, page)?;
                        if visit_leaf(&self.view(&leaf)?, &mut key, &mut visit).is_break() {
                            return Ok(());
                        }
                    }
                    i += count;
                }
                continue;
            }
            if top.next >= view.len() {
                stack.pop();
                continue;
            }
            let i = top.next;
            top.next += 1;
            let child = self.read_child(top, i).await?;
            stack.push(child);
        }
        Ok(())
    }

    /// Index of the first entry of `frame`'s page that can hold keys at or after `start`.
    fn start_index(
        &self,
        frame: &Frame<S::Page>,
        start: Bound<&[u8]>,
    ) -> Result<usize, FormatError> {
        let view = self.view(frame)?;
        Ok(match (view.level(), start) {
            (_, Bound::Unbounded) => 0,
            (0, Bound::Included(s)) => view.count_lt(s),
            (0, Bound::Excluded(s)) => view.count_le(s),
            // The child whose separator is the last one <= start holds start and what follows it.
            (_, Bound::Included(s) | Bound::Excluded(s)) => view.count_le(s).saturating_sub(1),
        })
    }

    fn view<'p>(&self, frame: &'p Frame<S::Page>) -> Result<PageView<'p>, FormatError> {
        self.view_of(&frame.page, frame.page_no)
    }

    fn view_of<'p>(&self, page: &'p S::Page, page_no: u32) -> Result<PageView<'p>, FormatError> {
        // Already verified when read; parsing again only re-derives the header. A source whose page bytes
        // changed since is caught here instead of causing out-of-bounds access.
        PageView::parse_verified(page.as_ref(), page_no, self.key_len)
    }

    async fn read_page(&self, page_no: u32) -> Result<S::Page, BtreeReadError<S::Error>> {
        self.source
            .read_page(page_no)
            .await
            .map_err(|source| BtreeReadError::Source {
                page: page_no,
                source,
            })
    }

    async fn read_root(&self) -> Result<Frame<S::Page>, BtreeReadError<S::Error>> {
        let page_no = self.root_page;
        let page = self.read_page(page_no).await?;
        let view = PageView::parse(page.as_ref(), page_no, self.key_len)?;
        if view.len() == 0 && view.level() > 0 {
            return Err(FormatError::bad_page(page_no, "empty internal root page").into());
        }
        Ok(Frame {
            page,
            page_no,
            next: 0,
            upper: None,
        })
    }

    /// Reads child `i` of `parent` and checks that it fits where the parent says it is.
    async fn read_child(
        &self,
        parent: &Frame<S::Page>,
        i: usize,
    ) -> Result<Frame<S::Page>, BtreeReadError<S::Error>> {
        let page_no = self.child_page_no(parent, i)?;
        let page = self.read_page(page_no).await?;
        self.check_child(parent, i, page_no, page)
    }

    /// The page number of child `i` of `parent`, checked to be below the parent's.
    fn child_page_no(&self, parent: &Frame<S::Page>, i: usize) -> Result<u32, FormatError> {
        let child_no = self.view(parent)?.value(i);
        let parent_no = parent.page_no;
        // Children are written before their parents, so a child has a smaller number. This also keeps it
        // inside the index and makes cycles impossible.
        match u32::try_from(child_no) {
            Ok(no) if no < parent_no && no < self.num_pages => Ok(no),
            _ => Err(FormatError::bad_page(
                parent_no,
                format!("entry {i} points at page {child_no}, not below this page"),
            )),
        }
    }

    /// Checks that `page`, read as page `page_no` (child `i` of `parent`), fits where the parent says
    /// it is: its level, its first key the parent's separator, its last key below the next separator.
    fn check_child(
        &self,
        parent: &Frame<S::Page>,
        i: usize,
        page_no: u32,
        page: S::Page,
    ) -> Result<Frame<S::Page>, BtreeReadError<S::Error>> {
        let view = self.view(parent)?;
        let parent_no = parent.page_no;
        let mut separator = Vec::with_capacity(self.key_len);
        view.key_into(i, &mut separator);
        let upper = if i + 1 < view.len() {
            let mut next = Vec::with_capacity(self.key_len);
            view.key_into(i + 1, &mut next);
            Some(next)
        } else {
            parent.upper.clone()
        };
        let parent_level = view.level();

        let child = PageView::parse(page.as_ref(), page_no, self.key_len)?;
        if child.level() + 1 != parent_level {
            return Err(FormatError::bad_page(
                page_no,
                format!(
                    "level {}, parent {parent_no} has level {parent_level}",
                    child.level()
                ),
            )
            .into());
        }
        if child.len() == 0 || !child.cmp_key(0, &separator).is_eq() {
            return Err(FormatError::bad_page(
                page_no,
                format!("first key differs from its separator in parent {parent_no}"),
            )
            .into());
        }
        if let Some(upper) = &upper {
            if child.cmp_key(child.len() - 1, upper).is_ge() {
                return Err(FormatError::bad_page(
                    page_no,
                    format!("last key is not below the next separator in parent {parent_no}"),
                )
                .into());
            }
        }
        Ok(Frame {
            page,
            page_no,
            next: 0,
            upper,
        })
    }
}

/// Calls `visit` for every entry of the leaf `view` until it breaks.
fn visit_leaf<F>(view: &PageView<'_>, key: &mut Vec<u8>, visit: &mut F) -> ControlFlow<()>
where
    F: FnMut(&[u8], u64) -> ControlFlow<()>,
{
    for i in 0..view.len() {
        view.key_into(i, key);
        visit(key, view.value(i))?;
    }
    ControlFlow::Continue(())
}
