//! The on-disk B-tree index of a layer file: fixed-size keys mapped to `u64` values (blob offsets).
//!
//! - Pages are [`PAGE_SIZE`](page::PAGE_SIZE) (8 KiB), numbered from 0 at the start of the index; a page lives at byte
//!   `index_start + page_no * PAGE_SIZE` of the file.
//! - Keys have one fixed length per tree, chosen when building: 24 bytes for delta layers
//!   (key + LSN, [`crate::format::key::DELTA_INDEX_KEY_SIZE`]), 16 for image layers.
//! - Each page stores the common prefix of its keys once, then the key suffixes, then the values
//!   (byte diagram in [`page`]). Every page carries a CRC32C and its own page number.
//! - The tree is built bottom-up in one pass after the values are written ([`BtreeBuilder`]); pages come out
//!   children first and the root last, so the whole index is written sequentially.
//! - Leaves (level 0) map keys to values. An internal page at level `n` maps the first key of each child
//!   page (level `n - 1`) to the child's page number.
//! - [`BtreeReader`] reads pages through a [`PageSource`] (a file later; [`MemPageSource`] here) and verifies
//!   each one, so a corrupt index is an error, never a panic, a loop or an unbounded allocation.
//!
//! ```
//! use std::ops::ControlFlow;
//! use layer_writers::format::btree::{BtreeBuilder, BtreeReader, MemPageSource};
//!
//! let mut builder = BtreeBuilder::new(16).unwrap();
//! let mut pages = Vec::new();
//! for i in 0u128..1000 {
//!     builder.append(&(i * 2).to_be_bytes(), i as u64).unwrap();
//!     pages.extend(builder.drain_pages()); // a writer writes these to the file here
//! }
//! let (summary, rest) = builder.finish().unwrap();
//! pages.extend(rest);
//!
//! let source: MemPageSource = pages.into_iter().collect();
//! let reader = BtreeReader::from_summary(source, &summary).unwrap();
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! rt.block_on(async {
//!     assert_eq!(reader.get(&10u128.to_be_bytes()).await.unwrap(), Some(5));
//!     assert_eq!(reader.get(&11u128.to_be_bytes()).await.unwrap(), None);
//!     let (start, end) = (100u128.to_be_bytes(), 106u128.to_be_bytes());
//!     let found = reader.range(&start[..]..&end[..], usize::MAX).await.unwrap();
//!     assert_eq!(found.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [50, 51, 52]);
//!     let mut n = 0;
//!     reader.scan(|_, _| { n += 1; ControlFlow::Continue(()) }).await.unwrap();
//!     assert_eq!(n, 1000);
//! });
//! ```
//!
//! What this design does badly: values are fixed 8-byte integers even where 5 bytes would do; a page's
//! prefix is only what all its keys share, so one outlier key costs the whole page its compression; and
//! nothing checks the index as a whole (a page replaced by a valid page from another index of the same
//! shape is caught only if its keys disagree with the parent's separators).

mod builder;
mod mem;
pub mod page;
mod reader;

pub use crate::format::error::{BtreeBuildError, BtreeReadError, PageOutOfRange};
pub use builder::{BtreeBuilder, BtreeSummary, BuiltPage};
pub use mem::MemPageSource;
pub use reader::{BtreeReader, PageSource, MAX_RUN_PAGES};

#[cfg(test)]
mod tests;
