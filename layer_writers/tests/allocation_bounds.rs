//! A crafted sparse layer file whose valid summary and index claim a blob far larger than any the format
//! can hold: every read path refuses it with a typed error before a read buffer is requested.
//!
//! The readers draw every read buffer from a [`ReadBudget`] before allocating it, and the budget records
//! the real size asked for (`max_held`), so this test fails if the bound on blob extents is removed: the
//! reader would then ask for (and allocate) the whole claimed extent.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::all_contexts;
use layer_writers::format::blob::MAX_BLOB_EXTENT;
use layer_writers::format::btree::page::PAGE_SIZE;
use layer_writers::format::btree::BtreeBuilder;
use layer_writers::format::image_index_key;
use layer_writers::format::summary::{LayerKind, Summary, SUMMARY_SIZE};
use layer_writers::{FormatError, ImageLayerReader, Key, LayerError, Lsn, ReadBudget};

/// Claimed length of the one blob: more than twice the largest valid blob.
const CLAIM: u64 = 600 << 20;

/// Writes a sparse image layer: one key whose blob claims [`CLAIM`] bytes from offset 8192. The summary and
/// the index page are valid (right CRCs); the values region is a hole.
fn craft(path: &Path, key: Key) {
    let values_end = SUMMARY_SIZE as u64 + CLAIM;
    let index_start = values_end.next_multiple_of(PAGE_SIZE as u64);
    let mut tree = BtreeBuilder::new(LayerKind::Image.index_key_len()).unwrap();
    tree.append(&image_index_key(key), SUMMARY_SIZE as u64)
        .unwrap();
    let (built, pages) = tree.finish().unwrap();
    let summary = Summary {
        kind: LayerKind::Image,
        key_range: key..key.checked_next().unwrap(),
        lsn_range: Lsn(5)..Lsn(6),
        values_end,
        index_start_page: u32::try_from(index_start / PAGE_SIZE as u64).unwrap(),
        index_root: built.root_page,
        index_page_count: built.num_pages,
    };
    let f = std::fs::File::create(path).unwrap();
    f.write_all_at(&summary.encode(), 0).unwrap();
    for page in &pages {
        let at = index_start + u64::from(page.page_no) * PAGE_SIZE as u64;
        f.write_all_at(&page.bytes[..], at).unwrap();
    }
    assert_eq!(f.metadata().unwrap().len(), summary.file_len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_claimed_blob_is_refused_before_any_read_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse");
    let key = Key::from_u128(42);
    craft(&path, key);
    for (label, ctx) in all_contexts() {
        let budget = ReadBudget::new(1 << 20);
        let r = ImageLayerReader::open_with_budget(&ctx, &path, Some(budget.clone()))
            .await
            .unwrap_or_else(|e| {
                panic!("{label}: the crafted file's summary and index are valid: {e}")
            });
        let errs = [
            r.get(key).await.unwrap_err(),
            r.get_many(&[key]).await.unwrap_err(),
            r.scan().await.unwrap_err(),
            r.verify().await.unwrap_err(),
        ];
        for err in errs {
            match err {
                LayerError::Format {
                    offset,
                    key: Some(k),
                    source: FormatError::TooLarge { len, max },
                    ..
                } if offset == SUMMARY_SIZE as u64
                    && k == key
                    && len == CLAIM
                    && max == MAX_BLOB_EXTENT as u64 => {}
                other => panic!("{label}: unexpected {other:?}"),
            }
        }
        assert_eq!(
            budget.max_held(),
            0,
            "{label}: no read buffer may be requested for the refused extent"
        );
    }
}

#[test]
fn the_bound_is_the_largest_valid_blob() {
    // Long header, 2^28 - 1 payload bytes, CRC.
    assert_eq!(MAX_BLOB_EXTENT, 4 + ((1 << 28) - 1) + 4);
    const { assert!(CLAIM > MAX_BLOB_EXTENT as u64) };
}
