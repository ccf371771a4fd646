//! Corrupt and truncated layer files: every single-bit flip in the summary block and the index pages of a
//! small layer, truncation at every page boundary, a longer file, and a foreign file give typed errors,
//! never a panic and never a wrong value.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::context;
use io_engine::IoEngineKind;
use layer_writers::{
    DeltaLayerReader, DeltaLayerWriter, FormatError, ImageLayerReader, ImageLayerWriter, Key,
    LayerError, Lsn,
};
use virtual_file::{IoContext, IoMode};

const PAGE: u64 = 8192;

type Records = Vec<(Key, Lsn, bool, Vec<u8>)>;

/// A small delta layer: three pages (summary, values, one index page).
async fn small_delta(ctx: &IoContext, dir: &Path) -> (std::path::PathBuf, Records) {
    let mut records = Vec::new();
    for i in 0..40u128 {
        let value: Vec<u8> = (0..(i as usize * 13) % 200).map(|b| b as u8).collect();
        records.push((
            Key::from_u128(1000 + i / 3),
            Lsn(10 + i as u64),
            i % 4 == 0,
            value,
        ));
    }
    let mut w = DeltaLayerWriter::new(ctx, dir, "small").await.unwrap();
    for (k, l, wi, v) in &records {
        w.put_value(*k, *l, *wi, v).await.unwrap();
    }
    let info = w.finish().await.unwrap();
    assert_eq!(
        info.file_len,
        3 * PAGE,
        "the test assumes one values page and one index page"
    );
    (info.path, records)
}

