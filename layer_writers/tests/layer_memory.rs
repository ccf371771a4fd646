//! Layer readers read the summary and the index through the page cache in every IO mode x engine: while
//! the index fits in the cache, no index page is read from the device twice (the cache's device-read
//! counter shows it). A value read larger than the whole memory budget is a typed error.

mod common;

use common::{context_and_dir, io_matrix};
use io_engine::IoEngineKind;
use layer_writers::{DeltaLayerReader, DeltaLayerWriter, Key, Lsn};
use rstest::rstest;
use rstest_reuse::apply;
use virtual_file::IoMode;

#[apply(io_matrix)]
#[tokio::test]
async fn index_pages_are_read_from_the_device_once(mode: IoMode, kind: IoEngineKind) {
    let Some((ctx, dir)) = context_and_dir(mode, kind) else {
        return;
    };
    let mut writer = DeltaLayerWriter::new(&ctx, dir.path(), "delta")
        .await
        .unwrap();
    let n = 5000u64;
    for i in 0..n {
        let key = Key::from_u128(1_000_000 + u128::from(i) * 3);
        writer
            .put_value(key, Lsn(10 + i), true, &i.to_be_bytes())
            .await
            .unwrap();
    }
    let info = writer.finish().await.unwrap();
    let before = ctx.page_cache_metrics();
    let mut reader = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
    assert_eq!(
        reader.caches_values(),
        mode != IoMode::Buffered,
        "the default"
    );
    // Values straight from the file: the cache's device reads are the summary and index pages only.
    reader.set_cache_values(false);
    let index_pages = u64::from(reader.summary().index_page_count);
    assert!(index_pages > 3, "a multi-page index: {index_pages}");
    let mut first_pass_reads = 0;
    for pass in 0..2 {
        let file_reads = ctx.metrics().ops[virtual_file::OpKind::Read].count;
        let mut lookups = 0;
        for i in (0..n).step_by(7) {
            lookups += 1;
            let key = Key::from_u128(1_000_000 + u128::from(i) * 3);
            let got = reader.get(key, Lsn(0)..Lsn::MAX).await.unwrap();
            assert_eq!(got.len(), 1, "{key}");
        }
        let m = ctx.page_cache_metrics();
        let device_reads = m.device_reads - before.device_reads;
        // The summary page and each index page at most once, in both passes together.
        assert!(
            device_reads <= index_pages + 1,
            "pass {pass}: {device_reads} device reads for {index_pages} index pages: {m:?}"
        );
        assert!(m.hits > before.hits);
        let file_reads = ctx.metrics().ops[virtual_file::OpKind::Read].count - file_reads;
        if pass == 0 {
            assert!(
                device_reads >= 2,
                "the summary and the root came through the cache"
            );
            first_pass_reads = device_reads;
        } else {
            assert_eq!(device_reads, first_pass_reads, "no index page read again");
            // Only the values were read from the file: one read per lookup.
            assert_eq!(file_reads, lookups, "pass {pass}");
        }
    }
}

#[rstest]
#[tokio::test]
async fn point_lookups_of_an_o_direct_file_cache_values(
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    let Some((ctx, dir)) = context_and_dir(mode, kind) else {
        return;
    };
    let mut writer = DeltaLayerWriter::new(&ctx, dir.path(), "delta")
        .await
        .unwrap();
    for i in 0..500u64 {
        let value = vec![i as u8; 3000];
        writer
            .put_value(Key::from_u128(u128::from(i)), Lsn(1), true, &value)
            .await
            .unwrap();
    }
    let info = writer.finish().await.unwrap();
    let reader = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
    let mut file_reads = Vec::new();
    for _pass in 0..2 {
        let before = ctx.metrics().ops[virtual_file::OpKind::Read].count;
        for i in 0..500u64 {
            let got = reader
                .get(Key::from_u128(u128::from(i)), Lsn(0)..Lsn::MAX)
                .await
                .unwrap();
            assert_eq!(got[0].2, vec![i as u8; 3000]);
        }
        file_reads.push(ctx.metrics().ops[virtual_file::OpKind::Read].count - before);
    }
    if mode == IoMode::Buffered {
        assert_eq!(
            file_reads[1], 500,
            "buffered: values from the kernel's page cache"
        );
    } else {
        assert_eq!(file_reads[1], 0, "direct: everything from our page cache");
    }
    // A scan does not go through the cache.
    let hits = ctx.page_cache_metrics().hits;
    assert_eq!(reader.scan().await.unwrap().len(), 500);
    assert!(ctx.page_cache_metrics().hits - hits < 10);
}

#[tokio::test]
async fn a_value_read_above_the_memory_budget_is_a_typed_error() {
    // Written with the default budget (the writer's buffers are 1 MiB), read with 64 KiB.
    let wctx = virtual_file::IoContext::builder().build().unwrap();
    let ctx = virtual_file::IoContext::builder()
        .memory_budget_bytes(64 << 10)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut writer = DeltaLayerWriter::new(&wctx, dir.path(), "delta")
        .await
        .unwrap();
    let key = Key::from_u128(7);
    writer
        .put_value(key, Lsn(1), true, &vec![5u8; 100 << 10])
        .await
        .unwrap();
    writer
        .put_value(Key::from_u128(8), Lsn(1), true, b"small")
        .await
        .unwrap();
    let info = writer.finish().await.unwrap();
    let reader = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
    let err = reader.get(key, Lsn(0)..Lsn::MAX).await.unwrap_err();
    let chain = format!("{err:?}");
    assert!(chain.contains("TooLarge"), "{chain}");
    // A read that fits is fine.
    let got = reader
        .get(Key::from_u128(8), Lsn(0)..Lsn::MAX)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(ctx.memory_metrics().total_peak <= 64 << 10);
}