/// Opens the layer and reads everything; `Ok` only if every value is right.
async fn read_all(ctx: &IoContext, path: &Path, records: &Records) -> Result<(), LayerError> {
    let r = DeltaLayerReader::open(ctx, path).await?;
    let scanned = r.scan().await?;
    assert!(&scanned == records, "a corrupt layer returned wrong values");
    let (k, l, wi, v) = &records[7];
    let got = r.get(*k, *l..Lsn(l.0 + 1)).await?;
    assert_eq!(
        got,
        vec![(*l, *wi, v.clone())],
        "a corrupt layer returned a wrong value"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bit_flip_in_summary_and_index_is_detected() {
    let ctx = context(IoMode::Buffered, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, records) = small_delta(&ctx, dir.path()).await;
    read_all(&ctx, &path, &records).await.unwrap();
    let original = std::fs::read(&path).unwrap();
    let index_page = 2 * PAGE;

    // Two copies, flipped in parallel: one for the summary block, one for the index page.
    let mut tasks = Vec::new();
    for (n, region_start) in [(0u32, 0u64), (1, index_page)] {
        let copy = dir.path().join(format!("copy-{n}"));
        std::fs::write(&copy, &original).unwrap();
        let ctx = ctx.clone();
        let records = records.clone();
        tasks.push(tokio::spawn(async move {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .read(true)
                .open(&copy)
                .unwrap();
            let mut detected = 0u32;
            for offset in region_start..region_start + PAGE {
                let mut byte = [0u8; 1];
                f.read_exact_at(&mut byte, offset).unwrap();
                for bit in 0..8 {
                    f.write_all_at(&[byte[0] ^ (1 << bit)], offset).unwrap();
                    let err = read_all(&ctx, &copy, &records)
                        .await
                        .expect_err("a flipped bit must be detected");
                    assert!(
                        err.is_corruption(),
                        "offset {offset} bit {bit}: not a corruption error: {err}"
                    );
                    detected += 1;
                }
                f.write_all_at(&byte, offset).unwrap();
            }
            detected
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 8192 * 8);
    }
}

#[tokio::test]
async fn flips_name_the_failing_structure() {
    let ctx = context(IoMode::DirectRw, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, records) = small_delta(&ctx, dir.path()).await;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&path)
        .unwrap();
    let flip = |offset: u64| {
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, offset).unwrap();
        f.write_all_at(&[b[0] ^ 0x10], offset).unwrap();
        move |f: &std::fs::File| f.write_all_at(&b, offset).unwrap()
    };
    type IsExpected = fn(&FormatError) -> bool;
    let cases: [(u64, IsExpected); 4] = [
        (1, |e| matches!(e, FormatError::BadMagic { .. })),
        (20, |e| {
            matches!(e, FormatError::SummaryChecksumMismatch { .. })
        }),
        (5000, |e| matches!(e, FormatError::Invalid { .. })),
        (2 * PAGE + 100, |e| {
            matches!(e, FormatError::ChecksumMismatch { .. })
        }),
    ];
    for (offset, expected) in cases {
        let undo = flip(offset);
        match read_all(&ctx, &path, &records).await {
            Err(LayerError::Format { source, .. }) if expected(&source) => {}
            other => panic!("offset {offset}: unexpected {other:?}"),
        }
        undo(&f);
    }
    read_all(&ctx, &path, &records).await.unwrap();
}

#[tokio::test]
async fn truncation_and_extension_are_detected() {
    let ctx = context(IoMode::Direct, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, records) = small_delta(&ctx, dir.path()).await;
    let original = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut");
    let mut lens: Vec<u64> = (0..original.len() as u64 / PAGE)
        .map(|p| p * PAGE)
        .collect();
    lens.extend([
        1,
        511,
        512,
        PAGE - 1,
        PAGE + 512,
        original.len() as u64 - 512,
    ]);
    for len in lens {
        std::fs::write(&cut, &original[..len as usize]).unwrap();
        match read_all(&ctx, &cut, &records).await {
            Err(LayerError::Format {
                source: FormatError::Truncated { .. },
                ..
            }) => {}
            other => panic!("truncated to {len}: unexpected {other:?}"),
        }
    }
    let mut longer = original.clone();
    longer.extend_from_slice(&[0u8; PAGE as usize]);
    std::fs::write(&cut, &longer).unwrap();
    assert!(matches!(
        read_all(&ctx, &cut, &records).await,
        Err(LayerError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn foreign_files_are_refused() {
    let ctx = context(IoMode::Buffered, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign");
    let noise: Vec<u8> = (0..5 * PAGE as usize)
        .map(|i| (i * 31 % 253) as u8)
        .collect();
    std::fs::write(&path, &noise).unwrap();
    assert!(matches!(
        DeltaLayerReader::open(&ctx, &path).await,
        Err(LayerError::Format {
            source: FormatError::BadMagic { .. },
            ..
        })
    ));
    assert!(matches!(
        ImageLayerReader::open(&ctx, &path).await,
        Err(LayerError::Format {
            source: FormatError::BadMagic { .. },
            ..
        })
    ));
    assert!(matches!(
        DeltaLayerReader::open(&ctx, &dir.path().join("missing")).await,
        Err(LayerError::Io { .. })
    ));
}

/// An index pointing into the middle of a blob (a valid index from a layer with other value sizes, so
/// every checksum passes) is caught by the blob extent check.
#[tokio::test]
async fn index_from_another_layer_is_caught_by_extents() {
    let ctx = context(IoMode::Buffered, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &'static str, len: usize| {
        let ctx = ctx.clone();
        let dir = dir.path().to_owned();
        async move {
            let mut w = ImageLayerWriter::new(&ctx, &dir, name, Lsn(1))
                .await
                .unwrap();
            for k in 0..10u128 {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ k as u64;
                let noise: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                w.put_image(Key::from_u128(k), &noise).await.unwrap();
            }
            w.finish().await.unwrap().path
        }
    };
    // Values that do not compress, of slightly different sizes: different offsets, same file length.
    let a = write("a", 300).await;
    let b = write("b", 301).await;
    let (mut fa, fb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(fa.len(), fb.len());
    assert_ne!(
        fa[fa.len() - PAGE as usize..],
        fb[fb.len() - PAGE as usize..]
    );
    let index_start = fa.len() - PAGE as usize;
    fa[index_start..].copy_from_slice(&fb[index_start..]);
    std::fs::write(&a, &fa).unwrap();
    let r = ImageLayerReader::open(&ctx, &a).await.unwrap();
    let err = r.scan().await.unwrap_err();
    assert!(err.is_corruption(), "{err}");
}
